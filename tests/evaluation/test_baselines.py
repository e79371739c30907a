"""The baselines: the segment baseline for long documents, and truncation."""

import torch
from builders import (
    CLS,
    MAX_LENGTH,
    SEP,
    plain_twin,
    random_labels,
    tiny_batch,
    tiny_config,
    tr_classifier,
    word_texts,
)
from transformers import BertForSequenceClassification

from trbert.evaluation import (
    SegmentBaseline,
    predict_batches,
    truncation_baseline,
)
from trbert.tasks.classification import accuracy, micro_f1, multi_hot


def test_segment_baseline_runs_each_segment_alone_and_max_pools():
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_config(num_labels=3)).eval()
    baseline = SegmentBaseline(model, CLS, SEP, segment_length=20)
    ids, mask = tiny_batch([50, 12])
    seg_ids, seg_mask, owner = baseline.segments(ids, mask)
    assert owner.tolist() == [0, 0, 0, 1]  # 48 inner tokens in pieces of 18: 3 segments; 10 fit one
    assert seg_mask.sum(1).tolist() == [20, 20, 14, 12] == sum(baseline.segment_lengths(mask), [])
    assert (seg_ids[:, 0] == CLS).all() and seg_ids[0, 19] == SEP and seg_ids[2, 13] == SEP
    assert seg_ids[1, 1:19].tolist() == ids[0, 19:37].tolist()  # the second piece: inner tokens 18..35
    with torch.no_grad():
        out = baseline(input_ids=ids, attention_mask=mask)
        alone = [torch.softmax(model(input_ids=seg_ids[i:i + 1, : int(seg_mask[i].sum())]).logits, -1)[0]
                 for i in range(4)]
    expected = torch.stack([torch.stack(alone[:3]).max(0).values, alone[3]])
    torch.testing.assert_close(torch.sigmoid(out.logits), expected, atol=1e-5, rtol=1e-4)


def test_micro_f1():
    gold = multi_hot([[0, 1], [2], []], 3)
    pred = multi_hot([[0], [2, 1], [1]], 3)
    assert micro_f1(pred, gold) == 2 * 2 / (4 + 3)
    assert micro_f1(gold, gold) == 1.0


def test_truncation_baseline_is_cheaper_than_the_full_model(tokenizer):
    plain = plain_twin(tr_classifier())
    texts = word_texts([30, 45, 50, 38, 60])
    labels = random_labels(len(texts))
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
