"""Attacks on cost and prediction (trbert.attacks): the cap's cost bound as a property, the slow-down
attacks on a model whose policy keeps one marked word, and the substitution search's budget."""

import random

import pytest
import torch
from builders import LETTERS, MARKED, letter_tokenizer, tiny_config
from hypothesis import given, settings
from hypothesis import strategies as st

import trbert
from trbert.attacks import Victim, blackbox, cost_bound, edit_budget, substitution_attack, whitebox
from trbert.attacks.victim import Measured
from trbert.evaluation import model_macs



def marked_model(keep_rule="threshold", max_keep_ratio=1.0):
    """A tiny classifier with one reduction step on the embeddings whose policy keeps the word MARKED
    (and [CLS]) and skips every other word."""
    tokenizer = letter_tokenizer()
    config = tiny_config(vocab_size=len(tokenizer.get_vocab()), num_labels=3, reduction_layers=[0],
                         keep_rule=keep_rule, max_keep_ratio=max_keep_ratio)
    model = trbert.TRBertForSequenceClassification(config).eval()
    marked = tokenizer.convert_tokens_to_ids(MARKED)
    with torch.no_grad():
        embeddings = model.bert.embeddings
        embeddings.position_embeddings.weight.zero_()
        embeddings.token_type_embeddings.weight.zero_()
        # Every word +-1 in each dimension but the first, where the marked word has 3 and the others -0.3:
        # after the layer norm the first dimension still moves with the embedding (a gradient to follow),
        # on the side of GELU that rises.
        words = embeddings.word_embeddings.weight
        words.copy_(torch.randint(0, 2, words.shape, generator=torch.Generator().manual_seed(0)) * 2.0 - 1)
        words[:, 0] = -0.3
        words[marked, 0] = 3.0
        policy = model.bert.encoder.policy[0]
        policy.dense.weight.zero_()
        policy.dense.weight[:, 0] = 1.0
        policy.dense.bias.zero_()
        policy.out.weight.fill_(2.0 / policy.dense.out_features)
        policy.out.bias.fill_(-1.0)
    return model, tokenizer


def filler_text(n, seed=0):
    rng = random.Random(seed)
    return " ".join(rng.choice(LETTERS) for _ in range(n))


def test_the_marked_model_keeps_only_the_marked_word():
    model, tokenizer = marked_model()
    victim = Victim(model, tokenizer, max_length=64)
    text = filler_text(20)
    plain, marked = victim.measure([text, text + f" {MARKED} {MARKED}"]).kept_lengths[:, 0].tolist()
    assert plain == 1 and marked == 3  # [CLS] alone; [CLS] and the two marked words


@pytest.mark.parametrize("attack", [blackbox, whitebox])
def test_slowdown_attacks_raise_the_kept_count_with_the_marked_word(attack):
    model, tokenizer = marked_model()
    victim = Victim(model, tokenizer, max_length=64)
    text = filler_text(30)
    result = attack(victim, text, fraction=0.1, candidates=16)
    budget = edit_budget(victim.visible_words(text.split()), 0.1)
    assert 1 <= result.edits <= budget == 3
    assert result.macs > result.clean_macs
    after = victim.measure([result.text])
    assert int(after.kept_lengths[0, 0]) == 1 + result.text.split().count(MARKED) > 1
    assert float(after.macs[0]) == pytest.approx(result.macs)


class FirstStepFails(Victim):
    """The marked model, except that the first proposals measured (the second call) look as if they cost
    nothing more: a step without gain."""

    calls = 0

    def measure(self, texts):
        out = super().measure(texts)
        type(self).calls += 1
        if type(self).calls == 2:
            out.macs = out.macs.clamp(max=0.0)
        return out


@pytest.mark.parametrize("patience, edits", [(1, 0), (2, 3)])
def test_a_patient_whitebox_search_goes_past_a_step_without_gain(patience, edits):
    model, tokenizer = marked_model()
    FirstStepFails.calls = 0
    result = whitebox(FirstStepFails(model, tokenizer, max_length=64), filler_text(30), fraction=0.1,
                      patience=patience)
    assert result.edits == edits  # patience 1 stops there; 2 sets those words aside and goes on to the budget


def test_whitebox_needs_a_policy():
    model, tokenizer = marked_model()
    model.set_strategy(trbert.strategies.FixedFractionStrategy([0.5]))
    model.base_model.encoder.policy = torch.nn.ModuleList()
    with pytest.raises(ValueError, match="learned keep policies"):
        whitebox(Victim(model, tokenizer, max_length=64), filler_text(10))


