"""The main job's pipeline on the tiny synthetic task: every stage, the evaluation and the report."""


from dataclasses import replace

import pytest
import torch
from builders import LABELS, synthetic
from safetensors.torch import load_file

from trbert import training
from trbert.benchmarks import bbc as recipe


def test_train_all_and_evaluate_all(backbone, tmp_path):
    preset = recipe.Preset(
        name="tiny", max_length=64,
        finetune=training.StageSettings(epochs=8, learning_rate=2e-3, batch_size=32, save_steps=1000),
        policy=training.StageSettings(epochs=2, learning_rate=1e-2, batch_size=32, samples=4, save_steps=1000),
        joint=training.StageSettings(epochs=1, learning_rate=1e-4, batch_size=32, samples=2, save_steps=1000),
        alphas=[0.5, 2.0], reduction_layers=[0], layouts={(1,): [2.0]}, truncation=[8, 16], timing_examples=16, batch_sizes=(1, 8),
        timing_repeats={1: 2},
        capped={((0,), 0.5): [0.3]}, frozen_policies=((1,),),
        capped_stage=training.StageSettings(epochs=1, learning_rate=1e-4, batch_size=32, save_steps=1000),
    )
    folders = recipe.train_all(preset, tmp_path, backbone, synthetic(600, seed=1), LABELS)
    assert set(folders["tr"]) == {0.5, 2.0} and set(folders["layouts"]) == {((1,), 2.0)}
    assert folders["capped"] == {((0,), 0.5, 0.3): tmp_path / "alpha-0.5" / "capped-0.3"}
    assert set(folders["minutes"]) == {"finetune", "alpha-0.5/policy", "alpha-0.5/joint", "alpha-2/policy",
                                       "alpha-2/joint", "layers-1/alpha-2/policy", "layers-1/alpha-2/joint",
                                       "alpha-0.5/capped-0.3"}
    assert all(m > 0 for m in folders["minutes"].values())
    # The layout named in frozen_policies keeps its policy stage's policies; the others tune them.
    for folder, frozen in [(tmp_path / "layers-1" / "alpha-2", True), (tmp_path / "alpha-2", False)]:
        policy, joint = (load_file(str(folder / stage / "model.safetensors")) for stage in ("policy", "joint"))
        same = [torch.equal(v, policy[k]) for k, v in joint.items() if ".policy." in k]
        assert same and all(same) == frozen, folder
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
    assert all(r["timed_examples"] == 16 for r in records if r["method"] != "full" and r["method"] != "truncation")
    full = records[0]["score"]
    assert full >= 0.9
    for r in records:
        if r["method"] == "tr" or r["method"].startswith("tr ("):
            assert r["flops_speedup"] > 1.5 and r["wall_speedup"] > 0 and r["ci_low"] <= r["accuracy_diff"]
            assert abs(r["score"] - full - r["accuracy_diff"]) < 1e-9
    text = recipe.table(records)
    assert text.count("\n") == len(records) + 1 and "alpha=0.5" in text
    section = recipe.markdown_section(preset, records, "trbert run", "tiny", tmp_path / "t.png", tmp_path / "R.md")
    assert "at each batch size (median of 2 interleaved passes at batch 1)." in section
    assert "\n".join(recipe.verdicts(records)) in section and "- TR-BERT (2 alphas, " in section

    # A re-run finds every stage done and trains nothing.
    stamps = {p: p.stat().st_mtime for p in tmp_path.rglob("config.json")}
    again = recipe.train_all(preset, tmp_path, backbone, synthetic(600, seed=1), LABELS)
    assert stamps == {p: p.stat().st_mtime for p in tmp_path.rglob("config.json")}
    assert again["minutes"] == {}

    # --max-drop: the budget sweep (the frozen layout, found on disk: nothing trained) scored on validation.
    budget_preset = replace(preset, budget_layout=(1,), layouts={(1,): [2.0]})
    splits = {"train": synthetic(600, seed=1), "validation": synthetic(60, seed=5)}
    budget = recipe.budget_choice(budget_preset, folders, splits, tmp_path, 0, max_drop=100, progress=False)
    assert stamps == {p: p.stat().st_mtime for p in tmp_path.rglob("config.json")}
    assert budget["chosen"]["alpha"] == 2.0 and budget["reduction_layers"] == [1]
    assert budget["chosen"]["folder"] == str(tmp_path / "layers-1" / "alpha-2" / "joint")
    budget, line = recipe.budget_outcome(budget, records, budget_preset)
    kept = budget["chosen"]
    assert kept["test_accuracy"] == layout[0]["accuracy"] and set(kept["wall_speedup"]) == {1, 8}
    assert "kept TR-BERT (reduction at layers 1), alpha=2: " in line and f"{kept['test_drop']:.2f} on test" in line
    default = recipe.budget_choice(preset, folders, splits, tmp_path, 0, max_drop=100, progress=False)
    assert default["chosen"]["alpha"] in (0.5, 2.0) and default["reduction_layers"] == [0]  # the preset's own layers
    nothing = {"max_drop": 0.5, "chosen": None, "reason": "no candidate is within 0.5 points (...)"}
    assert recipe.budget_outcome(nothing, records, preset) == (
        nothing, "- Trained to a budget (--max-drop 0.5): nothing kept. no candidate is within 0.5 points (...)")
    timing = {"total_minutes": 3.0, "training_minutes": 2.0, "measuring_minutes": 1.0}
    assert recipe.time_line({**timing, "stages_trained": {}}).endswith("every stage found finished on disk, none trained")
    assert "2 stage(s) trained: finetune 1.5, alpha-1/policy 0.5 min" in recipe.time_line(
        {**timing, "stages_trained": {"finetune": 1.5, "alpha-1/policy": 0.5}})


