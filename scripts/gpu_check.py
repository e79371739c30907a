"""Every GPU figure in one run (about 6 minutes on an H100 or H200), each part's JSON written to --out:

1. gpu_parity.json: the variable-length attention path (one FlashAttention call over all examples)
   against the per-example path, both in bfloat16, with random policies: removal with restore, skipped
   tokens as keys, long input in 512-token segments; kept lengths identical, outputs within the
   tolerance below, each example alone equal to its batch (kept lengths, outputs within the tolerance).
2. speed_cuda_bfloat16.json, speed_cuda_float32.json: `trbert speed` at n=512, batch 1, 32, 128, 256.
3. bbc_gpu.json: `scripts/gpu_bench.py` with the default recipe (steps 0,3, alpha 2) trained on the GPU,
   against the full model in bfloat16 and float32 at batch 1, 32 and 128.
4. long_gpu.json: that model in long-input mode on news digests of 4096 tokens against the segment
   baseline (the full model on every 512-token segment), batch 8, wall clock and FLOPs.

The tolerance. bfloat16 keeps 8 significant bits, so two attention kernels that add the same products
in different orders differ by about the rounding of the values themselves, and a fixed absolute bound
would be either loose or arbitrary. The yardstick is a third implementation: the padded SDPA path (what
fp32 runs on a GPU) in bfloat16. The variable-length path passes when the largest difference of an
example's final [CLS] state (what a classifier reads) from the per-example path's is at most 1.5 times
the padded path's, plus 1e-2 (a few roundings of hidden states whose size is about 1 after each layer
norm). The policies keep by the expected rule (round(sum p) tokens per example, as the recipe's models
do; computed in fp32), so rounding rarely changes a count, and the kept lengths must be identical; a
token whose probability sits at the cut can still be kept by one path and skipped by the other, and
its restored state then differs by much more: the share of such tokens is reported for both paths.

    python scripts/gpu_check.py --backbone /tmp/minilm --out OUT [--parts parity speed bbc long]
    python scripts/gpu_check.py --cpu-reference --quick --out /tmp/check   # the bookkeeping, on the CPU

`--cpu-reference` runs the parity part on the CPU with a reference of the variable-length call (what
the tests use) in place of the kernel: a check of the script, not of the GPU.
"""

import argparse
import json
import shlex
import subprocess
import sys
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers

from trbert import TRBertModel, evaluation, reduction
from trbert.benchmarks import speed
from trbert.io import write_json

SLACK = 1e-2
FACTOR = 1.5


def reference_varlen(q, k, v, cu_seq_q, cu_seq_k, max_q, max_k):
    """What `torch.nn.attention.varlen.varlen_attn` computes: each sequence attends within itself."""
    spans_q, spans_k = cu_seq_q.tolist(), cu_seq_k.tolist()
    out = []
    for (q0, q1), (k0, k1) in zip(zip(spans_q, spans_q[1:]), zip(spans_k, spans_k[1:])):
        qe, ke, ve = (x.transpose(0, 1)[None] for x in (q[q0:q1], k[k0:k1], v[k0:k1]))
        out.append(F.scaled_dot_product_attention(qe, ke, ve)[0].transpose(0, 1))
    return torch.cat(out)


@contextmanager
def forced_path(path: str):
    """Packed attention on `path` whatever the device and dtype."""
    automatic = reduction.attention_path
    reduction.attention_path = lambda device, dtype, dropout=0.0: path
    try:
        yield
    finally:
        reduction.attention_path = automatic


