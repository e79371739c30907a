"""Train stages 2 and 3 of the full preset at one alpha with other seeds (and, optionally, other policy
or joint settings), on a fine-tuned model from `trbert run --preset full`, and score each on the BBC News
test split: how much a TR model's accuracy moves with the policies' initial draw, and whether a change
to the recipe makes it move less.

    .venv/bin/python scripts/policy_seeds.py --run-dir runs/bbc-full --alpha 1 --seeds 1 2
    .venv/bin/python scripts/policy_seeds.py --run-dir runs/bbc-full --alpha 1 --layers 0 3 --seeds 0 1 2 \
        --guide-rate 0.3

Each seed's stages go to RUN_DIR/seeds/[layers-L/]alpha-A[-variant]-seed-S (skipped when finished);
prints one JSON line per seed: accuracy, the mean fraction of tokens kept per step and the FLOPs
speed-up. No wall clock.
"""

import argparse
import json
from pathlib import Path

from transformers import AutoModelForSequenceClassification, AutoTokenizer

from trbert import data, evaluation, recipe, training


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
    args = parser.parse_args()
    preset = recipe.quiet(recipe.PRESETS["full"])
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
    overrides = {"keep_rule": preset.keep_rule}
    root = Path(args.run_dir) / "seeds"
    if args.layers:
        overrides["reduction_layers"] = args.layers
        root = root / f"layers-{'-'.join(map(str, args.layers))}"
    bbc = data.load_bbc(seed=0)
    texts, labels = list(bbc["test"]["text"]), list(bbc["test"]["label"])
    for seed in args.seeds:
        folder = root / f"alpha-{args.alpha:g}{variant}-seed-{seed}"
        if not training.stage_done(folder / "policy"):  # the settings as `recipe.train_all` gives them
            training.train_policy(str(full), bbc["train"], folder / "policy",
                                  recipe._stage(preset.policy, preset, seed, alpha=args.alpha, **policy_changes),
                                  **overrides)
        if not training.stage_done(folder / "joint"):
            training.train_joint(str(folder / "policy"), str(full), bbc["train"], folder / "joint",
                                 recipe._stage(preset.joint, preset, seed, alpha=args.alpha, **joint_changes))
        model = AutoModelForSequenceClassification.from_pretrained(folder / "joint").eval()
        tokenizer = AutoTokenizer.from_pretrained(folder / "joint")
        p = evaluation.predict_batches(model, tokenizer, texts, preset.max_length, 32, progress=False)
        full_macs = evaluation.model_macs(model, p.lengths, None).sum()  # every token through every layer
        print(json.dumps({
            "alpha": args.alpha, "layers": args.layers, "variant": variant.lstrip("-") or "preset", "seed": seed,
            "accuracy": round(100 * evaluation.accuracy(p.pred, labels), 2),
            "kept_per_step": evaluation.kept_fraction(p),
            "flops_speedup": round(float(full_macs / p.macs.sum()), 2),
        }), flush=True)


if __name__ == "__main__":
    main()