def test_frozen_policies_must_name_a_layout_of_the_preset(tmp_path):
    settings = training.StageSettings()
    preset = recipe.Preset(name="x", max_length=32, finetune=settings, policy=settings, joint=settings,
                           alphas=[1.0], frozen_policies=((0, 3),))
    with pytest.raises(ValueError, match=r"frozen_policies: \[\[0, 3\]\] is not a layout of the preset"):
        recipe.train_all(preset, tmp_path, "unused", None, LABELS)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("data", list(recipe.CORPORA))
def test_presets_are_consistent(data):
    for name, preset in recipe.presets(data).items():
        assert preset.data == data
        assert set(preset.frozen_policies) <= {layers for layers, _ in preset.trained()}
        assert preset.name == name and preset.alphas and preset.max_length <= 512
        trained = {(tuple(layers), a) for layers, alphas in preset.layouts.items() for a in alphas}
        trained |= {(tuple(preset.reduction_layers or [1, 3]), a) for a in preset.alphas}
        assert all(key in trained and all(0 < c < 1 for c in caps) for key, caps in preset.capped.items())


def test_a_preset_may_measure_accuracy_on_part_of_the_test_split(tmp_path):
    settings = training.StageSettings()
    preset = recipe.Preset(name="x", max_length=32, finetune=settings, policy=settings, joint=settings, alphas=[1.0])
    test = synthetic(120, seed=9)
    assert recipe.evaluated_split(preset, test) is test
    part = recipe.evaluated_split(replace(preset, test_examples=12), test)
    assert len(part) == 12 and part["text"] == [test[i]["text"] for i in range(0, 120, 10)]  # spread evenly
    assert recipe.evaluated_split(replace(preset, test_examples=500), test) is test
    records = [{**_record("full", "fine-tuned", 1.0, 0.9), "n_examples": 12, "score": 0.9, "kept_fraction": None}]
    section = recipe.markdown_section(replace(preset, test_examples=12), records, "trbert run", "tiny",
                                      tmp_path / "t.png", tmp_path / "R.md")
    assert "Accuracy on 12 test articles spread evenly over the split (batch 32)" in section
    section = recipe.markdown_section(preset, records, "trbert run", "tiny", tmp_path / "t.png", tmp_path / "R.md")
    assert "Accuracy on all 12 test articles (batch 32)" in section


def _record(method, setting, flops, accuracy, batch=32, wall=None, full=0.97):
    return {"method": method, "setting": setting, "batch_size": batch, "flops_speedup": flops, "accuracy": accuracy,
            "wall_speedup": wall, "full_accuracy": full}


