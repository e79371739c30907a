"""TR models exported to ONNX with the policies, keep rule, budget and removal in the graph: equal to PyTorch
(logits and kept lengths) at any batch and length, per example independent of the batch, int8 with the
policies in fp32, clear errors for what a graph cannot hold and for damaged folders."""

import json
import os

import onnx
import pytest
import torch
from builders import LENGTHS, spread_policy, tiny_batch, tiny_config, tiny_tokenizer

import trbert
from trbert.deployment import OnnxTRModel, export_folder, export_onnx, quantize_int8
from trbert.deployment.onnx import INT8_RECIPE, int8_recipe
from trbert.errors import CheckpointError

HEADS = [(trbert.TRBertForSequenceClassification, 3, ("logits",)),
         (trbert.TRBertForTokenClassification, 3, ("logits",)),
         (trbert.TRBertForQuestionAnswering, 2, ("start_logits", "end_logits"))]
BATCHES = [(LENGTHS, 1), ([31], 2), ([12, 12, 12], 3), ([40, 3, 25, 8, 17, 33], 4)]


def reducing(cls, num_labels, **overrides):
    torch.manual_seed(0)
    return spread_policy(cls(tiny_config(num_labels=num_labels, **overrides)).eval())


@pytest.mark.parametrize("overrides", [{}, {"keep_rule": "expected", "max_keep_ratio": 0.4}, {"keep_sep": True}],
                         ids=["threshold", "expected+budget", "keep_sep"])
@pytest.mark.parametrize("cls,num_labels,fields", HEADS, ids=lambda x: getattr(x, "__name__", None))
def test_the_exported_graph_equals_pytorch_at_any_batch(cls, num_labels, fields, overrides, tmp_path):
    model = reducing(cls, num_labels, **overrides)
    folder = export_folder(model, tiny_tokenizer(), tmp_path / "exported")
    assert sorted(os.listdir(folder)) == ["config.json", "model.onnx", "tokenizer.json", "tokenizer_config.json",
                                          "trbert-onnx.json"]
    runtime = OnnxTRModel.from_pretrained(folder, threads=1)
    removed_any = False
    for lengths, seed in BATCHES:
        ids, mask = tiny_batch(lengths, seed=seed)
        with torch.no_grad():
            want = model(input_ids=ids, attention_mask=mask)
        got = runtime(input_ids=ids, attention_mask=mask)
        assert type(got) is type(want) and torch.equal(got.kept_lengths, want.kept_lengths)
        assert torch.equal(got.kept_steps, want.kept_steps)  # the same tokens, not only as many
        removed_any |= bool((want.kept_lengths[:, -1] < torch.tensor(lengths)).any())
        for name in fields:
            a, b = getattr(got, name), getattr(want, name)
            if a.dim() >= 2 and a.shape[1] == ids.shape[1]:
                a, b = a[mask.bool()], b[mask.bool()]
            torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
        # an example alone gets what it gets in the batch
        alone = runtime(input_ids=ids[:1, :lengths[0]], attention_mask=mask[:1, :lengths[0]])
        assert torch.equal(alone.kept_lengths, got.kept_lengths[:1])
        a, b = getattr(alone, fields[0])[0], getattr(got, fields[0])[0]
        torch.testing.assert_close(a, b[:lengths[0]] if a.dim() and a.shape[0] == lengths[0] else b, atol=1e-5, rtol=0)
    assert removed_any


