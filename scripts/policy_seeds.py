"""Train stages 2 and 3 of the full preset (the paper's placement) at one alpha with other seeds, on a
fine-tuned model from `trbert run --preset full`, and score each on the BBC News test split: how much
a TR model's accuracy moves with the policies' initial draw alone.

    .venv/bin/python scripts/policy_seeds.py --run-dir runs/bbc-full --alpha 1 --seeds 1 2

Each seed's stages go to RUN_DIR/seeds/alpha-A-seed-S (skipped when finished); prints one JSON line
per seed: accuracy, the mean fraction of tokens kept per step and the FLOPs speed-up. No wall clock.
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
    args = parser.parse_args()
    preset = recipe.quiet(recipe.PRESETS["full"])
    full = Path(args.run_dir) / "finetune"
    if not training.stage_done(full):
        parser.error(f"{full} has no finished fine-tune: run `trbert run --preset full` first")
    bbc = data.load_bbc(seed=0)
    texts, labels = list(bbc["test"]["text"]), list(bbc["test"]["label"])
    for seed in args.seeds:
        folder = Path(args.run_dir) / "seeds" / f"alpha-{args.alpha:g}-seed-{seed}"
        if not training.stage_done(folder / "policy"):  # the settings as `recipe.train_all` gives them
            training.train_policy(str(full), bbc["train"], folder / "policy",
                                  recipe._stage(preset.policy, preset, seed, alpha=args.alpha), keep_rule=preset.keep_rule)
        if not training.stage_done(folder / "joint"):
            training.train_joint(str(folder / "policy"), str(full), bbc["train"], folder / "joint",
                                 recipe._stage(preset.joint, preset, seed, alpha=args.alpha))
        model = AutoModelForSequenceClassification.from_pretrained(folder / "joint").eval()
        tokenizer = AutoTokenizer.from_pretrained(folder / "joint")
        p = evaluation.predict_batches(model, tokenizer, texts, preset.max_length, 32, progress=False)
        full_macs = evaluation.model_macs(model, p.lengths, None).sum()  # every token through every layer
        print(json.dumps({
            "alpha": args.alpha, "seed": seed, "accuracy": round(100 * evaluation.accuracy(p.pred, labels), 2),
            "kept_per_step": evaluation.kept_fraction(p),
            "flops_speedup": round(float(full_macs / p.macs.sum()), 2),
        }), flush=True)


if __name__ == "__main__":
    main()
