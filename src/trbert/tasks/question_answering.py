"""Extractive question answering: windows over long contexts, answers back as text, SQuAD scores.

* `prepare_features`: question + context pairs -> windows of at most `max_length` tokens that overlap
  by `stride` tokens, each knowing its question and where its context tokens lie in the context
  text; with answers, the start and end token of the answer in each window ([CLS], index 0, when the
  window does not hold the whole answer, or for an unanswerable question).
* `window_spans` / `best_answers`: the best spans over all windows of a question, mapped back to
  characters; with `allow_null` (SQuAD 2.0) the empty answer wins when [CLS] scores higher.
* `squad_scores`: exact match and F1 as the official SQuAD script defines them, computed locally.
* `QuestionAnswering`: the task of the training stages (task loss: the mean of the start and end
  cross-entropies).
"""

import collections
import re
import string
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import AutoModelForQuestionAnswering

from ..errors import DataError
from .base import Task, soft_cross_entropy


class QuestionAnswering(Task):
    name = "question-answering"
    auto_class = AutoModelForQuestionAnswering
    tr_class_name = "TRBertForQuestionAnswering"
    label_keys = ("start_positions", "end_positions")

    def __init__(self, stride: int = 128):
        self.stride = stride

    def features(self, dataset, tokenizer, max_length):
        def windows(batch):
            answers = [dict(a) for a in batch["answers"]]
            f = prepare_features(tokenizer, batch["question"], batch["context"], max_length,
                                 min(self.stride, max_length // 2 - 1), answers=answers, ids=batch["id"])
            f.pop("offsets")
            f.pop("example")
            return f

        return dataset.map(windows, batched=True, remove_columns=dataset.column_names, desc="windows")

    def losses(self, out, labels):
        start = F.cross_entropy(out.start_logits, labels["start_positions"], reduction="none")
        end = F.cross_entropy(out.end_logits, labels["end_positions"], reduction="none")
        return (start + end) / 2

    def distill(self, out, teacher, attention_mask):
        pad = attention_mask == 0
        total = 0.0
        for s, t in ((out.start_logits, teacher.start_logits), (out.end_logits, teacher.end_logits)):
            total = total + soft_cross_entropy(s.masked_fill(pad, -1e4), t.masked_fill(pad, -1e4)).mean()
        return total / 2


def prepare_features(tokenizer, questions: list[str], contexts: list[str], max_length: int, stride: int = 128,
                     answers: list[dict] | None = None, ids: list[str] | None = None) -> dict[str, list]:
    """Windows of the question/context pairs. Returns lists with one entry per window: `input_ids`,
    `attention_mask` (and `token_type_ids` when the tokenizer makes them), `example` (the index of the
    question), `offsets` (per token the (start, end) characters in the context, None outside it) and,
    with `answers`, `start_positions` / `end_positions`."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("question answering needs a fast tokenizer (it maps tokens back to characters)")
    if stride >= max_length // 2:
        raise ValueError(f"stride={stride} must be below half of max_length={max_length}")
    ids = ids or [str(i) for i in range(len(questions))]
    longest = max_length - 4 - stride  # [CLS] q [SEP] c [SEP] must leave more than `stride` context tokens
    for qid, question in zip(ids, questions):
        if len(tokenizer(question, add_special_tokens=False)["input_ids"]) > longest:
            raise DataError(f"question {qid!r}: the question is longer than {longest} tokens, too long "
                            f"for windows of {max_length} tokens overlapping by {stride}")
    enc = tokenizer(questions, contexts, truncation="only_second", max_length=max_length, stride=stride,
                    return_overflowing_tokens=True, return_offsets_mapping=True)
    features = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
    features["example"] = list(enc["overflow_to_sample_mapping"])
    features["offsets"] = [
        [tuple(o) if sid == 1 else None for o, sid in zip(enc["offset_mapping"][w], enc.sequence_ids(w))]
        for w in range(len(enc["input_ids"]))
    ]
    if answers is not None:
        starts, ends = [], []
        for w, offsets in enumerate(features["offsets"]):
            answer = answers[features["example"][w]]
            s, e = _answer_tokens(offsets, answer)
            starts.append(s)
            ends.append(e)
        features["start_positions"], features["end_positions"] = starts, ends
    return features


def _answer_tokens(offsets: list, answer: dict) -> tuple[int, int]:
    """The first and last token of the (first) answer in a window; (0, 0) when it is not all inside."""
    if not answer["text"]:
        return 0, 0
    start_char = answer["answer_start"][0]
    end_char = start_char + len(answer["text"][0])
    inside = [i for i, o in enumerate(offsets) if o is not None]
    if not inside or offsets[inside[0]][0] > start_char or offsets[inside[-1]][1] < end_char:
        return 0, 0
    start = next(i for i in inside if offsets[i][1] > start_char)
    end = next(i for i in reversed(inside) if offsets[i][0] < end_char)
    return start, end


def window_spans(start_scores: torch.Tensor, end_scores: torch.Tensor, allowed: torch.Tensor,
                 max_answer_len: int = 30, k: int = 1) -> list[tuple[float, int, int]]:
    """The `k` best (score, start, end) token spans of one window, score = start + end score, over
    spans inside `allowed` ([n] bool) with start <= end < start + max_answer_len."""
    n = start_scores.shape[0]
    s = start_scores.float().masked_fill(~allowed, float("-inf"))
    e = end_scores.float().masked_fill(~allowed, float("-inf"))
    scores = s[:, None] + e[None, :]
    band = torch.ones(n, n, dtype=torch.bool, device=scores.device).triu().tril(max_answer_len - 1)
    scores = scores.masked_fill(~band, float("-inf")).flatten()
    best = torch.topk(scores, k=min(k, scores.numel()))
    return [(v, *divmod(i, n)) for v, i in zip(best.values.tolist(), best.indices.tolist()) if v > float("-inf")]


@dataclass
class Answer:
    text: str
    start: int  # characters in the context (-1 for the empty answer)
    end: int
    score: float  # start + end logit of the span
    null_score: float  # the lowest [CLS] start + end logit over the question's windows


def best_answers(features: dict, start_logits: list[torch.Tensor], end_logits: list[torch.Tensor],
                 contexts: list[str], max_answer_len: int = 30, allow_null: bool = False,
                 null_threshold: float = 0.0) -> list[Answer]:
    """One answer per question from the logits of its windows (`features` from `prepare_features`;
    `start_logits[w]` / `end_logits[w]` for window w, unpadded or padded). With `allow_null` the empty
    answer is given when the null score beats the best span by more than `null_threshold`."""
    best: dict[int, tuple] = {}
    null: dict[int, float] = {}
    for w, offsets in enumerate(features["offsets"]):
        q = features["example"][w]
        n = len(offsets)
        start, end = start_logits[w][:n], end_logits[w][:n]
        allowed = torch.tensor([o is not None for o in offsets], device=start.device)
        null[q] = min(null.get(q, float("inf")), float(start[0] + end[0]))
        for score, s, e in window_spans(start, end, allowed, max_answer_len, k=1):
            if q not in best or score > best[q][0]:
                best[q] = (score, offsets[s][0], offsets[e][1])
    answers = []
    for q, context in enumerate(contexts):
        null_score = null.get(q, float("-inf"))
        score, s, e = best.get(q, (float("-inf"), -1, -1))
        if s < 0 or (allow_null and null_score - score > null_threshold):
            answers.append(Answer("", -1, -1, score, null_score))
        else:
            answers.append(Answer(context[s:e], s, e, score, null_score))
    return answers


# ---------------------------------------------------------------------------- SQuAD scores
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, no punctuation, no articles (a, an, the), single spaces: the official normalisation."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1(prediction: str, gold: str) -> float:
    pred_tokens, gold_tokens = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:  # an empty answer is right only against an empty answer
        return float(pred_tokens == gold_tokens)
    common = sum((collections.Counter(pred_tokens) & collections.Counter(gold_tokens)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred_tokens), common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: list[str], gold: list[list[str]]) -> dict:
    """Exact match and F1 in [0, 1], each the best over a question's gold answers (an unanswerable
    question has the gold answer ""), averaged over the questions; with per-question values for
    bootstrap intervals, and the two averages over answerable and unanswerable questions apart."""
    if len(predictions) != len(gold):
        raise ValueError(f"{len(predictions)} predictions for {len(gold)} questions")
    em, f = [], []
    for prediction, answers in zip(predictions, gold):
        answers = answers or [""]
        em.append(max(exact_match(prediction, a) for a in answers))
        f.append(max(f1(prediction, a) for a in answers))
    result = {"exact_match": sum(em) / len(em), "f1": sum(f) / len(f), "n": len(em),
              "per_question_em": em, "per_question_f1": f}
    has = [i for i, answers in enumerate(gold) if answers]
    no = [i for i, answers in enumerate(gold) if not answers]
    if no:
        result["has_answer_f1"] = sum(f[i] for i in has) / len(has) if has else None
        result["no_answer_f1"] = sum(f[i] for i in no) / len(no)
    return result


def window_batches(tokenizer, dataset, max_length: int, stride: int, batch_size: int):
    """(features, padded batches) of a SQuAD dataset's questions (`trbert.data.load_squad`)."""
    features = prepare_features(tokenizer, list(dataset["question"]), list(dataset["context"]), max_length,
                                stride, ids=list(dataset["id"]))
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in features]
    batches = []
    for start in range(0, len(features["input_ids"]), batch_size):
        rows = [{k: features[k][i] for k in keys} for i in range(start, min(start + batch_size, len(features["input_ids"])))]
        batches.append(tokenizer.pad(rows, return_tensors="pt"))
    return features, batches