def spread_policies(model, seed: int = 1):
    """Random policy weights that keep some tokens and skip others (a new policy keeps every token)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for policy in model.encoder.policy:
            for p in policy.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) / p.shape[-1] ** 0.5 * 3)
            policy.out.bias.zero_()
    return model


def run_model(model, path, ids, mask):
    with forced_path(path), torch.inference_mode():
        out = model(input_ids=ids, attention_mask=mask, restore=True)
    return out.last_hidden_state.float(), out.kept_lengths


def parity_case(name, backbone, device, dtype, n, batch, seed, **config) -> dict:
    def load():
        model = TRBertModel.from_pretrained(backbone, attn_implementation="sdpa", keep_rule="expected", **config)
        return spread_policies(model).eval()

    fp32, half = load().to(device), load().to(device=device, dtype=dtype)
    ids, mask = (x.to(device) for x in speed.random_batch(n, batch, seed=seed, sep_id=half.config.sep_token_id))
    valid = mask.bool()
    _, ref_kept = run_model(fp32, "per_example", ids, mask)
    per_example, pe_kept = run_model(half, "per_example", ids, mask)
    varlen, vl_kept = run_model(half, "varlen", ids, mask)
    padded, pd_kept = run_model(half, "padded", ids, mask)

    def cls_diff(a, b):  # [B] each example's largest difference in its [CLS] state (what a classifier reads)
        return (a[:, 0] - b[:, 0]).abs().max(-1).values

    def beyond(a, b, bound):  # the share of tokens further apart than `bound` (kept by one path only)
        return round(float(((a - b).abs().amax(-1) > bound)[valid].double().mean()), 5)

    bound = FACTOR * float(cls_diff(padded, per_example).max()) + SLACK
    varlen_diff = cls_diff(varlen, per_example)
    alone_diff, alone_kept = 0.0, True
    for i in range(batch):  # batch invariance on the varlen path
        length = int(mask[i].sum())
        one, one_kept = run_model(half, "varlen", ids[i:i + 1, :length], mask[i:i + 1, :length])
        alone_kept &= bool((one_kept == vl_kept[i:i + 1]).all())
        alone_diff = max(alone_diff, float((one[0, 0] - varlen[i, 0]).abs().max()))
    lengths = mask.sum(1).double()
    record = {
        **dict.fromkeys(evaluation.RECORD_FIELDS), "method": "tr", "setting": name, "model": Path(backbone).name,
        "data": "random tokens", "max_length": n, "n_examples": batch, "batch_size": batch, "device": str(device),
        "dtype": str(dtype).removeprefix("torch."), "keep_rule": "expected", **config,
        "kept_fraction": [round(x, 4) for x in (vl_kept.double() / lengths[:, None]).mean(0).tolist()],
        "kept_lengths_equal": bool((vl_kept == pe_kept).all()),
        "kept_lengths_equal_padded": bool((pd_kept == pe_kept).all()),
        "examples_kept_lengths_as_fp32": round(float((vl_kept == ref_kept).all(1).double().mean()), 4),
        "cls_max_abs_diff_varlen": float(varlen_diff.max()), "cls_median_abs_diff_varlen": float(varlen_diff.median()),
        "cls_max_abs_diff_padded": float(cls_diff(padded, per_example).max()), "tolerance": bound,
        "tokens_beyond_tolerance_varlen": beyond(varlen, per_example, bound),
        "tokens_beyond_tolerance_padded": beyond(padded, per_example, bound),
        "alone_cls_max_abs_diff": alone_diff, "alone_kept_equal": alone_kept,
    }
    record["passed"] = bool(record["kept_lengths_equal"] and varlen_diff.max() <= bound and alone_kept
                            and alone_diff <= bound)
    print(json.dumps(record), flush=True)
    return record


def parity(args, out: Path) -> bool:
    device = torch.device(args.device)
    if args.cpu_reference:
        reduction._varlen_attn = reference_varlen
    dtype = torch.bfloat16
    n, batch, long_n = (128, 6, 700) if args.quick else (512, 32, 2048)
    records = [
        parity_case("removal, restore", args.backbone, device, dtype, n, batch, 0, reduction_layers=[0, 3]),
        parity_case("skipped tokens as keys", args.backbone, device, dtype, n, batch, 1, reduction_layers=[1, 3],
                    skipped_as_keys=True),
        parity_case("long input, 512-token segments", args.backbone, device, dtype, long_n, 4, 2,
                    reduction_layers=[1, 3], long_input=True),
    ]
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    evaluation.write_results_json(out / "gpu_parity.json", "gpu_parity", shlex.join(sys.argv), records, gpu=gpu)
    return all(r["passed"] for r in records)


def speed_part(args, out: Path) -> bool:
    shapes = dict(lengths=[128], batch_sizes=[1, 4], repeats=1, batched_repeats=1) if args.quick else dict(
        lengths=[512], batch_sizes=[1, 32, 128, 256], repeats=10, batched_repeats=6)
    for dtype in ("bfloat16", "float32"):
        report = speed.run(**shapes, device=args.device, dtype=dtype, backbone=args.backbone, progress=False,
                           command=f"trbert speed --device cuda --dtype {dtype} --lengths 512 --batch-sizes 1 32 128 256")
        write_json(out / f"speed_{args.device}_{dtype}.json", report)
        print(speed.text_table(report["records"]), flush=True)
    return True


def bbc_part(args, out: Path) -> bool:
    command = [sys.executable, str(Path(__file__).with_name("gpu_bench.py")), "--run-dir", args.run_dir,
               "--backbone", args.backbone, "--alphas", "--layout-alphas", "2", "--executions", "packed",
               "--dtypes", "bfloat16", "float32", "--out", str(out / "bbc_gpu.json")]
    return subprocess.run(command).returncode == 0


def long_part(args, out: Path) -> bool:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from trbert import TRBertForSequenceClassification
    from trbert.cost import reduction_cost, segmented_layer_macs
    from trbert.data import load_digests
    from trbert.evaluation import SegmentBaseline, spread, timed_side_by_side

    run = Path(args.run_dir)
    device = torch.device(args.device)
    n_texts, length = (4, 1024) if args.quick else (32, 4096)
    records = []
    tokenizer = AutoTokenizer.from_pretrained(run / "finetune")
    digests = list(load_digests(length, "test", n=2 * n_texts)["text"])
    texts = [digests[i] for i in spread(len(digests), n_texts)]
    batches = [tokenizer(texts[s:s + 8], truncation=True, max_length=length, padding=True, return_tensors="pt")
               for s in range(0, len(texts), 8)]
    lengths = torch.cat([b["attention_mask"].sum(1) for b in batches])
    for dtype in (torch.bfloat16, torch.float32):
        full = AutoModelForSequenceClassification.from_pretrained(run / "finetune").eval().to(device=device, dtype=dtype)
        baseline = SegmentBaseline(full, tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id,
                                   segment_length=full.config.max_position_embeddings)
        tr = TRBertForSequenceClassification.from_pretrained(args.long_model or run / "layers-0-3" / "alpha-2" / "joint",
                                                             long_input=True)
        tr.eval().to(device=device, dtype=dtype)
        with torch.inference_mode():
            kept = torch.cat([tr(**{k: v.to(device) for k, v in b.items()}).kept_lengths.cpu() for b in batches])
        seg_macs = full.config.num_hidden_layers * segmented_layer_macs(full.config, lengths, 512).sum().item()
        tr_macs = reduction_cost(tr.config, lengths, kept).macs.sum().item()
        timed = timed_side_by_side(tr, baseline, batches, len(texts), repeats=5)
        record = {**dict.fromkeys(evaluation.RECORD_FIELDS), "method": "tr (long input)", "data": f"bbc_digests_{length} (derived)",
                  "model": "all-MiniLM-L6-v2", "split": "test", "max_length": length, "setting": "steps 0,3 alpha=2, trained on articles",
                  "batch_size": 8, "n_examples": len(texts), "dtype": str(dtype).removeprefix("torch."),
                  "mean_tokens": round(float(lengths.double().mean()), 1),
                  "kept_fraction": [round(x, 4) for x in (kept.double() / lengths[:, None]).mean(0).tolist()],
                  "flops_speedup": round(seg_macs / tr_macs, 4), **timed}
        records.append(record)
        print(json.dumps(record), flush=True)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    evaluation.write_results_json(out / "long_gpu.json", "long_gpu", shlex.join(sys.argv), records, gpu=gpu)
    return True


PARTS = {"parity": parity, "speed": speed_part, "bbc": bbc_part, "long": long_part}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", help="the MiniLM folder (default: the embedded one)")
    parser.add_argument("--out", required=True, help="folder for the JSON files")
    parser.add_argument("--run-dir", default="runs/bbc-gpu", help="where gpu_bench.py trains (default: runs/bbc-gpu)")
    parser.add_argument("--long-model", help="the TR model timed on long digests (default: RUN_DIR/layers-0-3/alpha-2/joint)")
    parser.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS))
    parser.add_argument("--cpu-reference", action="store_true",
                        help="on the CPU, parity with a reference of the variable-length kernel: a check of the script")
    parser.add_argument("--quick", action="store_true", help="small shapes: a check of the script")
    args = parser.parse_args()
    args.device = "cpu" if args.cpu_reference else "cuda"
    transformers.logging.set_verbosity_error()  # the load report lists the (expected) new policy weights
    transformers.logging.disable_progress_bar()
    if args.backbone is None:
        from trbert.configuration import default_backbone

        args.backbone = default_backbone()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in args.parts:
        start = time.perf_counter()
        print(f"== {name}", flush=True)
        try:
            ok = PARTS[name](args, out)
        except Exception:  # report and go on: one part's failure must not cost the others' figures
            traceback.print_exc()
            ok = False
        print(f"== {name}: {'passed' if ok else 'FAILED'} in {time.perf_counter() - start:.0f} s", flush=True)
        if not ok:
            failed.append(name)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
