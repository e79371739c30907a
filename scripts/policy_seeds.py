"""Train stages 2 and 3 of the full preset at one alpha with other seeds (and, optionally, other policy
or joint settings), on a fine-tuned model from `trbert run --preset full`, and score each on the BBC News
test split: how much a TR model's accuracy moves with the policies' initial draw, and whether a change
to the recipe makes it move less.

    .venv/bin/python scripts/policy_seeds.py --run-dir runs/bbc-full --alpha 1 --seeds 1 2
    .venv/bin/python scripts/policy_seeds.py --run-dir runs/bbc-full --alpha 1 --layers 0 3 --seeds 0 1 2 \
        --guide-rate 0.3

Each seed's stages go to RUN_DIR/seeds/[layers-L/]alpha-A[-variant]-seed-S (skipped when finished).
Every model is scored against the run's full model on all test articles (accuracy with its paired-
bootstrap interval, tokens kept per step, FLOPs speed-up; with --timing also the wall-clock speed-up at
batch 1 and 32, as in the preset's report) and on the validation split (the policy stage's reward and
its parts, after stage 2 and after stage 3), printed as tables and, with --out, written as a results file.
"""

import argparse
import shlex
import sys
from pathlib import Path

from transformers import AutoModelForSequenceClassification, AutoTokenizer

