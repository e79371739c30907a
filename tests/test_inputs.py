"""Text in, model inputs out: bad texts get a clear error naming the text; long ones are truncated or refused."""

import pytest

import trbert


@pytest.mark.parametrize("texts,error,match", [
    ("", ValueError, r"texts is empty or only whitespace"),
    (["w1 w2", "   \n\t"], ValueError, r"texts\[1\] is empty or only whitespace"),
    ([], ValueError, "texts is empty"),
    (["w1", 3], TypeError, r"texts\[1\] is of type int"),
    (42, TypeError, "must be a string or a list of strings"),
    (None, TypeError, "must be a string or a list of strings"),
])
def test_bad_texts(tokenizer, texts, error, match):
    with pytest.raises(error, match=match):
        trbert.encode(tokenizer, texts)


def test_long_text_is_truncated_by_default_and_rejected_without_truncation(tokenizer, model):
    long_text = " ".join(["w5"] * 200)
    enc = trbert.encode(tokenizer, [long_text, "w1 w2"])
    assert enc["input_ids"].shape == (2, 64)
    assert model(**enc).logits.shape == (2, 2)
    with pytest.raises(ValueError, match="text 0 has 202 tokens but the model takes at most 64"):
        trbert.encode(tokenizer, long_text, truncation=False)


@pytest.mark.parametrize("texts,error,match", [
    ("\x00\x00", ValueError, "only invisible characters"),
    (["w1", "\u200b\u200d"], ValueError, r"texts\[1\] holds only invisible characters"),
    (b"w1 w2", TypeError, "texts is bytes: decode it"),
    (["w1", b"w2"], TypeError, r"texts\[1\] is bytes: decode it"),
])
def test_texts_with_nothing_visible_or_undecoded_are_refused(tokenizer, texts, error, match):
    with pytest.raises(error, match=match):
        trbert.encode(tokenizer, texts)


@pytest.mark.parametrize("max_length", [0, -5, 1, 2.5, True])
def test_a_max_length_that_makes_no_sense_is_refused(tokenizer, max_length):
    with pytest.raises(ValueError, match="must be a whole number of tokens, at least 2"):
        trbert.encode(tokenizer, "w1 w2", max_length=max_length)
    assert trbert.encode(tokenizer, "w1 w2 w3", max_length=3)["input_ids"].shape == (1, 3)
