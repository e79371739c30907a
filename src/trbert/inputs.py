"""Text in, model inputs out: the checks a user's raw texts need before tokenization."""

import unicodedata
from collections.abc import Sequence

# Characters that show nothing: control and format characters (NUL, zero-width spaces, direction marks).
_INVISIBLE = {"Cc", "Cf"}


def encode(tokenizer, texts, text_pairs=None, max_length: int | None = None, truncation: bool = True):
    """Tokenize a text or a list of texts (optionally paired, e.g. question and context) for a trbert model.

    Empty or whitespace-only texts and non-strings are rejected with the index of the offending text.
    Texts longer than `max_length` (default: the tokenizer's limit) are truncated, or rejected when
    `truncation=False`. Returns a `BatchEncoding` of PyTorch tensors, padded to the longest text.
    """
    texts = check_texts(texts, "texts")
    if text_pairs is not None:
        text_pairs = check_texts(text_pairs, "text_pairs")
        if len(text_pairs) != len(texts):
            raise ValueError(f"got {len(texts)} texts but {len(text_pairs)} text_pairs: they must pair up one to one")
    if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2):
        raise ValueError(f"max_length={max_length!r} must be a whole number of tokens, at least 2 ([CLS] and [SEP])")
    limit = max_length or tokenizer.model_max_length
    if limit is None or limit > 100_000:  # tokenizers without a known limit report a huge sentinel
        raise ValueError("the tokenizer does not say how many tokens the model takes: pass max_length")
    if not truncation:
        pieces = tokenizer(texts, text_pairs, truncation=False)["input_ids"]
        too_long = [(i, len(ids)) for i, ids in enumerate(pieces) if len(ids) > limit]
        if too_long:
            i, n = too_long[0]
            raise ValueError(
                f"text {i} has {n} tokens but the model takes at most {limit}; shorten it or pass truncation=True"
            )
    strategy = "only_second" if text_pairs is not None else True
    return tokenizer(
        texts, text_pairs, truncation=strategy if truncation else False, max_length=limit,
        padding=True, return_tensors="pt",
    )


def check_texts(texts, name: str = "texts") -> list[str]:
    """The texts as a list, or a clear error: a string or a list of strings, each with something visible in it
    (not empty, not only whitespace, control or zero-width characters)."""
    if isinstance(texts, (bytes, bytearray)):
        raise TypeError(f"{name} is {type(texts).__name__}: decode it to a string first (e.g. .decode('utf-8'))")
    single = isinstance(texts, str)  # one text: named without an index
    if single:
        texts = [texts]
    if not isinstance(texts, Sequence):
        raise TypeError(f"{name} must be a string or a list of strings, got {type(texts).__name__}")
    if len(texts) == 0:
        raise ValueError(f"{name} is empty: give at least one text")
    for i, text in enumerate(texts):
        label = name if single else f"{name}[{i}]"
        if isinstance(text, (bytes, bytearray)):
            raise TypeError(f"{name}[{i}] is {type(text).__name__}: decode it to a string first")
        if not isinstance(text, str):
            raise TypeError(f"{name}[{i}] is of type {type(text).__name__}, not a string")
        if not text.strip():
            raise ValueError(f"{label} is empty or only whitespace: there is nothing to read in it")
        if all(ch.isspace() or unicodedata.category(ch) in _INVISIBLE for ch in text):
            raise ValueError(f"{label} holds only invisible characters (control or zero-width): there is "
                             "nothing to read in it")
    return list(texts)