@pytest.mark.parametrize("cls,num_labels,fields", HEADS, ids=lambda x: getattr(x, "__name__", None))
def test_int8_equals_pytorch_int8_per_example_and_keeps_the_policies_in_fp32(cls, num_labels, fields, tmp_path):
    model = reducing(cls, num_labels, keep_rule="expected")
    folder = export_folder(model, tiny_tokenizer(), tmp_path / "int8", int8=True)
    record = json.loads((folder / "trbert-onnx.json").read_text())
    assert record["precision"] == "int8" and record["int8"] == INT8_RECIPE == int8_recipe(folder / "model.onnx")
    graph = onnx.load(str(folder / "model.onnx")).graph
    ops = {n.op_type for n in graph.node}
    assert "MatMulInteger" in ops and "DynamicQuantizeLinear" not in ops  # no scale shared by a whole batch
    assert not any("/policy." in n.name and "Integer" in n.op_type for n in graph.node)
    # The embedding tables stay fp32, as in PyTorch int8: the first step's decisions read them.
    tables = [t for t in graph.initializer if "embeddings" in t.name]
    assert tables and all(t.data_type == onnx.TensorProto.FLOAT for t in tables)
    lengths = [40, 3, 25, 8, 17, 33]
    ids, mask = tiny_batch(lengths, seed=4)
    with torch.no_grad():
        fp32 = model(input_ids=ids, attention_mask=mask)
        want = quantize_int8(model)(input_ids=ids, attention_mask=mask)
    runtime = OnnxTRModel.from_pretrained(folder, threads=1)
    got = runtime(input_ids=ids, attention_mask=mask)
    assert (want.kept_lengths[:, -1] < torch.tensor(lengths)).any()  # tokens removed
    # Both runtimes quantize alike: the same decisions, and outputs equal but for float rounding (measured
    # up to 3e-9 over 5 random classifiers); int8 itself moves them far more (1.6-3.2% of the fp32 logits).
    assert torch.equal(got.kept_steps, want.kept_steps)
    for name in fields:
        a, b, c = getattr(got, name), getattr(want, name), getattr(fp32, name)
        if a.dim() >= 2 and a.shape[1] == ids.shape[1]:
            a, b, c = a[mask.bool()], b[mask.bool()], c[mask.bool()]
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
        assert (b - c).abs().max() > 1e-4
    # Each token is quantized on its own scale: an example alone gets exactly what it gets in the batch.
    for i, n in enumerate(lengths):
        alone = runtime(input_ids=ids[i:i + 1, :n], attention_mask=mask[i:i + 1, :n])
        assert torch.equal(alone.kept_steps[0], got.kept_steps[i, :n])
        a, b = getattr(alone, fields[0])[0], getattr(got, fields[0])[i]
        torch.testing.assert_close(a, b[:n] if a.dim() and a.shape[0] == n else b, atol=1e-6, rtol=0)


def test_mpnet_exports_with_its_position_bias(tmp_path):
    from transformers import MPNetConfig, MPNetForSequenceClassification

    torch.manual_seed(0)
    plain = MPNetForSequenceClassification(MPNetConfig(vocab_size=99, hidden_size=32, num_hidden_layers=4,
                                                       num_attention_heads=2, intermediate_size=64,
                                                       max_position_embeddings=66, num_labels=3))
    plain.save_pretrained(tmp_path / "mpnet")
    model = spread_policy(trbert.TRBertForSequenceClassification.from_pretrained(tmp_path / "mpnet").eval())
    path = export_onnx(model, tmp_path / "mpnet.onnx")
    import onnxruntime as ort

    session = ort.InferenceSession(str(path))
    ids, mask = tiny_batch([30, 9, 17], seed=5)
    with torch.no_grad():
        want = model(input_ids=ids, attention_mask=mask)
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]  # MPNet has no token types
    logits, kept, steps = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    assert (kept == want.kept_lengths.numpy()).all() and (steps == want.kept_steps.numpy()).all()
    torch.testing.assert_close(torch.from_numpy(logits), want.logits, atol=1e-4, rtol=0)


