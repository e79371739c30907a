"""`trbert long`: the long-document benchmark on news digests."""

from .common import CommandError, add_job_options, formatter, start_job

LONG_DESCRIPTION = """\
The long-document benchmark on news digests (a set derived from BBC News: several articles joined,
labelled with the set of topics they contain) of about 1024, 2048 and 4096 tokens. Compares, with
the BBC News full model: truncation to 512 tokens, the segment baseline (every 512-token segment,
probabilities max-pooled) and TR-BERT's long-input mode (the layers below the first reduction step
per segment, the kept tokens of the whole document together above it). TR models: the one
`trbert run --preset full` trained on single articles (steps on the embeddings and before layer 3),
with only its head re-tuned on training digests; and two trained here on training digests (steps
before layers 1 and 3, and steps on the embeddings and before layer 3). Micro F1, FLOPs and
wall-clock speed-up over the segment baseline, and a plot of time against length.

Needs the models of `trbert run --preset full` (or --full-model with the article model beside it).

--data news_articles instead asks whether the full news articles labelled by outlet are a fair
long-document task: MiniLM fine-tuned on them (cut at 512 tokens) reads each test article cut at
128, 256 or 512 tokens, or whole as 512-token segments; truncation to 512 must lose clearly."""


def add(subparsers):
    p = subparsers.add_parser("long", help="the long-document benchmark: news digests up to 4096 tokens",
                              description=LONG_DESCRIPTION, formatter_class=formatter,
                              epilog="examples:\n  trbert long\n  trbert long --report   # also docs/RESULTS.md\n"
                                     "  trbert long --data news_articles --report")
    p.add_argument("--data", choices=["digests", "news_articles"], default="digests",
                   help="digests: the benchmark (default); news_articles: the fairness check of the outlet task "
                        "(run folder runs/news-articles unless --run-dir)")
    p.add_argument("--full-model", metavar="DIR", default="runs/bbc-full/finetune",
                   help="the BBC News classifier (default: runs/bbc-full/finetune)")
    p.add_argument("--run-dir", metavar="DIR", help="where stages go (default: runs/long)")
    add_job_options(p, "also write docs/results/long_digests.json and the long section of docs/RESULTS.md",
                     backbone=False, seed="training seed (default: 0)")
    p.set_defaults(handler=run_long)
    return p


def run_long(args) -> int:
    start_job(args)
    if args.data == "news_articles":
        from ..benchmarks import news_articles

        news_articles.run(args.run_dir or "runs/news-articles", seed=args.seed, report=args.report,
                          progress=not args.no_progress, command=args.command_line)
        return 0
    from ..benchmarks import long_documents

    try:
        long_documents.run(args.full_model, args.run_dir or "runs/long", seed=args.seed, report=args.report,
                       progress=not args.no_progress, command=args.command_line)
    except FileNotFoundError as error:
        raise CommandError(str(error)) from None
    return 0


