import random

import pytest
import torch
from datasets import Dataset
from transformers import BertConfig, BertModel

import trbert

TINY = dict(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=4,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=64,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
    sep_token_id=3,
    pad_token_id=0,
)
CLS, SEP = 2, 3


def tiny_config(**overrides) -> trbert.TRBertConfig:
    return trbert.TRBertConfig(**{**TINY, **overrides})


def tiny_batch(lengths, n=None, seed=0):
    """input_ids / attention_mask for examples of the given real lengths: [CLS] words [SEP], right-padded."""
    gen = torch.Generator().manual_seed(seed)
    n = n or max(lengths)
    ids = torch.zeros(len(lengths), n, dtype=torch.long)
    mask = torch.zeros(len(lengths), n, dtype=torch.long)
    for b, length in enumerate(lengths):
        ids[b, :length] = torch.randint(5, TINY["vocab_size"], (length,), generator=gen)
        ids[b, 0], ids[b, length - 1] = CLS, SEP
        mask[b, :length] = 1
    return ids, mask


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = [f"w{i}" for i in range(TINY["vocab_size"] - len(SPECIAL))]


def tiny_tokenizer(words=WORDS, max_length=TINY["max_position_embeddings"]):
    """A word-level BERT tokenizer over the given words (ids 5, 6, ... in order)."""
    from transformers import BertTokenizerFast

    vocab = {token: i for i, token in enumerate([*SPECIAL, *words])}
    return BertTokenizerFast(vocab=vocab, model_max_length=max_length)


# ---------------------------------------------------------------------------- a tiny synthetic task
# One marker word decides the label among filler: "red" or "blue" when that marker occurs (once),
# "none" when neither does; so dropping either marker loses the label.
FILLER = [f"w{i}" for i in range(40)]
MARKERS = ["red", "blue"]  # class 0, class 1; class 2: no marker
LABELS = [*MARKERS, "none"]


def synthetic(n, seed, length=24):
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        words = [rng.choice(FILLER) for _ in range(length)]
        label = rng.randrange(3)
        if label < 2:
            words[rng.randrange(length)] = MARKERS[label]
        texts.append(" ".join(words))
        labels.append(label)
    return Dataset.from_dict({"text": texts, "label": labels})


@pytest.fixture(scope="session")
def backbone(tmp_path_factory):
    folder = tmp_path_factory.mktemp("backbone")
    tokenizer = tiny_tokenizer(FILLER + MARKERS)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(FILLER) + 7, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)
