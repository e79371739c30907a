"""`trbert speed`: the speed benchmark (wall clock against ideal speed-up at fixed keep fractions)."""


from .common import CommandError, formatter, positive_int, sequence_length

DEFAULT_JSON = "docs/results/speed_minilm.json"
DEFAULT_MD = "docs/RESULTS.md"

SPEED_DESCRIPTION = """\
Time all-MiniLM-L6-v2 (on the CPU unless --device cuda): the plain Hugging Face model against the TR
model under several settings (full keep; fixed keep fractions with the policy
bypassed, in packed and padded execution), interleaved within each round.
Prints wall-clock and ideal (FLOP) speed-ups, writes the records as JSON and
the table into the speed section of the results markdown.

Paths are relative to the current directory. Use --quick for a smoke run."""

SPEED_EPILOG = """\
examples:
  trbert speed                   # the results page's speed section: n = 512 and 128, batch 1 and 32
  trbert speed --quick --out-json /tmp/speed.json --results-md /tmp/speed.md
  trbert speed --lengths 256 --batch-sizes 1 8 --threads 1
  trbert speed --device cuda --dtype bfloat16 --lengths 512 --batch-sizes 1 32 128 256
  trbert speed --backbone all-mpnet-base-v2 --lengths 512"""


def add(subparsers):
    p = subparsers.add_parser("speed", help="speed benchmark: wall-clock vs ideal speed-up on MiniLM (CPU or GPU)",
                              description=SPEED_DESCRIPTION, epilog=SPEED_EPILOG, formatter_class=formatter)
    p.add_argument("--lengths", type=sequence_length, nargs="+", metavar="N",
                   help="padded sequence lengths n (default: 512 128; 128 with --quick)")
    p.add_argument("--batch-sizes", type=positive_int, nargs="+", default=[1, 32], metavar="B",
                   help="batch sizes (default: 1 32)")
    p.add_argument("--repeats", type=positive_int, metavar="R",
                   help="timed rounds at batch size 1 (default: 7; 3 with --quick)")
    p.add_argument("--batched-repeats", type=positive_int, metavar="R",
                   help="timed rounds at larger batch sizes (default: 4; 3 with --quick)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random tokens and lengths (default: 0)")
    p.add_argument("--quick", action="store_true", help="smoke run: n=128 only, 3 rounds")
    p.add_argument("--backbone", metavar="DIR", help="the encoder to time: a folder, or all-mpnet-base-v2 "
                                                     "(`trbert backbone`) (default: the embedded MiniLM)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where both models run (default: cpu)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32",
                   help="both models' precision (default: float32)")
    p.add_argument("--out-json", metavar="PATH",
                   help=f"where to write the JSON records (default: {DEFAULT_JSON} for MiniLM on the CPU in "
                        "float32, else docs/results/speed_MODEL[_DEVICE_DTYPE].json)")
    p.add_argument("--results-md", default=DEFAULT_MD, metavar="PATH",
                   help=f"markdown file whose speed section is replaced or appended (default: {DEFAULT_MD})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=run_speed)
    return p


def run_speed(args) -> int:
    from ..benchmarks import speed
    from ..io import write_json

    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise CommandError("--device cuda: no CUDA device here (torch sees none)")
    from .common import resolve_backbone

    backbone = resolve_backbone(args.backbone) if args.backbone else None
    lengths = args.lengths or ([128] if args.quick else [512, 128])
    repeats = args.repeats or (3 if args.quick else 7)
    batched_repeats = args.batched_repeats or (3 if args.quick else 4)
    report = speed.run(
        lengths=lengths,
        batch_sizes=args.batch_sizes,
        repeats=repeats,
        batched_repeats=batched_repeats,
        threads=args.threads,
        seed=args.seed,
        command=args.command_line,
        progress=not args.no_progress,
        device=args.device,
        dtype=args.dtype,
        backbone=backbone,
    )
    out_json = args.out_json or speed.default_json(args.device, args.dtype, report["records"][0].get("model", speed.MODEL_NAME))
    print(speed.text_table(report["records"]))
    write_json(out_json, report)
    speed.update_results_md(args.results_md, speed.markdown_section(report, repeats, batched_repeats))
    print(f"\nwrote {out_json} and the {speed.section_name(report)} section of {args.results_md}")
    return 0


