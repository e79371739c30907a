"""The `trbert` command line.

Each subcommand is one `add_<name>(subparsers)` function that builds its parser and sets
`handler`: a function `(args) -> exit status`. To add one, write the pair and list it in `SUBCOMMANDS`.
"""

import argparse
import shlex
import sys
from collections.abc import Sequence

from . import __version__, bench_speed


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _sequence_length(text: str) -> int:
    value = int(text)
    if not 8 <= value <= 512:
        raise argparse.ArgumentTypeError(f"must lie in [8, 512] (512 is the model's limit), got {value}")
    return value


# ---------------------------------------------------------------------------- speed
SPEED_DESCRIPTION = """\
Time all-MiniLM-L6-v2 on CPU: the plain Hugging Face model against the TR
model under several settings (full keep; fixed keep fractions with the policy
bypassed, in packed and padded execution), interleaved within each round.
Prints wall-clock and ideal (FLOP) speed-ups, writes the records as JSON and
the table into the speed section of the results markdown.

Paths are relative to the current directory. Use --quick for a smoke run."""


def add_speed(subparsers) -> None:
    p = subparsers.add_parser(
        "speed",
        help="speed benchmark: wall-clock vs ideal speed-up on MiniLM (CPU)",
        description=SPEED_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--lengths", type=_sequence_length, nargs="+", metavar="N",
                   help="padded sequence lengths n (default: 512 128; 128 with --quick)")
    p.add_argument("--batch-sizes", type=_positive_int, nargs="+", default=[1, 32], metavar="B",
                   help="batch sizes (default: 1 32)")
    p.add_argument("--repeats", type=_positive_int, metavar="R",
                   help="timed rounds at batch size 1 (default: 7; 3 with --quick)")
    p.add_argument("--batched-repeats", type=_positive_int, metavar="R",
                   help="timed rounds at larger batch sizes (default: 4; 3 with --quick)")
    p.add_argument("--threads", type=_positive_int, default=2, metavar="T",
                   help="torch CPU threads (default: 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random tokens and lengths (default: 0)")
    p.add_argument("--quick", action="store_true", help="smoke run: n=128 only, 3 rounds")
    p.add_argument("--out-json", default=bench_speed.DEFAULT_JSON, metavar="PATH",
                   help=f"where to write the JSON records (default: {bench_speed.DEFAULT_JSON})")
    p.add_argument("--results-md", default=bench_speed.DEFAULT_MD, metavar="PATH",
                   help=f"markdown file whose speed section is replaced or appended (default: {bench_speed.DEFAULT_MD})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=run_speed)


def run_speed(args) -> int:
    lengths = args.lengths or ([128] if args.quick else [512, 128])
    repeats = args.repeats or (3 if args.quick else 7)
    batched_repeats = args.batched_repeats or (3 if args.quick else 4)
    report = bench_speed.run(
        lengths=lengths,
        batch_sizes=args.batch_sizes,
        repeats=repeats,
        batched_repeats=batched_repeats,
        threads=args.threads,
        seed=args.seed,
        command=args.command_line,
        progress=not args.no_progress,
    )
    print(bench_speed.text_table(report["records"]))
    bench_speed.write_json(args.out_json, report)
    bench_speed.update_results_md(args.results_md, bench_speed.markdown_section(report, repeats, batched_repeats))
    print(f"\nwrote {args.out_json} and the speed section of {args.results_md}")
    return 0


# ---------------------------------------------------------------------------- main
SUBCOMMANDS = [add_speed]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trbert",
        description="TR-BERT dynamic token reduction for BERT-family encoders.",
        epilog="Run 'trbert COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"trbert {__version__}")
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.command_line = shlex.join(["trbert", *argv])  # recorded with results, to rerun them exactly
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
