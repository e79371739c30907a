"""Where a classifier's time goes at batch 1 on BBC News test articles (torch.profiler, CPU).

    .venv/bin/python scripts/profile_batch1.py runs/bbc-full/finetune runs/bbc-full/layers-0-1/alpha-1/joint
    .venv/bin/python scripts/profile_batch1.py --int8 runs/bbc-full/layers-0-1/alpha-1/joint
    .venv/bin/python scripts/profile_batch1.py --int8 --max-keep-ratio 0.01 runs/bbc-full/layers-0-3/alpha-1/joint

For each model folder: milliseconds per article (median of 3 passes after a warm-up), then the operators
by their own time and the matrix products by input shape (the kept tokens make them small).
`--max-keep-ratio` caps the tokens a TR model keeps at every step (a fraction of each article's
tokens): with a tiny cap, what remains is the cost that does not shrink with the kept tokens.
"""

import argparse
import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

import trbert  # noqa: F401  (registers the TR-BERT Auto classes)
from trbert.data import load_bbc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="model folders (plain or TR-BERT sequence classifiers)")
    parser.add_argument("--articles", type=int, default=48, help="test articles (default: 48)")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--int8", action="store_true", help="dynamic int8 linear layers (trbert.quantize_int8)")
    parser.add_argument("--max-keep-ratio", type=float, default=None,
                        help="TR models only: keep at most this fraction of each article's tokens at every step")
    parser.add_argument("--rows", type=int, default=12, help="rows of each profile table (default: 12)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    texts = load_bbc(seed=0)["test"]["text"][: args.articles]
    for folder in args.models:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        caps = {} if args.max_keep_ratio is None else {"max_keep_ratio": args.max_keep_ratio}
        model_type = AutoConfig.from_pretrained(folder).model_type
        if caps and model_type != "trbert":
            parser.error(f"--max-keep-ratio needs a TR-BERT model; {folder} is a plain {model_type} model")
        model = AutoModelForSequenceClassification.from_pretrained(folder, **caps).eval()
        label = folder + (" (int8)" if args.int8 else "") + (f" (max_keep_ratio={args.max_keep_ratio:g})" if caps else "")
        if args.int8:
            from trbert.deployment import quantize_int8

            model = quantize_int8(model)
        encoded = [tokenizer(t, truncation=True, max_length=args.max_length, return_tensors="pt") for t in texts]

        def run_all():
            with torch.inference_mode():
                for e in encoded:
                    model(**e)

        run_all()
        times = []
        for _ in range(3):
            start = time.perf_counter()
            run_all()
            times.append(time.perf_counter() - start)
        print(f"\n{label}: {1000 * statistics.median(times) / len(texts):.1f} ms "
              f"per article at batch 1 ({len(texts)} articles, {args.threads} threads)")
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            run_all()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
        print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=args.rows,
                                                                 max_shapes_column_width=60))


if __name__ == "__main__":
    main()
