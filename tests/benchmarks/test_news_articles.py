"""The fairness check of the outlet task on a tiny long-document task whose class marker lies past the
model's 64 positions: truncation cannot see it, the segments can, and the verdict says so."""

import random

from builders import FILLER, LABELS, MARKERS, synthetic
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from trbert import training
from trbert.benchmarks import news_articles


def late_marker(n, seed, length=110):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = [rng.choice(FILLER) for _ in range(length)]
        label = rng.randrange(3)
        if label < 2:
            words[rng.randrange(70, length)] = MARKERS[label]
        rows.append({"text": " ".join(words), "label": label, "id": str(i)})
    features = Features({"text": Value("string"), "label": ClassLabel(names=LABELS), "id": Value("string")})
    return Dataset.from_list(rows, features=features)


def test_the_check_finds_a_task_that_truncation_cannot_read(backbone, tmp_path, monkeypatch, capsys):
    # trained on short texts, tested on long ones with the marker late: only the segments reach it
    train = synthetic(600, seed=1).cast_column("label", ClassLabel(names=LABELS))
    splits = DatasetDict({"train": train, "validation": late_marker(10, seed=2), "test": late_marker(90, seed=3)})
    monkeypatch.setattr(news_articles, "load_news_articles", lambda seed=0: splits)
    monkeypatch.setattr(news_articles, "default_backbone", lambda: backbone)
    preset = news_articles.CheckPreset(
        finetune=training.StageSettings(epochs=8, learning_rate=2e-3, batch_size=32, max_length=64, save_steps=1000),
        truncation=(16, 64), read_length=128, batch_size=16)
    records = news_articles.run(str(tmp_path), report=False, progress=False, preset=preset)
    out = capsys.readouterr().out
    segments, short, cut = records
    assert segments["method"] == "segment baseline" and segments["score"] >= 0.9
    assert [r["max_length"] for r in records] == [128, 16, 64]
    assert cut["score"] < 0.6 and cut["ci_high"] < 0
    assert (tmp_path / "news_articles_check.json").is_file()
    assert "A fair long-document task: truncation to 64 tokens scores" in out
    assert "64-token segments over the first 128 tokens" in out


def test_the_verdict_refuses_a_set_where_the_start_suffices():
    segments = {"method": "segment baseline", "score": 0.90}
    cut = {"method": "truncation", "max_length": 512, "score": 0.895, "accuracy_diff": -0.005, "ci_low": -0.012,
           "ci_high": 0.002}
    line = news_articles.verdict([segments, cut], 1.0)
    assert line.startswith("Not a fair long-document task: truncation to 512 tokens scores 89.50% against the "
                           "segments' 90.00% (-0.50 points, 95% interval [-1.20, +0.20])")
