"""Evaluation of sequence classifiers, on tiny random models and a tiny tokenizer."""

import json
import re

import pytest
import torch
from builders import TINY, WORDS, spread_policy, tiny_config, tiny_tokenizer
from transformers import BertConfig, BertForSequenceClassification

import trbert
from trbert import evaluation
from trbert.benchmarks.report import plot_tradeoff
from trbert.cost import layer_macs
from trbert.evaluation import (
    Predictions,
    evaluate_classifier,
    mean_reward,
    paired_bootstrap,
    predict_batches,
    results_record,
    truncation_baseline,
    wall_speedup,
    write_results_json,
)
from trbert.tasks.classification import accuracy

MAX_LENGTH = TINY["max_position_embeddings"]


@pytest.fixture
def tokenizer():
    tok = tiny_tokenizer()
    assert tok("w0 w1")["input_ids"] == [2, 5, 6, 3]  # words are words, not [UNK]
    return tok


def make_texts(word_counts, seed=0) -> list[str]:
    gen = torch.Generator().manual_seed(seed)
    return [" ".join(WORDS[i] for i in torch.randint(len(WORDS), (n,), generator=gen).tolist()) for n in word_counts]


def make_labels(n, num_labels=3, seed=1) -> torch.Tensor:
    return torch.randint(num_labels, (n,), generator=torch.Generator().manual_seed(seed))


def tr_classifier(**overrides):
    return spread_policy(trbert.TRBertForSequenceClassification(tiny_config(num_labels=3, **overrides)).eval())


def plain_twin(tr_model):
    """The plain transformers classifier with the TR model's weights (everything but the policies)."""
    plain = BertForSequenceClassification(BertConfig(**TINY, num_labels=tr_model.config.num_labels)).eval()
    missing, unexpected = plain.load_state_dict(tr_model.state_dict(), strict=False)
    assert not missing and all(".policy." in k for k in unexpected)
    return plain


TEXTS = make_texts([3, 40, 12, 25, 7, 70, 18, 33, 5])  # one text beyond MAX_LENGTH: truncated


# ---------------------------------------------------------------------------- statistics
def test_accuracy():
    assert accuracy(torch.tensor([0, 1, 2, 1]), [0, 1, 1, 1]) == 0.75
    with pytest.raises(ValueError):
        accuracy(torch.tensor([0, 1]), [0, 1, 1])


def test_mean_reward_is_the_policy_stage_reward_with_the_kept_tokens_of_inference():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    kept = torch.tensor([[5, 2], [10, 4]])  # two reduction steps; lengths 10 and 20: kept 0.5, 0.2 and 0.5, 0.2
    pred = Predictions(logits, logits.argmax(-1), torch.tensor([10, 20]), kept, torch.ones(2, dtype=torch.float64), 0.0)
    labels = [0, 0]  # the second example is wrong
    loss = (torch.log1p(torch.exp(torch.tensor(-2.0))) + torch.log1p(torch.exp(torch.tensor(1.0)))).item() / 2
    result = mean_reward(pred, labels, alpha=2.0)
    assert result["loss"] == pytest.approx(loss)
    assert result["kept"] == pytest.approx(0.35)
    assert result["reward"] == pytest.approx(-loss - 2.0 * 0.35)
    assert result["accuracy"] == 0.5
    plain = Predictions(logits, logits.argmax(-1), torch.tensor([10, 20]), None, torch.ones(2, dtype=torch.float64), 0.0)
    assert mean_reward(plain, labels, alpha=2.0)["reward"] == pytest.approx(-loss - 2.0)  # everything kept
    with pytest.raises(ValueError, match="one label per text"):
        mean_reward(pred, [0], alpha=1.0)


def test_paired_bootstrap_of_identical_systems_is_zero():
    correct = torch.rand(100, generator=torch.Generator().manual_seed(0)) < 0.7
    result = paired_bootstrap(correct, correct.clone())
    assert (result.diff, result.low, result.high) == (0.0, 0.0, 0.0)


def test_paired_bootstrap_of_a_system_better_on_ten_examples():
    b = torch.zeros(100, dtype=torch.bool)
    b[:70] = True
    a = b.clone()
    a[70:80] = True  # a is right on 10 more examples, wrong on none that b gets right
    result = paired_bootstrap(a, b)
    assert result.diff == pytest.approx(0.10)
    assert 0.0 < result.low < 0.10 < result.high
    reverse = paired_bootstrap(b, a)
    assert reverse.diff == pytest.approx(-0.10) and reverse.high < 0.0
    # Deterministic for a seed; another seed draws other resamples (seen with few of them).
    assert paired_bootstrap(a, b, seed=0) == result
    few = paired_bootstrap(a, b, n_resamples=20, seed=0)
    assert paired_bootstrap(a, b, n_resamples=20, seed=0) == few != paired_bootstrap(a, b, n_resamples=20, seed=1)
    # A wider confidence level gives a wider interval.
    wide = paired_bootstrap(a, b, confidence=0.99)
    assert wide.low <= result.low and wide.high >= result.high


