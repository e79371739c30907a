"""The learned policy: its keep probabilities, the threshold and expected keep rules, and what it costs."""

import torch
from builders import LENGTHS, reducing_model, tiny_batch

import trbert
from trbert.strategies import KeepPolicy, PolicyStrategy
from trbert.strategies.base import Tokens


def test_policy_skips_some_tokens_and_keeps_others():
    model = reducing_model()
    ids, mask = tiny_batch(LENGTHS)
    with torch.no_grad():
        kept = model(input_ids=ids, attention_mask=mask).kept_lengths
    lengths = mask.sum(1)
    assert (kept[:, 0] <= lengths).all() and (kept[:, 1] <= kept[:, 0]).all()  # nested steps
    assert (kept[:, -1] < lengths).any() and (kept[:, -1] > 1).any()


def test_expected_keep_rule_keeps_round_sum_of_probabilities():
    model = reducing_model(trbert.TRBertForSequenceClassification, reduction_layers=[1], keep_rule="expected")
    ids, mask = tiny_batch(LENGTHS)
    encoder = model.bert.encoder
    seen = {}
    original = encoder._select

    def spy(step, tokens, input_ids, action, sample):
        keep, *rest = original(step, tokens, input_ids, action, sample)
        p = encoder.policy[step](tokens.hidden)
        seen["expected"] = torch.zeros(len(LENGTHS)).index_add(0, tokens.example, p)
        seen["keep"], seen["p"], seen["example"] = keep, p, tokens.example
        return (keep, *rest)

    encoder._select = spy
    with torch.no_grad():
        kept = model(input_ids=ids, attention_mask=mask).kept_lengths[:, 0]
    assert kept.tolist() == torch.clamp(torch.round(seen["expected"]), min=1).long().tolist()
    for b in range(len(LENGTHS)):  # the most probable tokens ([CLS] aside) are the ones kept
        mine = seen["example"] == b
        p, keep = seen["p"][mine][1:], seen["keep"][mine][1:]
        if keep.any() and (~keep).any():
            assert p[keep].min() >= p[~keep].max()
    model.config.keep_rule = "threshold"
    with torch.no_grad():
        assert model(input_ids=ids, attention_mask=mask).kept_lengths[:, 0].tolist() != kept.tolist()


def test_expected_keep_rule_counts_in_fp32_under_bfloat16():
    # A bfloat16 model (a GPU's precision) gives bfloat16 probabilities; a sum held in bfloat16 moves in
    # steps of 2 past 256 and of 4 past 512. 600 tokens with p = 0.9 (0.8984375 in bfloat16) expect
    # round(539.06) = 539 kept, where the sum in bfloat16 gives 540.
    n = 600
    tokens = Tokens(hidden=torch.zeros(n, 4, dtype=torch.bfloat16), example=torch.zeros(n, dtype=torch.long),
                    position=torch.arange(n), rank=torch.arange(n), counts=torch.tensor([n]), length=torch.tensor([n]))
    config = trbert.TRBertConfig(keep_rule="expected")
    proposal = PolicyStrategy().propose(0, tokens, lambda h: torch.full((len(h),), 0.9, dtype=h.dtype), config)
    assert proposal.budget.tolist() == [539]


def test_a_half_precision_policy_decides_in_fp32():
    # 8-bit bfloat16 probabilities would tie for many tokens, and which ties are kept would turn on rounding.
    torch.manual_seed(0)
    policy = KeepPolicy(16, 8).to(torch.bfloat16)
    hidden = torch.randn(50, 16).to(torch.bfloat16)
    p = policy(hidden)
    want = KeepPolicy(16, 8)
    want.load_state_dict({k: v.float() for k, v in policy.state_dict().items()})
    assert p.dtype == torch.float32
    torch.testing.assert_close(p, want(hidden.float()), atol=1e-6, rtol=0)
    assert len(set(p.tolist())) == 50  # no ties
