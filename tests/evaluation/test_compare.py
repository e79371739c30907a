"""A classifier against the full model: the comparison, its cost and speed fields, on tiny random models."""


from builders import (
    MAX_LENGTH,
    TEXTS,
    plain_twin,
    random_labels,
    tr_classifier,
)

from trbert.evaluation import (
    evaluate_classifier,
    predict_batches,
)
from trbert.tasks.classification import accuracy


# ---------------------------------------------------------------------------- evaluations
def test_keep_everything_matches_the_plain_model(tokenizer):
    model = tr_classifier(keep_threshold=0.0)
    plain = plain_twin(model)
    labels = random_labels(len(TEXTS))
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
    labels = random_labels(len(TEXTS))
    full = predict_batches(model, tokenizer, TEXTS, MAX_LENGTH, 4, progress=False)
    result = evaluate_classifier(model, model, tokenizer, TEXTS, labels, MAX_LENGTH, 4, timing_repeats=0,
                                 progress=False, full_predictions=full)
    assert result["accuracy_diff"] == 0.0 and result["flops_speedup"] == 1.0
    assert all(0 < f < 1 for f in result["kept_fraction"])
    assert result["wall_speedup"] is None and result["latency_ms"] is None
