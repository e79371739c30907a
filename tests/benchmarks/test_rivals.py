"""The rivals benchmark's parts on tiny models: fewer layers with a re-tuned head, the interleaved
measurement, and the verdicts read off the records."""

import random

import pytest
import torch
from builders import FILLER, MARKERS, synthetic
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertForSequenceClassification

import trbert
from trbert import evaluation
from trbert.benchmarks import bbc as recipe
from trbert.benchmarks import rivals as bench
from trbert.cli import bench as bench_command
from trbert.cost import reduction_cost
from trbert.strategies import FixedFractionStrategy
from trbert.tasks.classification import accuracy


def bags(n, seed):
    """Class 0 / 1: mostly 'red' / 'blue'; class 2: mostly five filler words. The [CLS] state of even a
    random one-layer model tells them apart (it mixes the token embeddings), so a head can learn it."""
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        label = rng.randrange(3)
        pool = [MARKERS[label]] if label < 2 else FILLER[:5]
        texts.append(" ".join(rng.choice(pool) if rng.random() < 0.7 else rng.choice(FILLER) for _ in range(12)))
        labels.append(label)
    return Dataset.from_dict({"text": texts, "label": labels})


@pytest.fixture(scope="module")
def classifier(backbone, tmp_path_factory):
    """A tiny 'fine-tuned' classifier folder (random head) over the tiny backbone, 3 classes."""
    folder = tmp_path_factory.mktemp("classifier")
    torch.manual_seed(1)
    model = BertForSequenceClassification.from_pretrained(backbone, num_labels=3)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(backbone).save_pretrained(folder)
    return folder


def test_fewer_layers_keeps_the_first_layers_and_retunes_the_head(classifier, tmp_path):
    full = BertForSequenceClassification.from_pretrained(classifier)
    train, dev = bags(96, seed=1), bags(48, seed=2)
    out = bench.fewer_layers(classifier, 1, train, dev, max_length=32, out=tmp_path / "layers-1", steps=100, lr=1e-2,
                             progress=False)
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.num_hidden_layers == 1 and len(model.bert.encoder.layer) == 1
    for a, b in zip(model.bert.encoder.layer[0].parameters(), full.bert.encoder.layer[0].parameters()):
        assert torch.equal(a, b)  # the kept layer is the fine-tuned one, untouched
    assert not torch.equal(model.classifier.weight, full.classifier.weight)  # the head was re-tuned

    tokenizer = AutoTokenizer.from_pretrained(out)

    def dev_accuracy(m):
        pred = evaluation.predict_batches(m, tokenizer, list(dev["text"]), 32, 16, progress=False).pred
        return accuracy(pred, dev["label"])

    untuned = AutoModelForSequenceClassification.from_pretrained(classifier, num_hidden_layers=1)
    assert dev_accuracy(model) > 0.8 > dev_accuracy(untuned)
    # Done once: a second call finds the folder and trains nothing.
    stamp = (out / "config.json").stat().st_mtime_ns
    bench.fewer_layers(classifier, 1, train, dev, 32, tmp_path / "layers-1", progress=False)
    assert (out / "config.json").stat().st_mtime_ns == stamp


