"""Sequence labelling: entity F1, its bootstrap, and the three stages on a tiny synthetic tagging task
("red" starts an entity, the "blue" right after it continues it; everything else is O)."""

import random

import pytest
from builders import FILLER
from datasets import ClassLabel, Dataset, Features, Sequence, Value
from transformers import AutoModelForTokenClassification, BertTokenizerFast

import trbert
from trbert import evaluation, training
from trbert.tasks import token_classification as tagging

TAGS = ["O", "B-X", "I-X"]


def synthetic_tags(n, seed, length=16):
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = [rng.choice(FILLER) for _ in range(length)]
        tags = [0] * length
        for p in rng.sample(range(0, length - 1, 2), 2):
            words[p:p + 2], tags[p:p + 2] = ["red", "blue"], [1, 2]
        rows.append({"tokens": words, "ner_tags": tags})
    features = Features({"tokens": Sequence(Value("string")), "ner_tags": Sequence(ClassLabel(names=TAGS))})
    return Dataset.from_list(rows, features=features)


def test_entity_f1_counts_type_and_span():
    gold = [["B-X", "I-X", "O", "B-Y"], ["O", "B-X"]]
    pred = [["B-X", "O", "O", "B-Y"], ["O", "B-X"]]  # one span cut short: 2 of 3 right
    assert tagging.entity_f1(gold, pred) == pytest.approx(2 * 2 / (3 + 3))
    assert tagging.entity_counts(gold, pred).tolist() == [[1, 2, 2], [1, 1, 1]]
    boot = evaluation.paired_bootstrap(tagging.entity_counts(gold, pred), tagging.entity_counts(gold, gold),
                                       n_resamples=200, statistic=evaluation.micro_f1_statistic)
    diff, low, high = boot.diff, boot.low, boot.high
    assert diff == pytest.approx(2 / 3 - 1) and low <= diff <= high <= 0


def test_tagging_stages_label_and_reduce(backbone, tmp_path):
    train = synthetic_tags(300, seed=1)
    quiet = {"disable_tqdm": True}
    training.finetune(backbone, train, tmp_path / "finetune", training.StageSettings(
        epochs=8, learning_rate=3e-3, batch_size=32, max_length=32, save_steps=1000, extra=quiet),
        label_names=TAGS, task="token-classification")
    training.train_policy(str(tmp_path / "finetune"), train, tmp_path / "policy", training.StageSettings(
        epochs=3, learning_rate=1e-2, batch_size=32, max_length=32, samples=8, alpha=0.5, save_steps=1000,
        extra=quiet), task="token-classification", reduction_layers=[1])
    training.train_joint(str(tmp_path / "policy"), str(tmp_path / "finetune"), train, tmp_path / "joint",
                         training.StageSettings(epochs=1, learning_rate=1e-4, batch_size=32, max_length=32, samples=2,
                                                alpha=0.5, save_steps=1000, extra=quiet), task="token-classification")
    tok = BertTokenizerFast.from_pretrained(tmp_path / "finetune")
    full = AutoModelForTokenClassification.from_pretrained(tmp_path / "finetune")
    test = synthetic_tags(80, seed=5)
    for stage in ("policy", "joint"):
        model = AutoModelForTokenClassification.from_pretrained(tmp_path / stage)
        assert isinstance(model, trbert.TRBertForTokenClassification) and model.config.id2label[1] == "B-X"
        r = evaluation.evaluate_tagger(model, full, tok, test, max_length=32, batch_size=16, timing_repeats=0,
                                    progress=False)
        assert r["full_f1"] >= 0.95, r["full_f1"]
        assert r["f1"] >= r["full_f1"] - 0.05 and r["ci_low"] <= r["f1_diff"] <= r["ci_high"], (stage, r["f1"])
        assert r["kept_fraction"][0] < 0.8 and r["flops_speedup"] > 1.1, (stage, r["kept_fraction"])
        # Every word is labelled, skipped ones included (restore): the tags line up with the words.
        assert [len(t) for t in r["tags"]] == [len(w) for w in test["tokens"]]


def test_early_exit_stages_label_and_save_work(backbone, tmp_path):
    train = synthetic_tags(300, seed=1)
    quiet = {"disable_tqdm": True}
    settings = dict(batch_size=32, max_length=32, save_steps=1000, extra=quiet)
    training.finetune(backbone, train, tmp_path / "finetune", training.StageSettings(
        epochs=8, learning_rate=3e-3, **settings), label_names=TAGS, task="token-classification")
    training.train_exits(str(tmp_path / "finetune"), train, tmp_path / "exits",
                         training.StageSettings(epochs=6, learning_rate=1e-2, **settings))
    training.train_exits(str(tmp_path / "exits"), train, tmp_path / "self-sampling",
                         training.StageSettings(epochs=2, learning_rate=5e-4, **settings), self_sampling=True)
    tok = BertTokenizerFast.from_pretrained(tmp_path / "finetune")
    full = AutoModelForTokenClassification.from_pretrained(tmp_path / "finetune")
    test = synthetic_tags(80, seed=5)
    for stage in ("exits", "self-sampling"):
        for as_keys in (False, True):
            model = trbert.TRBertForTokenClassification.from_pretrained(
                tmp_path / stage, exit_threshold=0.2, exit_window=1, skipped_as_keys=as_keys)
            assert model.config.selection == "early_exit" and model.config.reduction_layers == [1]
            r = evaluation.evaluate_tagger(model, full, tok, test, max_length=32, batch_size=16, timing_repeats=0,
                                        progress=False)
            assert r["f1"] >= r["full_f1"] - 0.05, (stage, as_keys, r["f1"], r["full_f1"])
            assert r["kept_fraction"][0] < 0.9 and r["flops_speedup"] > 1.05, (stage, as_keys, r["kept_fraction"])
