"""The WNUT-16 benchmark's pipeline on a tiny backbone: every stage, both early-exit variants, the records."""

from dataclasses import replace

from trbert.benchmarks import wnut as wnut_benchmark
from trbert.training import StageSettings


def test_wnut_benchmark_pipeline(backbone, tmp_path):
    short = StageSettings(epochs=1, learning_rate=1e-3, batch_size=16, max_examples=48, save_steps=1000, samples=2,
                          extra={"disable_tqdm": True})
    preset = replace(wnut_benchmark.WnutPreset(), max_length=32, finetune=short, policy=short, joint=short,
                     exits=short, self_sampling=short, alphas=[1.0], thresholds=[0.5], batch_sizes=(1, 16))
    folders = wnut_benchmark.train_models(preset, tmp_path, backbone)
    assert set(folders["tr"]) == {1.0} and (folders["early_exit"] / "config.json").is_file()
    assert (folders["self_sampling"] / "config.json").is_file()
    records = wnut_benchmark.evaluate_models(preset, folders, progress=False)
    methods = [(r["method"], r["setting"], r["batch_size"]) for r in records]
    assert methods == [(m, s, b) for b in (1, 16) for m, s in [
        ("full", "fine-tuned"), ("tr", "alpha=1"), ("early exit", "threshold=0.5"),
        ("early exit (skipped as keys)", "threshold=0.5"), ("early exit + self-sampling", "threshold=0.5")]]
    for r in records:
        assert r["metric"] == "entity_f1" and 0.0 <= r["score"] <= 1.0 and r["n_examples"] == 240
        assert r["wall_speedup"] > 0 and r["flops_speedup"] > 0
    assert "early exit (skipped as keys)" in wnut_benchmark.table(records)