def test_measure_compares_every_method_with_the_full_model(classifier):
    tokenizer = AutoTokenizer.from_pretrained(classifier)
    test = synthetic(40, seed=3, length=20)
    texts, labels = list(test["text"]), list(test["label"])
    full = AutoModelForSequenceClassification.from_pretrained(classifier).eval()
    keep_all = trbert.TRBertForSequenceClassification.from_pretrained(classifier, keep_threshold=0.0)
    halved = trbert.TRBertForSequenceClassification.from_pretrained(classifier, reduction_layers=[1])
    halved.set_strategy(FixedFractionStrategy([0.5]))
    methods = [
        bench.torch_method("full", "fp32", full, 32),
        bench.torch_method("truncation", "first 8 tokens", full, 8),
        bench.torch_method("tr", "keep all", keep_all, 32),
        bench.torch_method("tr", "half", halved, 32),
    ]
    preset = bench.BenchPreset(name="t", main_job="quick", timed_b1=4, timed_b32=8, rounds=2)
    records = bench.measure(methods, tokenizer, texts, labels, preset, progress=False)

    assert [(r["method"], r["setting"], r["batch_size"]) for r in records] == [
        (m.method, m.setting, b) for m in methods for b in (1, 32)]
    by = {(r["setting"], r["batch_size"]): r for r in records}
    full_pred = evaluation.predict_batches(full, tokenizer, texts, 32, 32, progress=False)
    for r in records:
        assert r["full_accuracy"] == pytest.approx(accuracy(full_pred.pred, labels))
        assert r["wall_speedup"] > 0 and r["n_examples"] == 40
        assert (r["latency_ms"] is not None) == (r["batch_size"] == 1)
        assert (r["throughput_per_s"] is not None) == (r["batch_size"] == 32)
    assert by[("fp32", 1)]["flops_speedup"] == 1.0 and by[("fp32", 1)]["wall_speedup"] == 1.0
    # Keeping every token: the full model's predictions exactly, at the policy networks' extra cost.
    assert by[("keep all", 32)]["accuracy"] == by[("fp32", 32)]["accuracy"]
    assert by[("keep all", 32)]["accuracy_diff"] == 0.0 and by[("keep all", 32)]["kept_fraction"] == [1.0]
    assert by[("keep all", 32)]["flops_speedup"] < 1.0
    # FLOPs from the lengths each method ran on.
    lengths = full_pred.lengths
    config = full.config
    expected = reduction_cost(config, lengths, None).macs.sum() / reduction_cost(
        config, lengths.clamp(max=8), None).macs.sum()
    assert by[("first 8 tokens", 32)]["flops_speedup"] == pytest.approx(float(expected), rel=1e-3)
    assert by[("half", 32)]["kept_fraction"] == pytest.approx([0.5], abs=0.03)
    assert by[("half", 32)]["gflops_per_example"] < by[("fp32", 32)]["gflops_per_example"]
    if bench.resident_bytes() is not None:  # Linux: peak memory at batch 32
        assert all(r["peak_mem_mb"] is not None and r["peak_mem_mb"] >= 0 for r in records if r["batch_size"] == 32)


def _record(method, setting, accuracy, wall, batch=1, full_accuracy=0.97):
    return {"method": method, "setting": setting, "accuracy": accuracy, "wall_speedup": wall, "batch_size": batch,
            "full_accuracy": full_accuracy}


def test_verdicts_name_the_rivals_above_the_tr_curve():
    records = [
        _record("full", "", 0.97, 1.0),
        _record("tr", "alpha=1", 0.965, 3.0),
        _record("tr", "alpha=0.2", 0.97, 2.0),
        _record("truncation", "first 128", 0.96, 2.5),  # below TR at 3x: beaten
        _record("layers", "first 2", 0.95, 3.5),  # faster than every TR point: above the curve
        _record("int8", "", 0.972, 1.8),  # more accurate than TR at >= 1.8x: above the curve
        _record("truncation", "first 32", 0.90, 6.0),  # outside 1.5x-4x: not judged
        _record("tr_int8", "alpha=1", 0.964, 7.0),
    ]
    lines = bench.verdicts(records)
    text = "\n".join(lines)
    assert "first 2" in text and "int8 (): 97.20%" in text and "first 128" not in text and "first 32" not in text
    with_int8 = "\n".join(bench.verdicts(records, ("tr", "tr_int8")))
    assert "first 2" not in with_int8 and "int8 (): 97.20%" in with_int8
    assert bench.verdicts([r for r in records if r["method"] in ("full", "tr", "truncation")]) == [
        "- batch 1, tr: at or above every rival point in 1.5x-4x"]
    env = bench.envelope(records, ("tr", "tr_int8"), 1)
    assert [p["setting"] for p in env] == ["alpha=0.2", "alpha=1", "alpha=1"]  # 2x, 3x, then 7x (int8)

    verdict = bench.int8_verdict(records + [_record("ort_int8", "", 0.97, 2.9)])
    assert "alpha=1" in verdict and "7.00x" in verdict and "not met" in verdict and "2.90x" in verdict
    assert "no TR + int8" in bench.int8_verdict([_record("tr_int8", "a", 0.90, 9.0)])