def test_verdicts_read_the_targets_off_the_records():
    truncation = [_record("truncation", f"first {n} tokens", x, a)
                  for n, x, a in [(256, 1.7, 0.965), (128, 3.6, 0.957), (64, 7.4, 0.952)]]
    above = [_record("tr", f"alpha={a}", x, acc, batch=b, wall=w)
             for a, x, acc in [(0.1, 2.2, 0.975), (1, 5.2, 0.966)] for b, w in [(1, 3.6), (32, 6.7)]]
    # one point under truncation's line (0.957 + (0.952 - 0.957) * 0.7 / 3.8 = 0.9561 at 4.3x)
    under = [_record("tr (reduction at layers 0,3)", f"alpha={a}", x, acc, wall=5.0)
             for a, x, acc in [(0.1, 2.2, 0.975), (0.5, 4.3, 0.955), (1, 7.8, 0.96)]]
    lines = recipe.verdicts(truncation + above + under)
    assert lines[0] == "- TR-BERT (2 alphas, 2.20x to 5.20x FLOPs) is at or above truncation from 2x to 5x FLOPs."
    assert lines[1] == ("- TR-BERT (reduction at layers 0,3) (3 alphas, 2.20x to 7.80x FLOPs) is below truncation from "
                        "2x to 5x FLOPs: at alpha=0.5 it scores 95.50% at 4.30x where truncation scores 95.61%.")
    # tr alpha=1 is within 0.5 points at >= 4x FLOPs and >= 3.5x at both batch sizes; alpha 0.5 is not accurate
    # enough, alpha 0.1 not cheap enough.
    assert lines[2] == ("- TR-BERT, alpha=1 (3.60x at batch 1, 6.70x at batch 32) is within 0.5 points of the full "
                        "model at 4x FLOPs or more and 3.5x wall clock or more at batch 1 and 32.")

    # A truncation point above the sweep's line between two of its points; a model fast enough only at batch 32.
    sweep = [_record("tr", f"alpha={a}", x, 0.96, batch=b, wall=w, full=0.962)
             for a, x in [(0.1, 2.0), (1, 5.0)] for b, w in [(1, 3.0), (32, 6.0)]]
    lines = recipe.verdicts([_record("truncation", "first 128 tokens", 3.6, 0.965)] + sweep)
    assert lines[0].endswith("is below truncation from 2x to 5x FLOPs: truncation scores 96.50% at 3.60x where it "
                             "scores 96.00%.")
    assert lines[1] == ("- No TR-BERT model is within 0.5 points of the full model at 4x FLOPs or more and 3.5x wall "
                        "clock or more at batch 1 and 32. As accurate and as cheap in FLOPs, but slower: TR-BERT, "
                        "alpha=1 (3.00x at batch 1, 6.00x at batch 32).")


def test_seed_summary_says_what_held_across_seeds():
    def report(seed_shift, budget_test):
        records = [{**_record("full", "fine-tuned", 1.0, 0.97), "accuracy_diff": 0.0}]
        records += [{**_record("truncation", f"first {n} tokens", x, a), "accuracy_diff": a - 0.97}
                    for n, x, a in [(32, 4.0, 0.93), (64, 2.0, 0.96)]]
        for alpha, x, a in [(0.5, 2.5 + seed_shift, 0.968), (1.0, 4.5, 0.95 + seed_shift / 100)]:
            records.append({**_record("tr (reduction at layers 0,3)", f"alpha={alpha:g}", x, a), "accuracy_diff": a - 0.97})
        budget = {"max_drop": 1.0, "chosen": {"alpha": 0.5, "validation_drop": 0.3, "test_drop": budget_test}}
        return {"records": records, "budget": budget}

    table, lines = recipe.seed_summary([report(0.0, 0.2), report(1.0, -0.4)])
    assert "| TR-BERT (reduction at layers 0,3) | alpha=0.5 | 2 | -0.20 [-0.20, -0.20] | 3.00x [2.50x, 3.50x] |" in table
    assert lines[0] == ("- TR-BERT (reduction at layers 0,3): at or above truncation from 2x to 5x FLOPs in 2 of 2 seeds; "
                        "its fastest model within 0.5 points of the full model, per seed: 2.50x, 3.50x.")
    assert "alpha=0.5 (0.30 points below the full model on validation, 0.40 points above the full model on test)" in lines[1]
    assert lines[1].endswith("validation and test differ by 0.70 points at most.")


def test_a_seed_measured_before_with_the_same_settings_is_kept(tmp_path):
    import json

    report = {"command": "trbert run --preset compare --seed 1 --run-dir x --max-drop 1", "date": "2026-12-07",
              "budget": {"max_drop": 1.0}, "records": []}
    (tmp_path / "results.json").write_text(json.dumps(report))
    assert recipe._finished_run(tmp_path, "compare", 1, "bbc", {"max_drop": 1.0}) == report
    assert recipe._finished_run(tmp_path, "compare", 2, "bbc", {"max_drop": 1.0}) is None  # another seed
    assert recipe._finished_run(tmp_path, "quick", 1, "bbc", {}) is None  # another preset
    assert recipe._finished_run(tmp_path, "compare", 1, "bbc", {"max_drop": 0.5}) is None  # another budget
    assert recipe._finished_run(tmp_path, "compare", 1, "bbc", {"alphas": [1.0]}) is None
    assert recipe._finished_run(tmp_path / "nowhere", "compare", 1, "bbc", {}) is None
