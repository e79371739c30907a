"""Learned Token Pruning: thresholds learned on a soft relaxation trade tokens for loss, then apply as a hard rule."""

import math

import torch
from builders import tiny_batch, tiny_config
from datasets import Dataset

import trbert
from trbert.strategies import ltp


def test_learn_thresholds_trades_tokens_for_loss(tmp_path):
    config = tiny_config(num_labels=3, num_hidden_layers=3, reduction_layers=[1, 2])
    model = trbert.TRBertForSequenceClassification(config).eval()
    batches = []
    for seed in range(2):
        ids, mask = tiny_batch([20, 9, 31, 14], seed=seed)
        with torch.no_grad():  # the full model's own predictions: removing tokens can only raise the loss
            labels = model(input_ids=ids, attention_mask=mask, keep_actions=[mask.bool()] * 2).logits.argmax(-1)
        batches.append({"input_ids": ids, "attention_mask": mask, "labels": labels})
    with torch.no_grad():  # thresholds 0 and a sharp sigmoid: the soft forward is the full model
        logits, kept = ltp.soft_forward(model, batches[0], torch.zeros(2), temperature=1e-9)
        full = model(input_ids=batches[0]["input_ids"], attention_mask=batches[0]["attention_mask"],
                     keep_actions=[batches[0]["attention_mask"].bool()] * 2).logits
    torch.testing.assert_close(logits, full, atol=1e-5, rtol=0)
    assert torch.equal(kept, torch.ones(4, 2))
    kw = dict(steps=12, temperature=0.01, lr=0.1, init=0.03, progress=False)
    history, costly_history = [], []
    free = ltp.learn_thresholds(model, batches, lambda_=0.0, history=history, **kw)
    costly = ltp.learn_thresholds(model, batches, lambda_=5.0, history=costly_history, **kw)
    assert len(history) == 12 and all(math.isfinite(h["loss"]) for h in history + costly_history)
    assert all(c > f for c, f in zip(costly, free)), (costly, free)
    assert costly_history[-1]["kept"] < history[-1]["kept"]
    assert ltp.learn_thresholds(model, batches, lambda_=5.0, **kw) == costly  # deterministic
    assert not model.training and all(p.requires_grad for p in model.parameters())  # left as it was

    kept = {}
    for name, thresholds in (("free", free), ("costly", costly)):
        ltp.apply_thresholds(model, thresholds)
        with torch.no_grad():
            kept[name] = model(**{k: v for k, v in batches[0].items() if k != "labels"}).kept_fraction[:, -1].mean()
    assert kept["costly"] <= kept["free"] < 1
    model.save_pretrained(tmp_path)
    loaded = trbert.TRBertForSequenceClassification.from_pretrained(tmp_path)
    assert loaded.config.selection == "attention_threshold" and loaded.config.score_thresholds == costly

    # A tokenized datasets.Dataset works too (shuffled, padded batches).
    rows = [batches[0]["input_ids"][b, : int(batches[0]["attention_mask"][b].sum())].tolist() for b in range(4)]
    data = Dataset.from_dict({"input_ids": rows, "attention_mask": [[1] * len(r) for r in rows], "label": [0, 1, 2, 0]})
    history = []
    ltp.learn_thresholds(model, data, steps=3, batch_size=2, history=history, progress=False)
    assert all(math.isfinite(h["loss"]) for h in history)