def test_paired_bootstrap_draws_in_chunks_as_asked(monkeypatch):
    b = torch.arange(50) % 3 == 0
    a = torch.arange(50) % 2 == 0
    monkeypatch.setattr(evaluation, "_BOOTSTRAP_CHUNK", 50 * 7)  # 7 resamples at a time
    result = paired_bootstrap(a, b, n_resamples=100)
    assert result.diff == pytest.approx(a.double().mean() - b.double().mean())
    assert result.low <= result.diff <= result.high


def test_paired_bootstrap_rejects_bad_input():
    with pytest.raises(ValueError):
        paired_bootstrap(torch.ones(5, dtype=torch.bool), torch.ones(6, dtype=torch.bool))
    with pytest.raises(ValueError):
        paired_bootstrap(torch.ones(5, dtype=torch.bool), torch.ones(5, dtype=torch.bool), confidence=1.0)


def test_wall_speedup_interleaves_after_one_warm_up_each():
    calls = []
    full, tr, ratio = wall_speedup(lambda: calls.append("full"), lambda: calls.append("tr"), repeats=3)
    assert calls == ["full", "tr"] * 4
    assert full > 0 and tr > 0 and ratio == pytest.approx(full / tr)
    with pytest.raises(ValueError):
        wall_speedup(lambda: None, lambda: None, repeats=0)


# ---------------------------------------------------------------------------- predictions
def test_predictions_do_not_depend_on_the_batch_size(tokenizer):
    model = tr_classifier()
    one = predict_batches(model, tokenizer, TEXTS, MAX_LENGTH, batch_size=1, progress=False)
    four = predict_batches(model, tokenizer, TEXTS, MAX_LENGTH, batch_size=4, progress=False)
    assert one.logits.shape == (len(TEXTS), 3) and one.pred.dtype == torch.long
    assert torch.equal(one.pred, four.pred) and torch.equal(one.lengths, four.lengths)
    assert torch.equal(one.kept_lengths, four.kept_lengths)
    torch.testing.assert_close(one.logits, four.logits, atol=1e-5, rtol=0)
    assert torch.equal(one.macs, four.macs)
    assert one.lengths.tolist()[:2] == [5, 42] and one.lengths.max() == MAX_LENGTH
    assert (one.kept_lengths[:, -1] < one.lengths).any()  # the policy really reduces
    assert one.seconds > 0


def test_macs_are_those_of_the_cost_accounting(tokenizer):
    model = tr_classifier()
    p = predict_batches(model, tokenizer, TEXTS, MAX_LENGTH, batch_size=4, progress=False)
    expected = trbert.reduction_cost(model.config, p.lengths, p.kept_lengths, policy=True)
    assert torch.equal(p.macs, expected.macs)

    model.set_strategy(trbert.FixedFractionStrategy([0.5, 0.25]))  # bypasses the policies: not counted
    p = predict_batches(model, tokenizer, TEXTS, MAX_LENGTH, batch_size=4, progress=False)
    assert torch.equal(p.macs, trbert.reduction_cost(model.config, p.lengths, p.kept_lengths, policy=False).macs)

    plain = plain_twin(model)
    p = predict_batches(plain, tokenizer, TEXTS, MAX_LENGTH, batch_size=4, progress=False)
    assert p.kept_lengths is None
    assert torch.equal(p.macs, TINY["num_hidden_layers"] * layer_macs(plain.config, p.lengths))


def test_predicting_restores_the_training_mode(tokenizer):
    model = tr_classifier().train()
    predict_batches(model, tokenizer, TEXTS[:3], MAX_LENGTH, batch_size=2, progress=False)
    assert model.training


def test_predicting_reports_a_bad_text_by_its_index(tokenizer):
    with pytest.raises(ValueError, match=r"texts\[5\]"):
        predict_batches(tr_classifier(), tokenizer, [*TEXTS[:5], "  "], MAX_LENGTH, batch_size=2, progress=False)


# ---------------------------------------------------------------------------- evaluations
def test_keep_everything_matches_the_plain_model(tokenizer):
    model = tr_classifier(keep_threshold=0.0)
    plain = plain_twin(model)
    labels = make_labels(len(TEXTS))
    result = evaluate_classifier(model, plain, tokenizer, TEXTS, labels, MAX_LENGTH, batch_size=4, progress=False)
    assert result["accuracy"] == result["full_accuracy"] == accuracy(
        predict_batches(plain, tokenizer, TEXTS, MAX_LENGTH, 4, progress=False).pred, labels
    )
    assert (result["accuracy_diff"], result["ci_low"], result["ci_high"]) == (0.0, 0.0, 0.0)
    assert result["kept_fraction"] == [1.0, 1.0]
    assert 0.9 < result["flops_speedup"] < 1.0  # the policies run on top of every layer
    assert result["wall_speedup"] > 0 and result["latency_ms"] > 0 and result["throughput_per_s"] > 0
    assert (result["n_examples"], result["batch_size"], result["max_length"]) == (len(TEXTS), 4, MAX_LENGTH)


