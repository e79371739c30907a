"""What an attack sees of a classifier, and the word-level edits it makes.

A text is edited as a list of whitespace-separated words: a word substituted, or one inserted before
another. Only the words within the model's maximum length ("visible" words) are edited: the rest is
truncated away. `Victim.measure` runs the model on texts in batches (decisions are per example, so
batching candidates changes nothing) and gives what the black-box attacks may see: the prediction,
its probabilities, the kept lengths and the multiply-adds executed.
"""

import string
from dataclasses import dataclass
from functools import cached_property

import torch

from ..evaluation import predict_batches


@dataclass
class Measured:
    probs: torch.Tensor  # [N, C]
    pred: torch.Tensor  # [N]
    lengths: torch.Tensor  # [N] tokens of each input
    kept_lengths: torch.Tensor | None  # [N, steps] (None for a model without reduction)
    macs: torch.Tensor  # [N] multiply-adds executed


@dataclass
class Victim:
    """A sequence classifier (trbert or plain transformers), its tokenizer and maximum length."""

    model: torch.nn.Module
    tokenizer: object
    max_length: int
    batch_size: int = 16

    def measure(self, texts: list[str]) -> Measured:
        p = predict_batches(self.model, self.tokenizer, texts, self.max_length, self.batch_size, progress=False)
        return Measured(p.logits.softmax(-1), p.pred, p.lengths, p.kept_lengths, p.macs.double())

    def visible_words(self, words: list[str]) -> int:
        """How many of the words fall within the maximum length (the rest is truncated away)."""
        enc = self.tokenizer(words, is_split_into_words=True, truncation=True, max_length=self.max_length)
        ids = [w for w in enc.word_ids() if w is not None]
        return max(ids) + 1 if ids else 0

    @cached_property
    def vocabulary_words(self) -> tuple[list[str], torch.Tensor]:
        """Lower-case alphabetic words of 3 letters or more that the tokenizer reads as one token of its
        vocabulary, and those token ids: what the slow-down attacks substitute and insert."""
        vocab = self.tokenizer.get_vocab()
        special = set(self.tokenizer.all_special_tokens)
        words = {}
        for token, index in vocab.items():
            if token in special or token.startswith("##"):
                continue
            word = token.lstrip("\u0120\u2581")  # byte-level BPE and sentencepiece word starts
            if len(word) >= 3 and word.isascii() and word.isalpha() and word.islower():
                words.setdefault(word, index)
        names = sorted(words)
        encoded = self.tokenizer(names, add_special_tokens=False)["input_ids"]
        kept = [(w, ids[0]) for w, ids in zip(names, encoded) if len(ids) == 1 and ids[0] == words[w]]
        if not kept:
            raise ValueError("the tokenizer reads no vocabulary word as one token: the attacks have no words to use")
        return [w for w, _ in kept], torch.tensor([i for _, i in kept])


def edit_budget(visible: int, fraction: float) -> int:
    """The most words an attack may change: `fraction` of the visible words, at least one."""
    if not 0 < fraction <= 1:
        raise ValueError(f"the edit budget {fraction} must be a fraction of the words in (0, 1]")
    return max(1, int(fraction * visible))


def substitute(words: list[str], i: int, word: str) -> list[str]:
    return words[:i] + [word] + words[i + 1:]


def insert(words: list[str], i: int, word: str) -> list[str]:
    return words[:i] + [word] + words[i:]


def split_punctuation(word: str) -> tuple[str, str, str]:
    """(leading punctuation, the word, trailing punctuation): "(profits," -> ("(", "profits", ",")."""
    core = word.strip(string.punctuation)
    if not core:
        return word, "", ""
    start = word.index(core)
    return word[:start], core, word[start + len(core):]
