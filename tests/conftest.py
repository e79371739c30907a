"""Fixtures shared by the tests; the builders they use are in builders.py."""

import pytest
import torch
from builders import FILLER, MARKERS, tiny_config, tiny_tokenizer
from transformers import BertConfig, BertModel

import trbert


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


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


@pytest.fixture
def tokenizer():
    """A word-level tokenizer over the tiny models' vocabulary."""
    tok = tiny_tokenizer()
    assert tok("w0 w1")["input_ids"] == [2, 5, 6, 3]  # words are words, not [UNK]
    return tok


@pytest.fixture
def model():
    """An untrained tiny TR classifier (its policies keep every token), in eval mode."""
    return trbert.TRBertForSequenceClassification(tiny_config(num_labels=2)).eval()