def test_cli_presets_are_the_benchmark_presets():
    """The command line names the presets without importing the benchmarks (which load torch)."""
    from trbert.cli import run as run_command

    assert set(bench_command.PRESETS) == set(recipe.CORPORA)
    for data, names in bench_command.PRESETS.items():
        assert list(names) == list(bench.presets(data))
        for preset in bench.presets(data).values():
            assert preset.data == data and preset.main_job in recipe.presets(data)
    assert set(run_command.PRESETS) == set(recipe.CORPORA)
    for data, names in run_command.PRESETS.items():
        assert list(names) == list(recipe.presets(data))
    for preset in bench.PRESETS.values():
        assert preset.main_job in recipe.PRESETS


def test_every_method_is_built_and_measured(classifier, tmp_path):
    """The harness end to end on a tiny model: each rival's folder made, loaded as a method, measured."""
    from dataclasses import replace

    train, dev = bags(48, seed=4), bags(24, seed=5)
    preset = replace(bench.PRESETS["quick"], ltp_steps=3, ltp_batch_size=8, timed_b1=3, timed_b32=6, rounds=1)
    tr = tmp_path / "tr"
    trbert.TRBertForSequenceClassification.from_pretrained(classifier).save_pretrained(tr)
    capped = tmp_path / "capped"
    trbert.TRBertForSequenceClassification.from_pretrained(classifier, max_keep_ratio=0.5).save_pretrained(capped)
    AutoTokenizer.from_pretrained(classifier).save_pretrained(capped)  # as every stage's folder has it
    folders = {
        "full": classifier,
        "onnx": bench.onnx_models(classifier, tmp_path / "onnx"),
        "layers": {1: bench.fewer_layers(classifier, 1, train, dev, 32, tmp_path / "layers-1", steps=5,
                                         progress=False)},
        "topk": {((0.5,), False): bench.selection_model(classifier, tmp_path / "topk", reduction_layers=[1],
                                                        selection="attention_topk", keep_fractions=[0.5])},
        "ltp": {(0.5, False): bench.ltp_model(classifier, tmp_path / "ltp", train, 0.5, preset, 32, [1], 0, False)},
        "tr": {1.0: tr},
        "layouts": {},
        "capped": {((1,), 1.0, 0.5): capped},
        "main_job": replace(recipe.PRESETS["quick"], max_length=32, truncation=[8]),
    }
    folders["ort_tr"] = {(1.0, (1,), 0.5): bench.onnx_tr_models(capped, tmp_path / "onnx-tr" / "capped")}
    methods = bench.build_methods(folders, threads=1)
    assert [(m.method, m.setting.split(" (")[0]) for m in methods] == [
        ("full", "fine-tuned, fp32"), ("ort_fp32", "ONNX Runtime"), ("ort_int8", "ONNX Runtime"),
        ("int8", "dynamic int8 linears"), ("truncation", "first 8 tokens"), ("layers", "first 1 layers"),
        ("attention_topk", "keep 0.5, training-free"), ("ltp", "lambda=0.5"), ("tr", "alpha=1"),
        ("tr_int8", "alpha=1"), ("tr", "alpha=1, steps at layers 1, max_keep_ratio=0.5"),
        ("tr_int8", "alpha=1, steps at layers 1, max_keep_ratio=0.5"),
        ("ort_tr", "alpha=1, steps at layers 1, max_keep_ratio=0.5"),
        ("ort_tr_int8", "alpha=1, steps at layers 1, max_keep_ratio=0.5")]
    test = bags(16, seed=6)
    records = bench.measure(methods, AutoTokenizer.from_pretrained(classifier), list(test["text"]),
                            list(test["label"]), preset, progress=False)
    by = {(r["method"], r["batch_size"]): r for r in records}
    assert by[("ort_fp32", 32)]["accuracy"] == by[("full", 32)]["accuracy"]  # the same model, exported
    capped_torch, capped_ort = (next(r for r in records if r["method"] == m and r["batch_size"] == 32
                                     and "max_keep_ratio" in r["setting"]) for m in ("tr", "ort_tr"))
    assert capped_ort["accuracy"] == capped_torch["accuracy"] and capped_ort["kept_fraction"] == capped_torch["kept_fraction"]
    assert capped_ort["flops_speedup"] == capped_torch["flops_speedup"]
    verdict = bench.ort_tr_verdict(records)
    assert "ONNX Runtime TR fp32 at least as fast as PyTorch TR fp32 for" in verdict
    # the exported models checked against their PyTorch models on every test text
    fp32_check = capped_ort["parity"]
    assert fp32_check["against"] == "tr" and fp32_check["max_abs_logit_diff"] <= 1e-4
    assert fp32_check["kept_lengths_equal"] == 1.0 and fp32_check["decisions_equal"] == 1.0
    int8_check = next(r["parity"] for r in records if r["method"] == "ort_tr_int8")
    assert int8_check["against"] == "tr_int8" and 0.9 <= int8_check["decisions_equal"] <= 1.0
    assert "in ONNX Runtime fp32 against PyTorch: logits within" in verdict and "(target 1e-4 and every text: met)" in verdict
    assert "in ONNX Runtime int8 against PyTorch int8: decisions equal on" in verdict
    assert "parity" not in by[("tr", 32)] and "parity_fp32" not in by[("tr", 32)]
    assert by[("tr_int8", 32)]["parity_fp32"]["against"] == "tr" and "parity" not in by[("tr_int8", 32)]
    assert next(r for r in records if r["method"] == "ort_tr_int8")["parity_fp32"]["against"] == "tr"
    assert "decisions equal to the fp32 model's: ONNX Runtime int8" in verdict
    # Every method alone and in a batch: the same outputs (int8 included: each token on its own scale).
    for r in records:
        check = r["batch_invariance"]
        assert check["texts"] == 3 and check["predictions_equal"] == 1.0
        assert check["max_abs_logit_diff"] <= 1e-5, (r["method"], check)
        plain = r["method"] in ("full", "ort_fp32", "ort_int8", "int8", "truncation", "layers")
        assert ("kept_lengths_equal" in check) != plain  # every model that selects tokens reports its lengths
        assert check.get("kept_lengths_equal", 1.0) == 1.0
    assert "the same prediction and kept lengths for every text" in bench.batch_verdict(records)
    assert by[("ort_fp32", 32)]["flops_speedup"] == 1.0 and by[("int8", 32)]["flops_speedup"] == 1.0
    assert by[("attention_topk", 32)]["kept_fraction"] == pytest.approx([0.5], abs=0.05)
    assert by[("layers", 32)]["flops_speedup"] == pytest.approx(2.0, rel=1e-3)  # 1 of 2 layers
    capped_kept = [r["kept_fraction"][0] for r in records if "max_keep_ratio" in r["setting"]]
    assert capped_kept and all(k <= 0.5 + 0.15 for k in capped_kept)  # the budget, plus [CLS]
    assert all(0.0 <= r["accuracy"] <= 1.0 and r["wall_speedup"] > 0 for r in records)
    png = tmp_path / "front.png"
    bench.plot(records, png, "tiny")
    assert png.stat().st_size > 1000
    assert "| ltp |" in bench.table(records)


