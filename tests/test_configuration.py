"""TRBertConfig: settings that make no sense fail with the reason; the token limit of every BERT-family config."""

import pytest
from builders import tiny_config
from transformers import AutoConfig, BertConfig, RobertaConfig

import trbert
from trbert.configuration import token_limit


@pytest.mark.parametrize("overrides,match", [
    (dict(reduction_layers=[1, 4]), r"every index must lie in \[0, 3\]"),
    (dict(reduction_layers=[-1]), r"every index must lie in \[0, 3\]"),
    (dict(reduction_layers=[2, 1]), "strictly increasing"),
    (dict(keep_threshold=1.5), r"keep_threshold=1.5 must lie in \[0, 1\]"),
    (dict(keep_threshold=-0.1), r"must lie in \[0, 1\]"),
    (dict(max_keep_ratio=0.0), r"max_keep_ratio=0.0 must lie in \(0, 1\]"),
    (dict(max_keep_ratio=1.2), r"must lie in \(0, 1\]"),
    (dict(policy_hidden_size=0), "policy_hidden_size=0 must be at least 1"),
    (dict(backbone="gpt2"), "backbone='gpt2' must be one of"),
    (dict(execution="nested"), "execution='nested' must be one of"),
    (dict(keep_rule="topk"), "keep_rule='topk' must be one of"),
])
def test_nonsensical_config(overrides, match):
    with pytest.raises(Exception, match=match):
        tiny_config(**overrides)


def test_defaults_follow_the_model_and_the_selection():
    assert tiny_config().reduction_layers == [1, 2]  # 1 and L // 2 for 4 layers
    assert tiny_config(num_hidden_layers=2).reduction_layers == [1]
    assert tiny_config(selection="early_exit").reduction_layers == [1, 2, 3]  # before every layer but the first
    assert trbert.TRBertConfig().sep_token_id == 102 and trbert.TRBertConfig(backbone="roberta").sep_token_id == 2


@pytest.mark.parametrize("selection,field", [("attention_topk", "keep_fractions"),
                                             ("attention_threshold", "score_thresholds")])
def test_attention_selections_need_one_value_per_step(selection, field):
    with pytest.raises(ValueError, match=f"needs {field}"):
        tiny_config(selection=selection)
    with pytest.raises(ValueError, match="give one per step"):
        tiny_config(selection=selection, **{field: [0.5]})
    assert getattr(tiny_config(selection=selection, **{field: [0.5, 0.25]}), field) == [0.5, 0.25]


def test_token_limit_of_bert_and_roberta_configs():
    assert token_limit(BertConfig(max_position_embeddings=512)) == 512
    assert token_limit(RobertaConfig(max_position_embeddings=514, pad_token_id=1)) == 512
    assert token_limit(tiny_config()) == tiny_config().segment_length == 64
    assert token_limit(tiny_config(backbone="roberta", pad_token_id=1)) == 62


def test_settings_round_trip_through_save_and_load(tmp_path):
    config = tiny_config(reduction_layers=[0, 3], keep_rule="expected", max_keep_ratio=0.3, keep_sep=True,
                         long_input=True)
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, trbert.TRBertConfig)
    assert {k: getattr(loaded, k) for k in ("reduction_layers", "keep_rule", "max_keep_ratio", "keep_sep", "long_input")} \
        == {"reduction_layers": [0, 3], "keep_rule": "expected", "max_keep_ratio": 0.3, "keep_sep": True,
            "long_input": True}
