"""Sequence labelling: tags per word from a token-classification model, entity F1 with seqeval.

A word's tag is the prediction at its first sub-token (the token that carries the label in
training, `trbert.tasks.TokenClassification`). Entity F1 is seqeval's micro F1 over entities
(a predicted entity counts only with the right type and the exact span). Its confidence interval
resamples sentences: the counts of true, predicted and gold entities of each sentence are summed
over a resample, so each resample's F1 is exact and cheap.
"""

import torch
import torch.nn.functional as F
from transformers import AutoModelForTokenClassification

from .base import IGNORE, Task, f1_from_counts, soft_cross_entropy


class TokenClassification(Task):
    name = "token-classification"
    auto_class = AutoModelForTokenClassification
    tr_class_name = "TRBertForTokenClassification"
    label_keys = ("labels",)

    def features(self, dataset, tokenizer, max_length):
        def align(batch):
            enc = tokenizer(batch["tokens"], is_split_into_words=True, truncation=True, max_length=max_length)
            labels = []
            for i, tags in enumerate(batch["ner_tags"]):
                previous, row = None, []
                for word in enc.word_ids(i):
                    row.append(IGNORE if word is None or word == previous else tags[word])
                    previous = word
                labels.append(row)
            return {**enc, "labels": labels}

        return dataset.map(align, batched=True, remove_columns=dataset.column_names, desc="tokenizing")

    def losses(self, out, labels):
        tags = labels["labels"]
        per_token = F.cross_entropy(out.logits.transpose(1, 2), tags, ignore_index=IGNORE, reduction="none")
        counted = (tags != IGNORE).sum(1).clamp(min=1)
        return per_token.sum(1) / counted

    def distill(self, out, teacher, attention_mask):
        per_token = soft_cross_entropy(out.logits, teacher.logits)
        mask = attention_mask.to(per_token.dtype)
        return (per_token * mask).sum() / mask.sum().clamp(min=1)


def word_batches(tokenizer, sentences: list[list[str]], max_length: int, batch_size: int) -> list:
    """Tokenized batches of sentences given as words (`is_split_into_words`), in order."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1")
    for i, words in enumerate(sentences):
        if not words or not any(w.strip() for w in words):
            raise ValueError(f"sentence {i} has no words")
    return [tokenizer(sentences[s:s + batch_size], is_split_into_words=True, truncation=True, max_length=max_length,
                      padding=True, return_tensors="pt") for s in range(0, len(sentences), batch_size)]


def word_tags(pred: torch.Tensor, word_ids: list[int | None], tag_names: list[str], n_words: int) -> list[str]:
    """One tag per word from a sentence's predicted tag ids per token [n] and its tokens' word ids: the
    prediction at each word's first sub-token; words cut off by max_length get "O"."""
    words = ["O"] * n_words
    previous = None
    for t, word in enumerate(word_ids):
        if word is not None and word != previous:
            words[word] = tag_names[int(pred[t])]
        previous = word
    return words


def entity_counts(gold: list[list[str]], pred: list[list[str]]) -> torch.Tensor:
    """[N, 3] per sentence: entities right (type and span), predicted, and gold."""
    from seqeval.metrics.sequence_labeling import get_entities  # seqeval loads scikit-learn: only when scoring
    rows = []
    for g, p in zip(gold, pred):
        g_set, p_set = set(get_entities(list(g))), set(get_entities(list(p)))
        rows.append((len(g_set & p_set), len(p_set), len(g_set)))
    return torch.tensor(rows, dtype=torch.float64)


def entity_f1(gold: list[list[str]], pred: list[list[str]]) -> float:
    return float(f1_from_counts(entity_counts(gold, pred).sum(0)))
