"""The segment baseline for long documents and multi-label scoring."""

import torch
from builders import CLS, SEP, tiny_batch, tiny_config
from transformers import BertForSequenceClassification

from trbert.evaluation import SegmentBaseline
from trbert.tasks.classification import micro_f1, multi_hot


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
