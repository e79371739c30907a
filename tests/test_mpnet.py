"""MPNet as a backbone: its checkpoints load unchanged into every TR head; with every token kept the
outputs are transformers' MPNetFor*; its relative position bias follows each kept token's original
position through removal, masking, restore, budgets, long input, early exit and int8."""

import pytest
import torch
from builders import spread_policy
from transformers import (AutoModelForSequenceClassification, MPNetConfig, MPNetForQuestionAnswering,
                          MPNetForSequenceClassification, MPNetForTokenClassification, MPNetModel, pipeline)

import trbert
from trbert import reduction
from trbert.cost import reduction_cost

CONFIG = dict(vocab_size=60, hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
              max_position_embeddings=66)  # 64 positions after MPNet's offset of pad + 1
PAIRS = [(MPNetForSequenceClassification, trbert.TRBertForSequenceClassification, 3),
         (MPNetForTokenClassification, trbert.TRBertForTokenClassification, 3),
         (MPNetForQuestionAnswering, trbert.TRBertForQuestionAnswering, 2),
         (MPNetModel, trbert.TRBertModel, 2)]
LENGTHS = [20, 12, 7, 31]


def batch(lengths=LENGTHS, seed=0):
    gen = torch.Generator().manual_seed(seed)
    n = max(lengths)
    ids = torch.ones(len(lengths), n, dtype=torch.long)  # MPNet's <pad> is 1
    mask = torch.zeros(len(lengths), n, dtype=torch.long)
    for b, length in enumerate(lengths):
        ids[b, :length] = torch.randint(5, CONFIG["vocab_size"], (length,), generator=gen)
        ids[b, 0], ids[b, length - 1] = 0, 2  # <s> ... </s>
        mask[b, :length] = 1
    return ids, mask


def saved(plain_cls, num_labels, tmp_path, seed=0):
    torch.manual_seed(seed)
    plain = plain_cls(MPNetConfig(**CONFIG, num_labels=num_labels)).eval()
    with torch.no_grad():  # a position bias that matters (at its initial scale it barely moves the outputs)
        plain.base_model.encoder.relative_attention_bias.weight.normal_(0, 3.0)
    plain.save_pretrained(tmp_path / plain_cls.__name__)
    return plain, tmp_path / plain_cls.__name__


def fields(out, mask):
    """The comparable outputs, token-level ones at the real tokens only."""
    got = {}
    for name in ("logits", "start_logits", "end_logits", "last_hidden_state"):
        value = getattr(out, name, None)
        if value is not None:
            got[name] = value[mask.bool()] if value.dim() >= 2 and value.shape[1] == mask.shape[1] else value
    return got


@pytest.mark.parametrize("plain_cls,tr_cls,num_labels", PAIRS, ids=lambda x: getattr(x, "__name__", x))
def test_every_token_kept_gives_transformers_mpnet(plain_cls, tr_cls, num_labels, tmp_path, caplog):
    plain, folder = saved(plain_cls, num_labels, tmp_path)
    model = tr_cls.from_pretrained(folder, keep_threshold=0.0).eval()
    assert model.config.backbone == "mpnet" and model.config.sep_token_id == 2
    for name, weight in plain.state_dict().items():  # every weight arrives, unchanged
        if "position_ids" not in name:
            mine = name.replace("mpnet.", "bert.").replace(".attention.attn.q.", ".attention.self.query.")
            mine = mine.replace(".attention.attn.k.", ".attention.self.key.").replace(
                ".attention.attn.v.", ".attention.self.value.").replace(".attention.attn.o.", ".attention.output.dense.")
            mine = mine.replace(".attention.LayerNorm.", ".attention.output.LayerNorm.")
            if not mine.startswith(("bert.", "classifier.", "qa_outputs.")):
                mine = "bert." + mine  # the bare MPNetModel's keys
            mine = mine.removeprefix("bert.") if tr_cls is trbert.TRBertModel else mine
            assert torch.equal(model.state_dict()[mine], weight), name
    ids, mask = batch()
    with torch.no_grad():
        want = fields(plain(input_ids=ids, attention_mask=mask), mask)
        for masked in (False, True):
            got = fields(model(input_ids=ids, attention_mask=mask, masked=masked), mask)
            assert set(got) == set(want)
            for name in want:
                torch.testing.assert_close(got[name], want[name], atol=1e-5, rtol=0)


def reducing(tmp_path, cls=trbert.TRBertForTokenClassification, plain_cls=MPNetForTokenClassification, **overrides):
    _, folder = saved(plain_cls, 3, tmp_path)
    return spread_policy(cls.from_pretrained(folder, **overrides).eval())


def test_reduction_is_batch_invariant_and_masking_equals_removal(tmp_path):
    model = reducing(tmp_path)
    ids, mask = batch()
    with torch.no_grad():
        whole = model(input_ids=ids, attention_mask=mask)
        masked = model(input_ids=ids, attention_mask=mask, masked=True)
        assert (whole.kept_lengths[:, -1] < torch.tensor(LENGTHS)).all()  # tokens were removed
        assert whole.kept_lengths.tolist() == masked.kept_lengths.tolist()
        torch.testing.assert_close(whole.logits[mask.bool()], masked.logits[mask.bool()], atol=1e-5, rtol=0)
        for b, length in enumerate(LENGTHS):
            alone = model(input_ids=ids[b:b + 1, :length])
            assert alone.kept_lengths.tolist() == whole.kept_lengths[b:b + 1].tolist()
            torch.testing.assert_close(alone.logits[0], whole.logits[b, :length], atol=1e-5, rtol=0)