@pytest.mark.parametrize("overrides,message", [
    ({"long_input": True}, "long-input model"),
    ({"selection": "attention_topk", "keep_fractions": [0.5, 0.25]}, "selection='attention_topk' is not exported"),
    ({"skipped_as_keys": True}, "skipped_as_keys=True is not exported"),
    ({"selection": "early_exit"}, "selection='early_exit' is not exported"),
])
def test_what_a_graph_cannot_hold_gets_a_clear_error(overrides, message, tmp_path):
    model = trbert.TRBertForSequenceClassification(tiny_config(num_labels=3, **overrides)).eval()
    with pytest.raises(ValueError, match=message):
        export_folder(model, tiny_tokenizer(), tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_damaged_or_missing_exports_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="no model.onnx here; export a model with `trbert export"):
        OnnxTRModel.from_pretrained(tmp_path)
    folder = export_folder(reducing(trbert.TRBertForSequenceClassification, 3), tiny_tokenizer(), tmp_path / "e")
    data = (folder / "model.onnx").read_bytes()
    (folder / "model.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable ONNX model.*export it again"):
        OnnxTRModel.from_pretrained(folder)
    runtime_folder = export_folder(reducing(trbert.TRBertForSequenceClassification, 3), tiny_tokenizer(), tmp_path / "f")
    runtime = OnnxTRModel.from_pretrained(runtime_folder)
    with pytest.raises(ValueError, match="takes at most 64"):
        runtime(input_ids=torch.ones(1, 70, dtype=torch.long))
    with pytest.raises(ValueError, match=r"example\(s\) \[1\] hold no text.*nothing to read"):
        runtime(input_ids=torch.tensor([[2, 7, 3], [2, 3, 0]]), attention_mask=torch.tensor([[1, 1, 1], [1, 1, 0]]))
    with pytest.raises(ValueError, match=r"example\(s\) \[0\] have no tokens"):
        runtime(input_ids=torch.tensor([[2, 7, 3]]), attention_mask=torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="attention_mask must be a tensor of shape"):
        runtime(input_ids=torch.tensor([[2, 7, 3]]), attention_mask=torch.ones(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="is empty"):
        runtime(input_ids=torch.ones(1, 0, dtype=torch.long))
    with pytest.raises(TypeError, match="2-D integer tensor"):
        runtime(input_ids=torch.ones(1, 3))


def test_the_real_minilm_exports_equal_to_pytorch(minilm, tmp_path):
    """The embedded MiniLM with policies centred to keep about half the tokens at each step: the exported
    graph gives its logits and kept lengths on news-like texts, in fp32; int8 keeps nearly the same tokens."""
    from builders import center_policies
    from transformers import AutoTokenizer

    path, batch = minilm
    model = trbert.TRBertForSequenceClassification.from_pretrained(path, num_labels=5, keep_rule="expected",
                                                                   reduction_layers=[0, 3]).eval()
    center_policies(model, batch)
    tokenizer = AutoTokenizer.from_pretrained(path)
    with torch.no_grad():
        want = model(**batch)
    fp32 = OnnxTRModel.from_pretrained(export_folder(model, tokenizer, tmp_path / "fp32"))(**batch)
    assert torch.equal(fp32.kept_lengths, want.kept_lengths) and torch.equal(fp32.kept_steps, want.kept_steps)
    assert (want.kept_lengths[:, 0] < batch["attention_mask"].sum(1)).all()
    torch.testing.assert_close(fp32.logits, want.logits, atol=1e-4, rtol=0)
    int8 = OnnxTRModel.from_pretrained(export_folder(model, tokenizer, tmp_path / "int8", int8=True))(**batch)
    kept = int(want.kept_lengths.sum())
    assert int((int8.kept_lengths - want.kept_lengths).abs().sum()) <= 0.10 * kept
    present = batch["attention_mask"].bool()
    assert (int8.kept_steps == want.kept_steps)[present].float().mean() >= 0.9  # each token's decisions
    # The first step reads the embeddings, which stay fp32: its decisions are the fp32 model's.
    assert torch.equal((int8.kept_steps >= 0)[present], (want.kept_steps >= 0)[present])
    with torch.no_grad():
        torch_int8 = quantize_int8(model)(**batch)
    # The runtimes quantize alike, but a weight or activation at a rounding boundary can round the other
    # way in one of them, which moves tokens at these knife-edge policies' thresholds: measured 99.5%.
    assert (int8.kept_steps == torch_int8.kept_steps)[present].float().mean() >= 0.98