def test_int8_exports_of_another_recipe_are_made_again(classifier, tmp_path):
    import json

    import onnx

    from trbert.deployment.onnx import INT8_RECIPE, RECORD_FILE, int8_recipe

    full = bench.onnx_models(classifier, tmp_path / "onnx")
    stale = onnx.load(full["int8"])
    del stale.metadata_props[:]  # as a file quantized before the recipe was recorded
    onnx.save(stale, full["int8"])
    assert int8_recipe(full["int8"]) is None
    assert int8_recipe(bench.onnx_models(classifier, tmp_path / "onnx")["int8"]) == INT8_RECIPE

    tr = tmp_path / "tr"
    trbert.TRBertForSequenceClassification.from_pretrained(classifier).save_pretrained(tr)
    AutoTokenizer.from_pretrained(classifier).save_pretrained(tr)
    exported = bench.onnx_tr_models(tr, tmp_path / "onnx-tr" / "tr")
    record = exported["int8"] / RECORD_FILE
    said = json.loads(record.read_text())
    record.write_text(json.dumps({**said, "int8": {**INT8_RECIPE, "weight_bits": 8}}))
    fp32_written = (exported["fp32"] / "model.onnx").stat().st_mtime_ns
    again = bench.onnx_tr_models(tr, tmp_path / "onnx-tr" / "tr")
    assert json.loads((again["int8"] / RECORD_FILE).read_text())["int8"] == INT8_RECIPE
    assert (again["fp32"] / "model.onnx").stat().st_mtime_ns == fp32_written  # still current: left alone


