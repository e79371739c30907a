"""`trbert predict`: labels and probabilities for texts, answers to a question, tags of words."""

import json
import re
import sys
from pathlib import Path

from .common import (
    CommandError,
    add_task_option,
    default_device,
    fit_max_length,
    formatter,
    load_classifier,
    load_model,
    load_tokenizer,
    model_folder,
    positive_int,
    quiet_progress,
    resolve_task,
    sequence_length,
)

PREDICT_DESCRIPTION = """\
Classify texts with a trained model (TR-BERT or plain transformers), answer a question about a
context, or tag the words of texts: what the model's head does (its config names it; --task when it
does not). The texts come from the command line and/or --file: a text file with one text per line
('-' reads standard input; blank lines are skipped), or a .csv / .jsonl file with a text column.

Prints one line per text: its index, the label, the probability of each class and the tokens
kept after each reduction step ("40 > 21 > 9": 40 tokens, 21 after the first step, 9 after the
second). --json prints JSON Lines instead: {"index", "label", "probabilities", "tokens",
"kept_tokens"}."""

PREDICT_EPILOG = """\
examples:
  trbert predict --model runs/bbc/joint "Shares rose after the bank cut interest rates."
  trbert predict --model runs/bbc/joint --file articles.txt --json > predictions.jsonl
  trbert predict --model runs/reviews/joint --file reviews.csv --text-column review
  trbert predict --task question-answering --model runs/squad/joint --question "Who?" --context @page.txt
  trbert predict --task token-classification --model runs/wnut/joint 'off to see the Lakers in LA'"""


def add(subparsers):
    p = subparsers.add_parser("predict", help="labels and class probabilities for texts",
                              description=PREDICT_DESCRIPTION, epilog=PREDICT_EPILOG, formatter_class=formatter)
    p.add_argument("--model", required=True, metavar="DIR", help="the model folder")
    add_task_option(p, infer=True)
    p.add_argument("texts", nargs="*", metavar="TEXT", help="texts to classify or tag")
    p.add_argument("--question", metavar="TEXT", help="question-answering: the question")
    p.add_argument("--context", metavar="TEXT|@FILE", help="question-answering: the context (@FILE: read it from FILE)")
    p.add_argument("--allow-empty", action="store_true",
                   help="question-answering: answer nothing when the model finds no answer (SQuAD 2.0 models)")
    p.add_argument("--file", metavar="PATH",
                   help="more texts: one per line ('-': standard input), or a .csv / .jsonl file")
    p.add_argument("--text-column", default="text", metavar="NAME",
                   help="text column of a .csv / .jsonl file (default: text)")
    p.add_argument("--max-length", type=sequence_length, metavar="N",
                   help="truncate texts to N tokens (default: the length the model was trained at, else its limit, at most 512)")
    p.add_argument("--batch-size", type=positive_int, default=32, metavar="B", help="batch size (default: 32)")
    p.add_argument("--json", action="store_true", help="print JSON Lines instead of a table")
    p.set_defaults(handler=predict)
    return p


def read_texts(args) -> tuple[list[str], list[str]]:
    """The texts to classify and, for each, where it came from (for error messages)."""
    texts = list(args.texts)
    origins = [f"text argument {i + 1}" for i in range(len(texts))]
    for text, origin in zip(texts, origins):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # bytes that were not UTF-8 reach Python as lone surrogates
            raise CommandError(f"{origin} is not valid UTF-8 text") from None
    if args.file is not None:
        path = args.file
        if path != "-" and Path(path).suffix.lower() in (".csv", ".jsonl", ".json"):
            from ..data import read_text_column

            rows = read_text_column(path, args.text_column)
            texts += rows
            origins += [f"{path} row {i}" for i in range(1, len(rows) + 1)]
        else:
            name = "standard input" if path == "-" else path
            try:
                if path == "-":  # the bytes as they come (a test may hand a text stream instead)
                    stream = getattr(sys.stdin, "buffer", None)
                    raw = stream.read() if stream is not None else sys.stdin.read().encode("utf-8")
                else:
                    raw = Path(path).read_bytes()
            except FileNotFoundError:
                raise CommandError(f"{path}: file not found") from None
            except OSError as error:
                raise CommandError(f"{path}: cannot read it ({error})") from None
            try:
                lines = raw.decode("utf-8").splitlines()
            except UnicodeDecodeError as error:
                raise CommandError(f"{name} is not valid UTF-8 text (byte {raw[error.start]:#04x} at offset "
                                   f"{error.start})") from None
            numbered = [(i, line) for i, line in enumerate(lines, start=1) if line.strip()]
            if not numbered:
                raise CommandError(f"{name}: no texts in it (give one text per line)")
            blank = sum(1 for line in lines[:numbered[-1][0]] if not line.strip())
            if blank:
                print(f"note: skipped {blank} blank line(s) of {name}", file=sys.stderr)
            texts += [line for _, line in numbered]
            origins += [f"{'stdin' if path == '-' else path} line {i}" for i, _ in numbered]
    if not texts:
        raise CommandError("nothing to classify: give texts as arguments or --file PATH")
    return texts, origins


