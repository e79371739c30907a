"""The long-document benchmark's pipeline on a tiny model (64 positions) and short digests."""

from dataclasses import replace

import torch
from builders import tiny_config, tiny_tokenizer
from transformers import BertForSequenceClassification

from trbert import TRBertForSequenceClassification
from trbert.benchmarks import long_documents as bench_long
from trbert.training import StageSettings


def test_long_benchmark_pipeline(tmp_path):
    torch.manual_seed(0)
    full = tmp_path / "full"
    names = ["business", "entertainment", "politics", "sport", "tech"]
    model = BertForSequenceClassification(tiny_config(num_labels=5, id2label=dict(enumerate(names)),
                                                      label2id={n: i for i, n in enumerate(names)}))
    model.save_pretrained(full)
    tiny_tokenizer().save_pretrained(full)
    # The article model: a TR model with a step on the embeddings, as `trbert run --preset full` makes one.
    article = tmp_path / "layers-0-2" / "alpha-1" / "joint"
    TRBertForSequenceClassification(tiny_config(num_labels=5, reduction_layers=[0, 2], max_keep_ratio=0.5)).save_pretrained(article)
    tiny_tokenizer().save_pretrained(article)
    short = StageSettings(epochs=1, learning_rate=1e-3, batch_size=4, samples=2, save_steps=1000,
                          extra={"disable_tqdm": True})
    preset = replace(bench_long.LongPreset(), lengths=(100, 200), train_length=128, n_train=8, n_test=6,
                     digest_recipes=(bench_long.DigestRecipe((1, 2), 0.5),
                                     bench_long.DigestRecipe((0, 2), 1.0, freeze_policies=True)),
                     policy=short, joint=short, head_examples=12, dev_examples=6, head_lengths=(100, 200), timing_repeats=1,
                     timing_examples=4, batch_sizes=(1, 4), article_model="layers-0-2/alpha-1/joint")
    records = bench_long.run(str(full), str(tmp_path / "long"), preset=preset, progress=False)
    tr_settings = ["article model, steps 0,2, alpha=1", "digest-trained, steps 1,2, alpha=0.5",
                   "digest-trained, steps 0,2, alpha=1, policies frozen in the joint stage"]
    assert [(r["max_length"], r["batch_size"], r["method"], r["setting"]) for r in records] == [
        (n, b, m, s) for n in (100, 200) for b in (1, 4)
        for m, s in [("segment baseline", "64-token segments, max-pooled"), ("truncation", "first 64 tokens"),
                     *[("tr (long input)", s) for s in tr_settings]]]
    for r in records:
        assert 0.0 <= r["score"] <= 1.0 and r["wall_speedup"] > 0 and r["metric"] == "micro_f1"
        assert "(derived)" in r["data"]
    tr = [r for r in records if r["method"] == "tr (long input)"]
    assert all(r["flops_speedup"] > 1.0 and len(r["kept_fraction"]) == 2 for r in tr)
    assert (tmp_path / "long" / "long_digests.json").is_file() and (tmp_path / "long" / "long_digests.png").is_file()
    assert "segment baseline" in bench_long.table(records)
    assert all(r["wall_speedup"] == 1.0 for r in records if r["method"] == "segment baseline")
    # The article model: long input switched on, layers and policies unchanged, only the head re-tuned.
    source = TRBertForSequenceClassification.from_pretrained(article)
    adapted = TRBertForSequenceClassification.from_pretrained(tmp_path / "long" / "articles" / "head")
    assert adapted.config.long_input and adapted.config.problem_type == "multi_label_classification"
    changed = [name for (name, a), b in zip(source.named_parameters(), adapted.parameters()) if not torch.equal(a, b)]
    assert all(name.startswith("classifier") or ".pooler." in name for name in changed)
    # The head stage may change only the pooler and classifier of the joint model.
    for recipe in ("layers-1-2/alpha-0.5", "layers-0-2/alpha-1"):
        joint = TRBertForSequenceClassification.from_pretrained(tmp_path / "long" / recipe / "joint")
        head = TRBertForSequenceClassification.from_pretrained(tmp_path / "long" / recipe / "head")
        for (name, a), b in zip(joint.named_parameters(), head.parameters()):
            if not (name.startswith("classifier") or ".pooler." in name):
                assert torch.equal(a, b), name
    # With the policies frozen, the joint stage leaves them as stage 2 made them.
    policy = TRBertForSequenceClassification.from_pretrained(tmp_path / "long" / "layers-0-2/alpha-1" / "policy")
    joint = TRBertForSequenceClassification.from_pretrained(tmp_path / "long" / "layers-0-2/alpha-1" / "joint")
    assert joint.config.reduction_layers == [0, 2] and joint.config.long_input
    assert all(torch.equal(a, b) for (name, a), b in zip(policy.named_parameters(), joint.parameters())
               if ".policy." in name)
