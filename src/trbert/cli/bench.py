"""`trbert bench`: every rival against TR-BERT on BBC News."""

from .common import add_job_options, choose_preset, formatter, start_job

BENCH_DESCRIPTION = """\
Every common way of speeding up the encoder, on BBC News with the embedded all-MiniLM-L6-v2, measured
in one run on this machine: the full model (transformers, fp32), the same in ONNX Runtime (fp32 and
int8), PyTorch int8, truncation to the first k tokens, the first k layers (head re-tuned), attention
top-k selection (training-free and fine-tuned), learned thresholds on attention (LTP), and TR-BERT at
several alphas, alone, with int8, and exported to one ONNX graph in ONNX Runtime (fp32 and int8).
Accuracy with a 95% paired-bootstrap interval against the full model, GFLOPs per article, wall-clock
speed-up at batch 1 and 32 (methods interleaved), peak memory; a table, a plot of accuracy against
wall-clock speed-up, and where TR-BERT wins or loses. Each TR model run in ONNX Runtime is checked
against its PyTorch model on every test text: the largest logit difference, the kept lengths and each
token's keep decisions.

Everything a method needs is trained once into the run folder (shared with `trbert run` for the
same preset), so a re-run only measures. --data 20newsgroups measures the same on 20 Newsgroups
with the models of `trbert run --data 20newsgroups` (TR-BERT: the paper's placement at alpha 1 and
steps 0,3 at alphas 1, 2 and 3), accuracy on 1,000 test posts spread over the split."""


# trbert.benchmarks.rivals.presets(data) (not imported here: it loads torch); the first is the default.
PRESETS = {"bbc": ("quick", "full", "onnx"), "20newsgroups": ("full",)}


def add(subparsers):
    p = subparsers.add_parser("bench", help="every rival against TR-BERT on BBC News: the accuracy / speed front",
                              description=BENCH_DESCRIPTION, formatter_class=formatter,
                              epilog="examples:\n  trbert bench                    # quick preset, 128 tokens\n"
                                     "  trbert bench --preset full --report\n"
                                     "  trbert bench --data 20newsgroups --report")
    p.add_argument("--data", choices=sorted(PRESETS), default="bbc",
                   help="BBC News (bbc, the default) or 20 Newsgroups (20newsgroups)")
    p.add_argument("--preset", choices=sorted({n for names in PRESETS.values() for n in names}),
                   help="bbc: quick (128 tokens, 2 TR alphas, no fine-tuned rivals; the default), full (512 "
                        "tokens, the results page) or onnx (512 tokens: the full preset's alpha-2 model in PyTorch "
                        "and ONNX Runtime, fp32 and int8, checked equal; no rival trained); 20newsgroups: full "
                        "(256 tokens)")
    p.add_argument("--run-dir", metavar="DIR",
                   help="where models go (default: runs/bbc-PRESET or runs/20news-PRESET, as `trbert run`)")
    add_job_options(p, "also write docs/results/bbc_rivals_PRESET.{json,png} and its section of docs/RESULTS.md")
    p.set_defaults(handler=run_bench)
    return p


def run_bench(args) -> int:
    from ..benchmarks import rivals

    preset = choose_preset(args, PRESETS)
    start_job(args)
    rivals.run(preset, args.run_dir, data=args.data, backbone=args.backbone, seed=args.seed, threads=args.threads,
              report=args.report, progress=not args.no_progress, command=args.command_line)
    return 0


