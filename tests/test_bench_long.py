"""The long-document benchmark's pipeline on a tiny model (64 positions) and short digests."""

from dataclasses import replace

import torch
from transformers import BertForSequenceClassification

from conftest import tiny_config, tiny_tokenizer
from trbert import bench_long
from trbert.training import StageSettings


def test_long_benchmark_pipeline(tmp_path):
    torch.manual_seed(0)
    full = tmp_path / "full"
    names = ["business", "entertainment", "politics", "sport", "tech"]
    model = BertForSequenceClassification(tiny_config(num_labels=5, id2label=dict(enumerate(names)),
                                                      label2id={n: i for i, n in enumerate(names)}))
    model.save_pretrained(full)
    tiny_tokenizer().save_pretrained(full)
    short = StageSettings(epochs=1, learning_rate=1e-3, batch_size=4, samples=2, save_steps=1000,
                          extra={"disable_tqdm": True})
    preset = replace(bench_long.LongPreset(), lengths=(100, 200), train_length=128, n_train=8, n_test=6,
                     reduction_layers=[1, 2], policy=short, joint=short, head_examples=12, dev_examples=6,
                     timing_examples=4, batch_sizes=(1, 4))
    records = bench_long.run(str(full), str(tmp_path / "long"), preset=preset, progress=False)
    assert [(r["max_length"], r["batch_size"], r["method"]) for r in records] == [
        (n, b, m) for n in (100, 200) for b in (1, 4) for m in ("segment baseline", "truncation", "tr (long input)")]
    for r in records:
        assert 0.0 <= r["score"] <= 1.0 and r["wall_speedup"] > 0 and r["metric"] == "micro_f1"
        assert "(derived)" in r["data"]
    tr = [r for r in records if r["method"] == "tr (long input)"]
    assert all(r["flops_speedup"] > 1.0 and len(r["kept_fraction"]) == 2 for r in tr)
    assert (tmp_path / "long" / "results.json").is_file() and "segment baseline" in bench_long.table(records)
    # The head stage may change only the pooler and classifier of the joint model.
    joint = bench_long.TRBertForSequenceClassification.from_pretrained(tmp_path / "long" / "alpha-0.5" / "joint")
    head = bench_long.TRBertForSequenceClassification.from_pretrained(tmp_path / "long" / "alpha-0.5" / "head")
    for (name, a), b in zip(joint.named_parameters(), head.parameters()):
        if not (name.startswith("classifier") or ".pooler." in name):
            assert torch.equal(a, b), name
