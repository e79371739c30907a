"""`trbert export`: a TR model as one ONNX graph, run by ONNX Runtime."""

from .common import CommandError, formatter, load_config, load_model, load_tokenizer, model_folder, model_task, say

DESCRIPTION = """\
Export a trained TR model (any head) to ONNX: embeddings, layers, the policies with the saved keep
rule, always-kept tokens, the budget cap, the removal of the skipped tokens and the head in one graph
with dynamic batch size and length. After each reduction step every example's kept tokens move to the
front and the batch shrinks to the most any example keeps (at batch 1, exactly its kept tokens; in a
batch the rest are masked, so an example's outputs never depend on its batch). The graph is checked
against PyTorch (outputs and kept lengths) before the folder is written.

OUT gets model.onnx, the config and the tokenizer; `trbert predict --model OUT`, `trbert eval --model
OUT --full-model FINETUNE` and trbert.OnnxTRModel.from_pretrained(OUT) run it. --int8 quantizes the
linear layers (ONNX Runtime dynamic quantization: weights on 7 bits, so the file runs on any x86 CPU;
activations on 8 bits at run time, each token on its own scale, so int8 outputs do not depend on the
batch either); the policies and the embeddings stay fp32, as in PyTorch int8.
Not exported (a clear error): long-input models, attention-based selections, token-level early exit,
skipped tokens as keys."""

EPILOG = """\
examples:
  trbert export --model runs/bbc-full/layers-0-3/alpha-2/joint --out runs/exported/bbc-a2
  trbert export --model runs/bbc-full/layers-0-3/alpha-2/joint --out runs/exported/bbc-a2-int8 --int8"""


def add(subparsers):
    p = subparsers.add_parser("export", help="a TR model as one ONNX graph (fp32 or int8), for ONNX Runtime",
                              description=DESCRIPTION, epilog=EPILOG, formatter_class=formatter)
    p.add_argument("--model", required=True, metavar="DIR", help="a trained TR model folder")
    p.add_argument("--out", required=True, metavar="DIR", help="the folder to write (replaced whole)")
    p.add_argument("--int8", action="store_true", help="int8 linear layers; the policies and embeddings stay fp32")
    p.set_defaults(handler=export)
    return p


def export(args) -> int:
    from ..deployment import export_folder

    folder = model_folder(args.model, "--model")
    config = load_config(folder)
    if config.model_type != "trbert":
        raise CommandError(f"--model {folder} is a plain {config.model_type!r} model: trbert export writes TR "
                           "models (their token reduction in the graph); plain ones export with "
                           "trbert.deployment.export_onnx")
    task, _ = model_task(config)
    model = load_model(folder, task or "classification")
    tokenizer = load_tokenizer(folder)
    try:
        out = export_folder(model, tokenizer, args.out, int8=args.int8)
    except ValueError as error:  # what a graph cannot hold
        raise CommandError(str(error)) from None
    say(f"wrote {out}: model.onnx ({'int8' if args.int8 else 'fp32'}, checked against PyTorch), config and tokenizer")
    return 0