# ---------------------------------------------------------------------------- the cap's bound
@settings(max_examples=40, deadline=None)
@given(
    cap=st.floats(0.05, 1.0),
    steps=st.sampled_from([(0,), (1,), (0, 2), (1, 3), (0, 1, 3)]),
    keep_rule=st.sampled_from(["threshold", "expected"]),
    keep_sep=st.booleans(),
    lengths=st.lists(st.integers(3, 40), min_size=1, max_size=5),
    seed=st.integers(0, 10_000),
)
def test_no_input_costs_more_than_the_caps_bound(cap, steps, keep_rule, keep_sep, lengths, seed):
    config = tiny_config(num_labels=3, reduction_layers=list(steps), keep_rule=keep_rule, keep_sep=keep_sep,
                         max_keep_ratio=cap, keep_threshold=0.3)
    model = trbert.TRBertForSequenceClassification(config).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # policies that keep many tokens: an attacker's best case
        for policy in model.bert.encoder.policy:
            for p in policy.parameters():
                p.copy_(torch.randn(p.shape, generator=gen))
            policy.out.bias.fill_(3.0)
    n = max(lengths)
    ids = torch.randint(5, config.vocab_size, (len(lengths), n), generator=gen)
    mask = (torch.arange(n)[None, :] < torch.tensor(lengths)[:, None]).long()
    ids[:, 0] = 2
    ids[torch.arange(len(lengths)), torch.tensor(lengths) - 1] = 3
    if keep_sep:  # some separators inside the text too
        ids[:, 4::7] = 3
    ids = ids * mask
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask)
    executed = model_macs(model, mask.sum(1), out.kept_lengths)
    bound = cost_bound(model, ids, mask)
    assert (executed <= bound + 1e-6).all(), (executed, bound)
    if cap == 1.0 and not keep_sep:  # the bound is the model that keeps every token
        all_kept = model_macs(model, mask.sum(1), mask.sum(1)[:, None].expand(-1, len(steps)))
        assert torch.equal(bound, all_kept)


def test_attacked_inputs_stay_within_the_caps_bound():
    tokenizer = letter_tokenizer()
    text = filler_text(40)
    kept = {}
    for cap in (1.0, 0.1):
        model = marked_model(max_keep_ratio=cap)[0]
        victim = Victim(model, tokenizer, max_length=64)
        result = blackbox(victim, text, fraction=0.5, candidates=16)
        enc = tokenizer([result.text], truncation=True, max_length=64, return_tensors="pt")
        assert result.macs <= float(cost_bound(model, enc["input_ids"], enc["attention_mask"])[0])
        after = victim.measure([result.text])
        kept[cap] = int(after.kept_lengths[0, 0])
        assert kept[cap] <= max(1, int(cap * int(after.lengths[0])))
    assert kept[1.0] > kept[0.1]  # uncapped, the attack keeps more than the cap allows


# ---------------------------------------------------------------------------- substitution
class WordCounter(Victim):
    """A fake classifier: class 0 with probability (number of "good" words) / 7."""

    def __init__(self):
        super().__init__(model=None, tokenizer=None, max_length=512)

    def measure(self, texts):
        p0 = torch.tensor([min(1.0, t.split().count("good") / 7) for t in texts])
        probs = torch.stack([p0, 1 - p0], 1)
        lengths = torch.tensor([len(t.split()) for t in texts])
        return Measured(probs, probs.argmax(1), lengths, None, lengths.double())

    def visible_words(self, words):
        return len(words)


SYNONYMS = {"good": ["fine", "great"], "house": ["home"]}


@pytest.mark.parametrize("fraction, success", [(0.05, False), (0.3, True)])
def test_substitution_changes_only_synonyms_within_its_budget(fraction, success):
    words = ["good"] * 5 + ["house", "with", "the"] + ["x"] * 12  # 20 words: class 0 until two "good" go
    result = substitution_attack(WordCounter(), " ".join(words), 0, lambda w: SYNONYMS.get(w, []), fraction=fraction)
    after = result.text.split()
    changed = [i for i, (a, b) in enumerate(zip(words, after)) if a != b]
    assert len(after) == len(words) and len(changed) == result.changed <= edit_budget(20, fraction)
    assert all(after[i] in SYNONYMS[words[i]] for i in changed)
    assert result.clean_correct and result.success == success
    if success:
        assert after.count("good") == 3 and result.changed == 2


def test_substitution_skips_texts_the_model_gets_wrong():
    result = substitution_attack(WordCounter(), "good good good good good house", 1, lambda w: SYNONYMS.get(w, []))
    assert not result.clean_correct and not result.success and result.changed == 0


class StrictWordCounter(WordCounter):
    """WordCounter that refuses an empty text, as a real model's `measure` does."""

    def measure(self, texts):
        if any(not t.strip() for t in texts):
            raise ValueError("an empty text")
        return super().measure(texts)


def test_substitution_attacks_a_one_word_text():
    # Deleting the only word leaves no text to measure: it is the most important word, not an error.
    result = substitution_attack(StrictWordCounter(), "house", 1, lambda w: SYNONYMS.get(w, []))
    assert result.clean_correct and not result.success and result.text in ("house", "home")
