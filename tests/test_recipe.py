"""The main job's pipeline on the tiny synthetic task: every stage, the evaluation and the report."""

from dataclasses import replace

from trbert import recipe, training
from conftest import LABELS, synthetic


def test_train_all_and_evaluate_all(backbone, tmp_path):
    preset = recipe.Preset(
        name="tiny", max_length=64,
        finetune=training.StageSettings(epochs=8, learning_rate=2e-3, batch_size=32, save_steps=1000),
        policy=training.StageSettings(epochs=2, learning_rate=1e-2, batch_size=32, samples=4, save_steps=1000),
        joint=training.StageSettings(epochs=1, learning_rate=1e-4, batch_size=32, samples=2, save_steps=1000),
        alphas=[0.5, 2.0], reduction_layers=[0], layouts={(1,): [2.0]}, truncation=[8, 16], timing_examples=16, batch_sizes=(1, 8),
        capped={((0,), 0.5): [0.3]},
        capped_stage=training.StageSettings(epochs=1, learning_rate=1e-4, batch_size=32, save_steps=1000),
    )
    folders = recipe.train_all(preset, tmp_path, backbone, synthetic(600, seed=1), LABELS)
    assert set(folders["tr"]) == {0.5, 2.0} and set(folders["layouts"]) == {((1,), 2.0)}
    assert folders["capped"] == {((0,), 0.5, 0.3): tmp_path / "alpha-0.5" / "capped-0.3"}
    assert set(folders["minutes"]) == {"finetune", "alpha-0.5/policy", "alpha-0.5/joint", "alpha-2/policy",
                                       "alpha-2/joint", "layers-1/alpha-2/policy", "layers-1/alpha-2/joint",
                                       "alpha-0.5/capped-0.3"}
    assert all(m > 0 for m in folders["minutes"].values())
    records = recipe.evaluate_all(preset, folders, synthetic(120, seed=9), progress=False)
    methods = [(r["method"], r["setting"], r["batch_size"]) for r in records]
    assert methods[0] == ("full", "fine-tuned", 8)
    assert ("truncation", "first 8 tokens", 8) in methods
    assert ("tr", "alpha=0.5", 1) in methods and ("tr", "alpha=2", 8) in methods
    capped = [r for r in records if r["method"] == "tr capped (reduction at layers 0)"]
    assert [(r["setting"], r["batch_size"]) for r in capped] == [("alpha=0.5, max_keep_ratio=0.3", 1),
                                                                 ("alpha=0.5, max_keep_ratio=0.3", 8)]
    assert capped[0]["kept_fraction"][0] <= 0.3 + 0.1  # [CLS] is kept beyond the budget
    layout = [r for r in records if r["method"] == "tr (reduction at layers 1)"]
    assert [r["batch_size"] for r in layout] == [1, 8] and layout[0]["reduction_layers"] == [1]
    full = records[0]["score"]
    assert full >= 0.9
    for r in records:
        if r["method"] == "tr" or r["method"].startswith("tr ("):
            assert r["flops_speedup"] > 1.5 and r["wall_speedup"] > 0 and r["ci_low"] <= r["accuracy_diff"]
            assert abs(r["score"] - full - r["accuracy_diff"]) < 1e-9
    text = recipe.table(records)
    assert text.count("\n") == len(records) + 1 and "alpha=0.5" in text

    # A re-run finds every stage done and trains nothing.
    stamps = {p: p.stat().st_mtime for p in tmp_path.rglob("config.json")}
    again = recipe.train_all(preset, tmp_path, backbone, synthetic(600, seed=1), LABELS)
    assert stamps == {p: p.stat().st_mtime for p in tmp_path.rglob("config.json")}
    assert again["minutes"] == {}
    timing = {"total_minutes": 3.0, "training_minutes": 2.0, "measuring_minutes": 1.0}
    assert recipe.time_line({**timing, "stages_trained": {}}).endswith("every stage found finished on disk, none trained")
    assert "2 stage(s) trained: finetune 1.5, alpha-1/policy 0.5 min" in recipe.time_line(
        {**timing, "stages_trained": {"finetune": 1.5, "alpha-1/policy": 0.5}})


def test_presets_are_consistent():
    for name, preset in recipe.PRESETS.items():
        assert preset.name == name and preset.alphas and preset.max_length <= 512
        trained = {(tuple(layers), a) for layers, alphas in preset.layouts.items() for a in alphas}
        trained |= {(tuple(preset.reduction_layers or [1, 3]), a) for a in preset.alphas}
        assert all(key in trained and all(0 < c < 1 for c in caps) for key, caps in preset.capped.items())
        assert replace(preset, alphas=[1.0]).alphas == [1.0]
