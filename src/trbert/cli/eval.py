"""`trbert eval`: a model against the full model, on the same examples and batches."""

from .common import (
    CommandError,
    add_data_options,
    fit_max_length,
    formatter,
    int8_models,
    label_names,
    load_config,
    load_labelled,
    is_exported,
    load_model,
    load_task_data,
    load_tokenizer,
    model_folder,
    non_negative_int,
    percent,
    place,
    points,
    positive_int,
    quiet_progress,
    resolve_task,
    sequence_length,
)

EVAL_DESCRIPTION = """\
Evaluate a model against the full model on the same examples and batches: the score of each
(accuracy; exact match and F1 for question answering; entity F1 for token classification),
their difference with a 95% paired-bootstrap interval, the fraction of tokens kept at each
reduction step, and the speed-up in FLOPs and in wall-clock time (both models timed in turn).

The full model is --full-model when given. Otherwise, for a TR-BERT model it is the same weights
with keep_threshold=0 (every token kept; the output says so), and a plain transformers model is
compared with itself. The models must share the tokenizer (the one in --model is used).

Prints the figures; --json also writes them as a results file (one record for the model, one
for the full model). Runs on the GPU when there is one."""

EVAL_EPILOG = """\
examples:
  trbert eval --model runs/bbc/joint --full-model runs/bbc/finetune
  trbert eval --model runs/bbc/joint --max-length 256 --timing-repeats 3 --json results/joint.json
  trbert eval --model runs/bbc/joint --full-model runs/bbc/finetune --batch-size 1 --int8
  trbert eval --model runs/reviews/joint --data reviews-test.csv --text-column review --label-column stars
  trbert eval --task question-answering --model runs/squad/joint --full-model runs/squad/finetune --data dev-v1.1.json
  trbert eval --task token-classification --model runs/wnut/joint --full-model runs/wnut/finetune"""


