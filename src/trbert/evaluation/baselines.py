"""The baselines token reduction is measured against, besides the full model itself.

* `truncation_baseline`: keep only the first k tokens of each text and run the full model.
* `SegmentBaseline`: for long documents, a plain sequence classifier (any BERT-family model of at most
  512 tokens) run on every segment of at most `segment_length` tokens, each with its own [CLS] and
  [SEP], the segments' class probabilities pooled by their maximum (a topic is in the document when
  some segment shows it). It is what TR-BERT's long-input mode is measured against, and the teacher of
  its joint stage. Its output's `logits` are the log-odds of the pooled probabilities, so
  `sigmoid(logits)` gives them back (what multi-label training expects).
"""

import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from ..inputs import check_texts
from . import compare
from .prediction import Predictions, predict_batches
from .statistics import check_labels


def truncation_baseline(
    full_model,
    tokenizer,
    texts: list[str],
    labels,
    keep_tokens: list[int],
    full_predictions: Predictions,
    batch_size: int,
    progress: bool = True,
) -> list[dict]:
    """The rival of token reduction: keep only the first k tokens of each text and run the full model.

    One result per k, against `full_predictions` (the full model at its full length). The kept
    fraction is that of the full-length input's tokens. Not timed: the wall-clock fields are None.
    """
    texts = check_texts(texts, "texts")
    labels = check_labels(labels, len(texts))
    results = []
    for k in keep_tokens:
        truncated = predict_batches(full_model, tokenizer, texts, k, batch_size, progress=progress)
        comparison = compare.comparison(truncated, full_predictions, labels)
        kept = (truncated.lengths.double() / full_predictions.lengths).mean().item()
        results.append({
            "method": "truncation",
            "setting": f"first {k} tokens",
            **comparison,
            "kept_fraction": [round(kept, 4)],
            "wall_speedup": None,
            "latency_ms": None,
            "throughput_per_s": None,
            "n_examples": len(texts),
            "batch_size": batch_size,
            "max_length": k,
        })
    return results


class SegmentBaseline(nn.Module):
    """The full model on each segment of a long document, segment probabilities max-pooled.

    `multi_label`: the wrapped model's classes are independent (sigmoid); otherwise its softmax over
    classes is taken per segment (a single-label classifier read as a topic detector)."""

    def __init__(self, model, cls_token_id: int, sep_token_id: int, pad_token_id: int = 0,
                 segment_length: int = 512, multi_label: bool = False):
        super().__init__()
        self.model = model
        self.cls_token_id, self.sep_token_id, self.pad_token_id = cls_token_id, sep_token_id, pad_token_id
        self.segment_length = segment_length
        self.multi_label = multi_label
        self.config = model.config

    def segments(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """Each document's tokens (without its own [CLS] and final [SEP]) in pieces of at most
        segment_length - 2, each wrapped in [CLS] ... [SEP]; returns the padded segments, their mask and
        the document of each segment."""
        width = self.segment_length - 2
        rows, owner = [], []
        for b in range(input_ids.shape[0]):
            ids = input_ids[b, : int(attention_mask[b].sum())]
            if len(ids) and ids[0] == self.cls_token_id:
                ids = ids[1:]
            if len(ids) and ids[-1] == self.sep_token_id:
                ids = ids[:-1]
            for start in range(0, max(len(ids), 1), width):
                rows.append(torch.cat([ids.new_tensor([self.cls_token_id]), ids[start:start + width],
                                       ids.new_tensor([self.sep_token_id])]))
                owner.append(b)
        longest = max(len(r) for r in rows)
        segment_ids = input_ids.new_full((len(rows), longest), self.pad_token_id)
        segment_mask = torch.zeros_like(segment_ids)
        for i, r in enumerate(rows):
            segment_ids[i, : len(r)] = r
            segment_mask[i, : len(r)] = 1
        return segment_ids, segment_mask, torch.tensor(owner, device=input_ids.device)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, batch_size: int = 32,
                **_) -> SequenceClassifierOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        ids, mask, owner = self.segments(input_ids, attention_mask)
        logits = torch.cat([self.model(input_ids=ids[s:s + batch_size], attention_mask=mask[s:s + batch_size]).logits
                            for s in range(0, len(ids), batch_size)])
        prob = torch.sigmoid(logits.float()) if self.multi_label else torch.softmax(logits.float(), dim=-1)
        pooled = prob.new_zeros(input_ids.shape[0], prob.shape[-1]).scatter_reduce(
            0, owner[:, None].expand_as(prob), prob, reduce="amax", include_self=False)
        pooled = pooled.clamp(1e-6, 1 - 1e-6)
        return SequenceClassifierOutput(logits=torch.log(pooled) - torch.log1p(-pooled))

    def segment_lengths(self, attention_mask: torch.Tensor) -> list[list[int]]:
        """Per document, the token count of each of its segments (for cost accounting)."""
        width = self.segment_length - 2
        out = []
        for n in attention_mask.sum(1).tolist():
            inner = max(n - 2, 1)
            out.append([min(width, inner - s) + 2 for s in range(0, inner, width)])
        return out