def test_a_reducing_model_against_itself_and_shared_full_predictions(tokenizer):
    model = tr_classifier()
    labels = make_labels(len(TEXTS))
    full = predict_batches(model, tokenizer, TEXTS, MAX_LENGTH, 4, progress=False)
    result = evaluate_classifier(model, model, tokenizer, TEXTS, labels, MAX_LENGTH, 4, timing_repeats=0,
                                 progress=False, full_predictions=full)
    assert result["accuracy_diff"] == 0.0 and result["flops_speedup"] == 1.0
    assert all(0 < f < 1 for f in result["kept_fraction"])
    assert result["wall_speedup"] is None and result["latency_ms"] is None


def test_truncation_baseline_is_cheaper_than_the_full_model(tokenizer):
    plain = plain_twin(tr_classifier())
    texts = make_texts([30, 45, 50, 38, 60])
    labels = make_labels(len(texts))
    full = predict_batches(plain, tokenizer, texts, MAX_LENGTH, 2, progress=False)
    results = truncation_baseline(plain, tokenizer, texts, labels, [8, 16, MAX_LENGTH], full, batch_size=2,
                                  progress=False)
    assert [r["max_length"] for r in results] == [8, 16, MAX_LENGTH]
    assert all(r["method"] == "truncation" and r["n_examples"] == len(texts) for r in results)
    eight, sixteen, whole = results
    assert eight["flops_speedup"] > sixteen["flops_speedup"] > 1.0
    assert eight["kept_fraction"][0] < sixteen["kept_fraction"][0] < 1.0
    assert whole["flops_speedup"] == 1.0 and whole["accuracy_diff"] == 0.0 and whole["kept_fraction"] == [1.0]
    assert eight["ci_low"] <= eight["accuracy_diff"] <= eight["ci_high"]
    assert eight["full_accuracy"] == accuracy(full.pred, labels)


# ---------------------------------------------------------------------------- outputs
RECORDS = [
    {"method": "tr", "setting": "alpha 0.5", "accuracy": 0.90, "full_accuracy": 0.91, "accuracy_diff": -0.01,
     "ci_low": -0.03, "ci_high": 0.01, "flops_speedup": 1.8, "wall_speedup": 1.5},
    {"method": "tr", "setting": "alpha 1", "accuracy": 0.88, "full_accuracy": 0.91, "accuracy_diff": -0.03,
     "ci_low": -0.05, "ci_high": -0.01, "flops_speedup": 2.6, "wall_speedup": 2.0},
    {"method": "truncation", "setting": "first 64 tokens", "accuracy": 0.80, "full_accuracy": 0.91,
     "accuracy_diff": -0.11, "ci_low": -0.14, "ci_high": -0.08, "flops_speedup": 2.0, "wall_speedup": None},
]


@pytest.mark.parametrize("x", ["flops_speedup", "wall_speedup"])
def test_plot_tradeoff_writes_a_png(tmp_path, x):
    pytest.importorskip("matplotlib")
    path = tmp_path / "plots" / "tradeoff.png"
    plot_tradeoff(RECORDS, path, "tiny", x=x)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 1000
    assert [p.name for p in path.parent.iterdir()] == ["tradeoff.png"]  # no temporary file left
    with pytest.raises(ValueError):
        plot_tradeoff(RECORDS, path, "tiny", x="latency_ms")


def test_write_results_json(tmp_path):
    records = [results_record(r, model="tiny", data="texts", split="test", n_examples=100) for r in RECORDS]
    path = tmp_path / "results" / "tiny.json"
    written = write_results_json(path, "tiny_benchmark", "trbert eval --tiny", records)
    report = json.loads(path.read_text())
    assert report == written
    assert list(report) == ["benchmark", "command", "date", "machine", "versions", "records"]
    assert report["benchmark"] == "tiny_benchmark" and report["command"] == "trbert eval --tiny"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", report["date"])
    assert isinstance(report["machine"]["cpu"], str) and report["machine"]["threads"] == torch.get_num_threads()
    assert report["machine"]["gpu"] is None
    assert set(report["versions"]) == {"trbert", "torch", "transformers"}
    assert report["versions"]["trbert"] == trbert.__version__
    first = report["records"][0]
    assert set(first) >= set(evaluation.RECORD_FIELDS)
    assert first["metric"] == "accuracy" and first["score"] == 0.90 and first["method"] == "tr"
    assert first["peak_mem_mb"] is None and first["model"] == "tiny"
    assert [p.name for p in path.parent.iterdir()] == ["tiny.json"]

    with pytest.raises(ValueError, match="lacks"):
        write_results_json(path, "b", "c", [{"method": "tr"}])
    with pytest.raises(ValueError, match="score"):
        write_results_json(path, "b", "c", [{**records[0], "score": 90.0}])



def test_spread_samples_every_part_of_an_ordered_split():
    from trbert.evaluation import spread

    assert spread(10, 4) == [0, 2, 5, 7]
    assert spread(3, 5) == [0, 1, 2]
    picked = spread(668, 96)
    assert len(set(picked)) == 96 and picked == sorted(picked) and picked[-1] >= 660