def add(subparsers):
    p = subparsers.add_parser("eval", help="accuracy, tokens kept and speed-up of a model against the full model",
                              description=EVAL_DESCRIPTION, epilog=EVAL_EPILOG, formatter_class=formatter)
    p.add_argument("--model", required=True, metavar="DIR", help="the model folder to evaluate")
    p.add_argument("--full-model", metavar="DIR", help="the full model to compare with (default: see above)")
    add_data_options(p, "evaluation data", infer_task=True)
    p.add_argument("--split", choices=["train", "validation", "test"],
                   help="split of --data bbc (default: test); a file is evaluated whole")
    p.add_argument("--max-length", type=sequence_length, metavar="N",
                   help="truncate texts to N tokens (default: the length the model was trained at, else its limit, at most 512)")
    p.add_argument("--batch-size", type=positive_int, default=32, metavar="B", help="batch size (default: 32)")
    p.add_argument("--max-examples", type=positive_int, metavar="N",
                   help="evaluate on a fixed random subset of N examples (default: all)")
    p.add_argument("--timing-repeats", type=non_negative_int, default=1, metavar="R",
                   help="timed passes over the data per model after a warm-up pass; "
                        "0: no wall-clock timing (default: 1)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32",
                   help="weights and activations of both models (default: float32; half precision is "
                        "what a GPU runs fastest)")
    p.add_argument("--int8", action="store_true",
                   help="both models with int8 weights (CPU; dynamic quantization, the policies stay fp32)")
    p.add_argument("--json", metavar="OUT.json", help="also write the results file here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=evaluate)
    return p


def evaluate(args) -> int:
    import torch

    from .. import evaluation

    if args.no_progress:
        quiet_progress()
    folder = model_folder(args.model, "--model")
    config = load_config(folder)
    args.task = resolve_task(args, folder)
    is_tr = config.model_type == "trbert"
    builtin = {"classification": "bbc", "token-classification": "wnut"}.get(args.task)
    args.data = args.data or builtin
    if args.split is not None and args.data != builtin:
        raise CommandError(f"--split chooses a split of --data {builtin or 'bbc or wnut'}; a file is evaluated whole")
    split = args.split or "test"
    model = load_model(folder, args.task)
    if args.full_model is not None:
        full_folder = model_folder(args.full_model, "--full-model")
        full = load_model(full_folder, args.task)
        full_note, full_setting = str(full_folder), "full model"
    elif is_exported(folder):
        raise CommandError(f"{folder} is an exported ONNX model: give --full-model (the PyTorch full model, e.g. "
                           "the finetune folder) to compare it with")
    elif is_tr:
        full_folder = folder
        full = load_model(folder, args.task, keep_threshold=0.0, max_keep_ratio=1.0, keep_rule="threshold")
        full_note = f"{folder} with keep_threshold=0 (the same weights, every token kept; its policies still run)"
        full_setting = "keep_threshold=0 (every token kept)"
    else:
        full_folder, full = folder, model
        full_note = f"{folder} itself (a plain transformers model: no reduction, so the speed-ups are 1)"
        full_setting = "plain"
    if full.config.num_labels != config.num_labels or label_names(full.config) != label_names(config):
        raise CommandError(f"--model has the classes {label_names(config) or config.num_labels} but --full-model "
                           f"{label_names(full.config) or full.config.num_labels}")
    if args.task != "classification":
        return _evaluate_spans_or_tags(args, model, full, folder, full_note, split)
    classes = label_names(config)
    data = load_labelled(args.data, split, args.text_column, args.label_column, labels=classes)
    if len(data.names) > config.num_labels:
        raise CommandError(f"{data.description} has {len(data.names)} classes but the model {config.num_labels}")
    dataset = data.dataset
    if args.max_examples is not None:  # a fixed random subset (BBC's rows are sorted by topic)
        dataset = dataset.shuffle(seed=0).select(range(min(args.max_examples, len(dataset))))
    texts, labels = list(dataset["text"]), list(dataset["label"])
    max_length = fit_max_length(args.max_length, config, folder)
    tokenizer = load_tokenizer(folder)
    device = place(args, model, full)
    model, full = int8_models(args, device, model, full)
    precision = "int8" if args.int8 else args.dtype
    result = evaluation.evaluate_classifier(model, full, tokenizer, texts, labels, max_length, args.batch_size,
                                            timing_repeats=args.timing_repeats, progress=not args.no_progress)

    kind = (f"trbert, reduction before layers {config.reduction_layers}" if is_tr
            else f"{config.model_type}, no reduction")
    print(f"model:           {folder} ({kind})")
    print(f"full model:      {full_note}")
    print(f"data:            {data.description}: {len(texts)} examples, max length {max_length}, "
          f"batch size {args.batch_size}, {device.type}, {precision}")
    print(f"accuracy:        {percent(result['accuracy'])}")
    print(f"full accuracy:   {percent(result['full_accuracy'])}")
    print(f"difference:      {points(result['accuracy_diff'])} points, 95% CI [{points(result['ci_low'])}, "
          f"{points(result['ci_high'])}] (paired bootstrap)")
    _print_cost(result, args.timing_repeats)

    if args.json:
        common = dict(data=args.data if args.data == "bbc" else data.description,
                      split=split if args.data == "bbc" else None, dtype=precision)
        setting = f"keep_threshold={config.keep_threshold:g}" if is_tr else "plain"
        full_ms = result["full_latency_ms"]
        records = [
            evaluation.results_record(result, method="tr" if is_tr else "plain", setting=setting, model=str(folder),
                                      full_model=full_note, **common),
            evaluation.results_record(
                {"accuracy": result["full_accuracy"], "kept_fraction": None, "flops_speedup": 1.0,
                 "wall_speedup": None if full_ms is None else 1.0, "latency_ms": full_ms,
                 "throughput_per_s": None if full_ms is None else round(1000 / full_ms, 2),
                 "n_examples": result["n_examples"], "batch_size": args.batch_size, "max_length": max_length},
                method="full", setting=full_setting, model=str(full_folder), **common),
        ]
        gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
        evaluation.write_results_json(args.json, "trbert_eval", args.command_line, records, gpu=gpu)
        print(f"wrote {args.json}")
    return 0


def _evaluate_spans_or_tags(args, model, full, folder, full_note, split) -> int:
    """`trbert eval` for question answering (exact match, F1) and token classification (entity F1)."""
    config = model.config
    data = load_task_data(args.task, args.data, split, labels=label_names(config) if args.task != "question-answering" else None)
    dataset = data.dataset
    if args.max_examples is not None:
        dataset = dataset.shuffle(seed=0).select(range(min(args.max_examples, len(dataset))))
    tokenizer = load_tokenizer(folder)
    device = place(args, model, full)
    model, full = int8_models(args, device, model, full)
    if args.task == "question-answering":
        from ..evaluation import evaluate_qa

        max_length = fit_max_length(args.max_length or 384, config, folder)
        result = evaluate_qa(model, full, tokenizer, dataset, max_length, stride=min(128, max_length // 4),
                             batch_size=args.batch_size, timing_repeats=args.timing_repeats,
                             progress=not args.no_progress)
        metric, score, full_score = "f1", result["f1"], result["full_f1"]
        lines = [("exact match", f"{percent(result['exact_match'])} (full model {percent(result['full_exact_match'])})"),
                 ("F1", f"{percent(result['f1'])} (full model {percent(result['full_f1'])})")]
        what = f"{result['n_examples']} questions in {result['n_windows']} windows"
        if result["allow_null"]:
            what += " (SQuAD 2.0: the empty answer allowed)"
    else:
        from ..evaluation import evaluate_tagger

        max_length = fit_max_length(args.max_length, config, folder)
        result = evaluate_tagger(model, full, tokenizer, dataset, max_length, args.batch_size,
                                 timing_repeats=args.timing_repeats, progress=not args.no_progress)
        metric, score, full_score = "entity_f1", result["f1"], result["full_f1"]
        lines = [("entity F1", f"{percent(result['f1'])} (full model {percent(result['full_f1'])})")]
        what = f"{result['n_examples']} sentences"
    print(f"model:           {folder}")
    print(f"full model:      {full_note}")
    print(f"data:            {data.description}: {what}, max length {max_length}, batch size {args.batch_size}, "
          f"{device.type}")
    for name, value in lines:
        print(f"{name + ':':<17}{value}")
    print(f"F1 difference:   {points(score - full_score)} points, 95% CI [{points(result['ci_low'])}, "
          f"{points(result['ci_high'])}] (paired bootstrap)")
    _print_cost(result, args.timing_repeats)
    if args.json:
        from .. import evaluation

        fields = {k: v for k, v in result.items() if k not in ("answers", "tags")}
        record = evaluation.results_record(fields, metric=metric, key="f1", method="tr",
                                           setting=str(folder), model=str(folder), full_model=full_note,
                                           data=data.description, split=split)
        evaluation.write_results_json(args.json, "trbert_eval", args.command_line, [record])
        print(f"wrote {args.json}")
    return 0


def _print_cost(result: dict, repeats: int) -> None:
    """The lines on tokens kept, FLOPs and wall clock that every task's evaluation prints."""
    kept = result["kept_fraction"]
    print(f"kept per step:   {', '.join(f'{k:.3f}' for k in kept) if kept else '- (no reduction)'}")
    print(f"FLOPs speed-up:  {result['flops_speedup']:.2f}x")
    if result["wall_speedup"] is None:
        print("wall speed-up:   not timed (--timing-repeats 0)")
    else:
        print(f"wall speed-up:   {result['wall_speedup']:.2f}x ({result['latency_ms']:.2f} vs "
              f"{result['full_latency_ms']:.2f} ms per example; median of {repeats} interleaved "
              f"pass{'es' if repeats > 1 else ''})")