def test_the_bias_follows_the_kept_tokens_original_positions(tmp_path):
    """Layers after a step see the kept tokens' original positions: the same model with the bias taken
    from the packed order (positions 0, 1, 2, ...) instead gives other outputs."""
    model = reducing(tmp_path, trbert.TRBertForSequenceClassification, MPNetForSequenceClassification)
    ids, mask = batch([31])
    with torch.no_grad():
        encoder = model.base_model.encoder
        right = model(input_ids=ids, attention_mask=mask).logits
        assert model(input_ids=ids, attention_mask=mask).kept_lengths[0, 0] < 31
        original = encoder.position_bias
        encoder.position_bias = lambda q, k: original(torch.arange(q.shape[-1]).expand_as(q),
                                                      torch.arange(k.shape[-1]).expand_as(k))
        wrong = model(input_ids=ids, attention_mask=mask).logits
    assert not torch.allclose(right, wrong, atol=1e-4)


@pytest.mark.parametrize("execution,path", [("padded", "per_example"), ("packed", "padded"), ("packed", "varlen")])
def test_every_execution_and_attention_path_carries_the_bias(execution, path, tmp_path, monkeypatch):
    model = reducing(tmp_path)
    ids, mask = batch()
    with torch.no_grad():
        want = model(input_ids=ids, attention_mask=mask)
        model.config.execution = execution
        # the variable-length kernel takes no bias: an MPNet model asks for the padded call instead
        monkeypatch.setattr(reduction, "attention_path", lambda device, dtype, dropout=0.0: path)
        monkeypatch.setattr(reduction, "_varlen_attn", lambda *a, **k: pytest.fail("varlen_attn called with a bias"))
        got = model(input_ids=ids, attention_mask=mask)
    assert got.kept_lengths.tolist() == want.kept_lengths.tolist()
    torch.testing.assert_close(got.logits[mask.bool()], want.logits[mask.bool()], atol=1e-5, rtol=0)


def test_budget_early_exit_and_skipped_as_keys(tmp_path):
    ids, mask = batch()
    capped = reducing(tmp_path, max_keep_ratio=0.3)
    with torch.no_grad():
        kept = capped(input_ids=ids, attention_mask=mask).kept_lengths
    assert (kept <= torch.floor(torch.tensor(LENGTHS) * 0.3 + 1e-6)[:, None].long().clamp(min=1)).all()
    exits = reducing(tmp_path, selection="early_exit", exit_threshold=0.9, skipped_as_keys=True)
    with torch.no_grad():
        removal = exits(input_ids=ids, attention_mask=mask)
        masked = exits(input_ids=ids, attention_mask=mask, masked=True)
    assert removal.kept_lengths.tolist() == masked.kept_lengths.tolist()
    torch.testing.assert_close(removal.logits[mask.bool()], masked.logits[mask.bool()], atol=1e-5, rtol=0)


def test_long_input_within_one_segment_equals_the_plain_model(tmp_path):
    plain, folder = saved(MPNetModel, 2, tmp_path)
    model = trbert.TRBertModel.from_pretrained(folder, keep_threshold=0.0, long_input=True).eval()
    ids, mask = batch([60, 33])
    long_ids, long_mask = batch([150])
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids, attention_mask=mask).last_hidden_state[mask.bool()],
                                   plain(input_ids=ids, attention_mask=mask).last_hidden_state[mask.bool()],
                                   atol=1e-5, rtol=0)
        out = model(input_ids=long_ids, attention_mask=long_mask)  # 150 tokens: three segments, then together
    assert out.last_hidden_state.shape == (1, 150, 32) and out.kept_lengths.tolist() == [[150, 150]]


def test_round_trip_auto_classes_pipeline_int8_and_cost(tmp_path):
    model = reducing(tmp_path / "a", trbert.TRBertForSequenceClassification, MPNetForSequenceClassification)
    model.save_pretrained(tmp_path / "tr")
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path / "tr").eval()
    assert type(again) is trbert.TRBertForSequenceClassification and again.config.backbone == "mpnet"
    ids, mask = batch()
    with torch.no_grad():
        a, b = model(input_ids=ids, attention_mask=mask), again(input_ids=ids, attention_mask=mask)
        torch.testing.assert_close(a.logits, b.logits, atol=0, rtol=0)
        small = trbert.deployment.quantize_int8(model)(input_ids=ids, attention_mask=mask)
    assert small.kept_lengths.shape == a.kept_lengths.shape
    assert (small.logits.argmax(-1) == a.logits.argmax(-1)).float().mean() >= 0.5
    # the bias is counted: H n^2 per layer on top of BERT's layer
    full = reduction_cost(model.config, torch.tensor([10]), None).macs.item()
    d, f, H, L = 32, 64, 2, 4
    assert full == L * (4 * 10 * d * d + 2 * 10 * d * f + 2 * 100 * d + H * 100)
    from builders import tiny_tokenizer

    tokenizer = tiny_tokenizer(max_length=64)
    classify = pipeline("text-classification", model=str(tmp_path / "tr"), tokenizer=tokenizer)
    assert classify("w1 w2 w3")[0]["label"].startswith("LABEL_")


def test_ltp_thresholds_are_refused_for_mpnet(tmp_path):
    from trbert.strategies.ltp import learn_thresholds

    model = reducing(tmp_path, trbert.TRBertForSequenceClassification, MPNetForSequenceClassification)
    with pytest.raises(ValueError, match="does not learn MPNet's thresholds"):
        learn_thresholds(model, [], steps=1)