from trbert import data, evaluation, training
from trbert.benchmarks import bbc as main_job
from trbert.tasks.classification import accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", default="runs/bbc-full", help="a full-preset run folder with its finetune")
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--layers", type=int, nargs="+", default=None,
                        help="reduction layers (default: the paper's placement, before layers 1 and 3)")
    parser.add_argument("--guide-rate", type=float, default=None,
                        help="policy stage: imitation warm-up for this fraction of its steps (preset: none)")
    parser.add_argument("--policy-examples", type=int, default=None,
                        help="policy stage: train on this many articles (preset: 600; 0 for all)")
    parser.add_argument("--policy-epochs", type=float, default=None, help="policy stage epochs (preset: 1)")
    parser.add_argument("--joint-samples", type=int, default=None,
                        help="joint stage: trajectories per article (preset: 2)")
    parser.add_argument("--joint-epochs", type=float, default=None, help="joint stage epochs (preset: 2)")
    parser.add_argument("--frozen-joint", action="store_true",
                        help="joint stage with the policies frozen: distillation only, keep decisions made as at "
                             "inference (`training.train_joint(freeze_policies=True)`, as the preset's step on the embeddings)")
    parser.add_argument("--timing", action="store_true",
                        help="also time each model side by side with the full model at batch 1 and 32, as the "
                             "preset's report does (run it with nothing else on the machine)")
    parser.add_argument("--out", default=None, help="write the records here as a results JSON file")
    args = parser.parse_args()
    if args.frozen_joint and args.joint_samples is not None:
        parser.error("--joint-samples has no effect with --frozen-joint (no trajectories are sampled)")
    preset = main_job.quiet(main_job.PRESETS["full"])
    full = Path(args.run_dir) / "finetune"
    if not training.stage_done(full):
        parser.error(f"{full} has no finished fine-tune: run `trbert run --preset full` first")
    policy_changes, joint_changes, variant = {}, {}, ""
    if args.guide_rate is not None:
        policy_changes["guide_rate"], variant = args.guide_rate, variant + f"-guide-{args.guide_rate:g}"
    if args.policy_examples is not None:
        policy_changes["max_examples"] = args.policy_examples or None
        variant += f"-policy-{args.policy_examples or 'all'}"
    if args.policy_epochs is not None:
        policy_changes["epochs"], variant = args.policy_epochs, variant + f"-policy-epochs-{args.policy_epochs:g}"
    if args.joint_samples is not None:
        joint_changes["samples"], variant = args.joint_samples, variant + f"-joint-samples-{args.joint_samples}"
    if args.joint_epochs is not None:
        joint_changes["epochs"], variant = args.joint_epochs, variant + f"-joint-epochs-{args.joint_epochs:g}"
    if args.frozen_joint:
        variant += "-frozen-joint"
    overrides = {"keep_rule": preset.keep_rule}
    root = Path(args.run_dir) / "seeds"
    if args.layers:
        overrides["reduction_layers"] = args.layers
        root = root / f"layers-{'-'.join(map(str, args.layers))}"
    bbc = data.load_bbc(seed=0)
    texts, labels = list(bbc["test"]["text"]), list(bbc["test"]["label"])
    dev_texts, dev_labels = list(bbc["validation"]["text"]), list(bbc["validation"]["label"])
    tokenizer = AutoTokenizer.from_pretrained(full)
    full_model = AutoModelForSequenceClassification.from_pretrained(full).eval()
    full_pred = evaluation.predict_batches(full_model, tokenizer, texts, preset.max_length, 32, progress=False)
    common = {"model": main_job.MODEL_NAME, "data": "bbc_news", "split": "test", "max_length": preset.max_length}
    records = [evaluation.results_record(
        {"accuracy": accuracy(full_pred.pred, labels), "flops_speedup": 1.0, "n_examples": len(texts),
         "batch_size": 32, "kept_fraction": None}, method="full", setting="fine-tuned", **common)]
    method = "tr" + (f" (reduction at layers {','.join(map(str, args.layers))})" if args.layers else "")
    for seed in args.seeds:
        folder = root / f"alpha-{args.alpha:g}{variant}-seed-{seed}"
        if not training.stage_done(folder / "policy"):  # the settings as `main_job.train_all` gives them
            training.train_policy(str(full), bbc["train"], folder / "policy",
                                  main_job.stage_settings(preset.policy, preset, seed, alpha=args.alpha, **policy_changes),
                                  **overrides)
        if not training.stage_done(folder / "joint"):
            training.train_joint(str(folder / "policy"), str(full), bbc["train"], folder / "joint",
                                 main_job.stage_settings(preset.joint, preset, seed, alpha=args.alpha, **joint_changes),
                                 freeze_policies=args.frozen_joint)
        model = AutoModelForSequenceClassification.from_pretrained(folder / "joint").eval()
        result = evaluation.evaluate_classifier(model, full_model, tokenizer, texts, labels, preset.max_length, 32,
                                                timing_repeats=0, progress=False, full_predictions=full_pred)
        # The validation split's reward (as the policy stage defines it, with the keep rule of inference)
        # after stage 2 and after stage 3: what could choose among draws without looking at the test split.
        policy = AutoModelForSequenceClassification.from_pretrained(folder / "policy").eval()
        dev = {name: evaluation.mean_reward(evaluation.predict_batches(m, tokenizer, dev_texts, preset.max_length, 32,
                                                                       progress=False), dev_labels, args.alpha)
               for name, m in (("policy", policy), ("joint", model))}
        fields = {"method": method, "validation": {name: {k: round(v, 6) for k, v in d.items()}
                                                   for name, d in dev.items()},
                  "setting": f"alpha={args.alpha:g}, {variant.lstrip('-') or 'preset settings'}, seed={seed}",
                  **common}
        if args.timing:
            records += main_job.timed_records(preset, model, full_model, tokenizer, texts, labels, result, **fields)
        else:
            records.append(evaluation.results_record({**result, "batch_size": 32}, **fields))
    print(main_job.table(records))
    print("\nValidation split (reward = -loss - alpha * kept) after the policy stage and after the joint stage:\n"
          "\n| setting | policy: reward | loss | kept | accuracy | joint: reward | loss | kept | accuracy "
          "| test accuracy |\n|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in records[1:]:
        if r["batch_size"] != 32:
            continue
        cells = [f"{d['reward']:.4f} | {d['loss']:.4f} | {d['kept']:.4f} | {100 * d['accuracy']:.2f}"
                 for d in (r["validation"]["policy"], r["validation"]["joint"])]
        print(f"| {r['setting']} | {' | '.join(cells)} | {100 * r['score']:.2f} |")
    if args.out:
        evaluation.write_results_json(args.out, Path(args.out).stem,
                                      shlex.join([".venv/bin/python", "scripts/policy_seeds.py", *sys.argv[1:]]),
                                      records)


if __name__ == "__main__":
    main()