def predict(args) -> int:
    import torch

    from .. import evaluation
    from ..inputs import check_texts

    quiet_progress()  # the predictions are the output
    folder = model_folder(args.model, "--model")
    args.task = resolve_task(args, folder)
    if args.task == "question-answering":
        return _predict_answer(args, folder)
    if args.question is not None or args.context is not None:
        raise CommandError("--question and --context are for --task question-answering")
    texts, origins = read_texts(args)
    try:
        check_texts(texts, "texts")  # the checks of trbert.encode, before the model is loaded
    except (ValueError, TypeError) as error:
        match = re.match(r"texts\[(\d+)\]", str(error))
        where = f" ({origins[int(match.group(1))]})" if match else ""
        raise CommandError(f"{error}{where}") from None
    if args.task == "token-classification":
        return _predict_tags(args, folder, texts)
    model = load_classifier(folder)
    config = model.config
    tokenizer = load_tokenizer(folder)
    max_length = fit_max_length(args.max_length, config, folder)
    model.to(default_device())
    out = evaluation.predict_batches(model, tokenizer, texts, max_length, args.batch_size, progress=False)
    probabilities = torch.softmax(out.logits, dim=-1)
    names = [str(config.id2label[i]) for i in range(config.num_labels)]
    rows = []
    for i in range(len(texts)):
        rows.append({
            "index": i,
            "label": names[int(out.pred[i])],
            "probabilities": {name: round(float(p), 6) for name, p in zip(names, probabilities[i])},
            "tokens": int(out.lengths[i]),
            "kept_tokens": None if out.kept_lengths is None else [int(k) for k in out.kept_lengths[i]],
        })
    if args.json:
        for row in rows:
            print(json.dumps(row))
    else:
        print(prediction_table(rows, texts, names))
    return 0


def _predict_answer(args, folder) -> int:
    from datasets import Dataset

    from ..evaluation import predict_qa
    from ..tasks.question_answering import window_batches

    if args.texts or args.file:
        raise CommandError("question answering takes --question and --context, not texts or --file")
    for name in ("question", "context"):
        value = getattr(args, name)
        if value is None or not value.strip():
            raise CommandError(f"--{name} is {'missing' if value is None else 'empty'}: question answering needs "
                               f"--question TEXT and --context TEXT (or --context @FILE)")
    context = args.context
    if context.startswith("@"):
        try:
            context = Path(context[1:]).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise CommandError(f"--context {args.context}: cannot read it as UTF-8 text ({error})") from None
    model = load_model(folder, "question-answering")
    tokenizer = load_tokenizer(folder)
    max_length = fit_max_length(args.max_length or 384, model.config, folder)
    rows = Dataset.from_list([{"id": "q", "question": args.question, "context": context}])
    features, batches = window_batches(tokenizer, rows, max_length, min(128, max_length // 4), args.batch_size)
    model.to(default_device())
    out = predict_qa(model, features, batches, [context], allow_null=args.allow_empty)
    answer = out.answers[0]
    row = {"answer": answer.text, "start": answer.start, "end": answer.end, "score": round(answer.score, 4),
           "windows": len(features["input_ids"]), "tokens": out.lengths.tolist(),
           "kept_tokens": None if out.kept_lengths is None else out.kept_lengths.tolist()}
    if args.json:
        print(json.dumps(row))
    else:
        shown = repr(answer.text) if answer.text else "(no answer)"
        print(f"answer: {shown}  characters {answer.start}-{answer.end}  score {answer.score:.2f}  "
              f"({row['windows']} window(s); tokens kept per step {row['kept_tokens'] or '-'})")
    return 0


def _predict_tags(args, folder, texts: list[str]) -> int:
    from ..evaluation import predict_tags
    from ..tasks.token_classification import word_batches

    model = load_model(folder, "token-classification")
    tokenizer = load_tokenizer(folder)
    max_length = fit_max_length(args.max_length, model.config, folder)
    sentences = [text.split() for text in texts]
    names = [str(model.config.id2label[i]) for i in range(model.config.num_labels)]
    model.to(default_device())
    out = predict_tags(model, word_batches(tokenizer, sentences, max_length, args.batch_size), names,
                       [len(s) for s in sentences])
    for i, (words, tags) in enumerate(zip(sentences, out.tags)):
        kept = None if out.kept_lengths is None else out.kept_lengths[i].tolist()
        if args.json:
            print(json.dumps({"index": i, "words": words, "tags": tags, "tokens": int(out.lengths[i]),
                              "kept_tokens": kept}))
        else:
            print(" ".join(w if t == "O" else f"{w}/{t}" for w, t in zip(words, tags)))
    return 0


def prediction_table(rows: list[dict], texts: list[str], names: list[str], width: int = 40) -> str:
    """One line per text: index, label, the probability of each class, tokens kept per step, the text's start."""
    def kept(row):
        steps = row["kept_tokens"]
        return f"{row['tokens']}" if steps is None else " > ".join(map(str, [row["tokens"], *steps]))

    header = ["#", "label", *[f"p({n})" for n in names], "tokens kept", "text"]
    body = []
    for row, text in zip(rows, texts):
        text = " ".join(text.split())
        text = text if len(text) <= width else text[: width - 3] + "..."
        body.append([str(row["index"]), row["label"], *[f"{row['probabilities'][n]:.3f}" for n in names],
                     kept(row), text])
    widths = [max(len(line[c]) for line in [header, *body]) for c in range(len(header))]
    numeric = set(range(2, 2 + len(names)))
    lines = []
    for line in [header, *body]:
        cells = [cell.rjust(w) if c in numeric or c == 0 else cell.ljust(w)
                 for c, (cell, w) in enumerate(zip(line, widths))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