def test_parity_verdicts_read_the_targets():
    def exported(method, accuracy, **check):
        return {**_record(method, "alpha=2", accuracy, 5.0), "parity": {"against": bench.EXPORTED[method], **check}}

    close = {"max_abs_logit_diff": 3e-5, "kept_lengths_equal": 1.0, "decisions_equal": 1.0}
    records = [exported("ort_tr", 0.97, **close), _record("tr_int8", "alpha=2", 0.965, 9.0),
               exported("ort_tr_int8", 0.97, max_abs_logit_diff=0.2, kept_lengths_equal=0.8, decisions_equal=0.995)]
    fp32_said, int8_said = bench.parity_verdicts(records)
    assert "logits within 3e-05" in fp32_said and fp32_said.endswith("met)") and "not met" not in fp32_said
    assert "99.50% of the tokens" in int8_said and "+0.50 points" in int8_said and "not met" not in int8_said
    records[0]["parity"]["kept_lengths_equal"] = 0.99
    records[2]["parity"]["decisions_equal"] = 0.98
    assert all("not met" in said for said in bench.parity_verdicts(records))


def test_batch_verdict_names_what_depends_on_the_batch():
    def checked(method, diff, predictions=1.0, lengths=None):
        check = {"texts": 48, "max_abs_logit_diff": diff, "predictions_equal": predictions}
        return {**_record(method, "alpha=2", 0.97, 5.0), "batch_invariance":
                check if lengths is None else {**check, "kept_lengths_equal": lengths}}

    records = [checked("full", 2e-6), checked("tr", 3e-6, lengths=1.0), checked("ort_tr_int8", 4e-7, lengths=1.0)]
    said = bench.batch_verdict(records)
    assert said.startswith("each of 48 texts alone against in batches of 32, every method: logits within 3e-06 (tr,")
    assert said.endswith("the same prediction and kept lengths for every text")
    records[2]["batch_invariance"].update(max_abs_logit_diff=1.1, predictions_equal=0.98, kept_lengths_equal=0.75)
    said = bench.batch_verdict(records)
    assert "logits within 1.1 (ort_tr_int8" in said
    assert "changed: ort_tr_int8 (alpha=2): 2.0% of predictions, ort_tr_int8 (alpha=2): kept lengths of 25.0% of the texts" in said
    assert bench.batch_verdict([_record("full", "fp32", 0.97, 1.0)]) == "batch independence not checked"
