"""ONNX export of the full model: equal to PyTorch at any batch and length, int8 equal to PyTorch int8 and per
example, clear errors, no partial files."""

import os

import pytest
import torch
from builders import plain_classifier, relative_error, tiny_batch

from trbert.deployment import OnnxClassifier, export_onnx, quantize_int8, quantize_onnx_int8


# ---------------------------------------------------------------------------- ONNX
@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = plain_classifier()
    folder = tmp_path_factory.mktemp("onnx")
    path = export_onnx(model, folder / "model.onnx")
    int8 = quantize_onnx_int8(path, folder / "model.int8.onnx")
    return model, path, int8


def test_export_onnx_matches_pytorch_at_any_batch_and_length(exported):
    model, path, _ = exported
    assert sorted(os.listdir(path.parent)) == ["model.int8.onnx", "model.onnx"]  # no temporary files left
    onnx_model = OnnxClassifier(path, threads=1)
    assert onnx_model.input_names == ["input_ids", "attention_mask", "token_type_ids"]
    for lengths, n, seed in [([10, 7, 4], 12, 1), ([30, 3, 17, 25, 9], 40, 2)]:  # the export traced [2, 8]
        ids, mask = tiny_batch(lengths, n, seed=seed)
        batch = {"input_ids": ids, "attention_mask": mask}  # no token_type_ids: zeros are supplied
        with torch.no_grad():
            expected = model(**batch).logits
        got = onnx_model(batch)
        assert got.dtype == torch.float32 and got.shape == (len(lengths), 3)
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


def test_int8_onnx_equals_pytorch_int8_per_example(exported):
    model, _, int8 = exported
    lengths = [20, 13, 7, 30]
    ids, mask = tiny_batch(lengths, 33)
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask).logits
        torch_int8 = quantize_int8(model)(input_ids=ids, attention_mask=mask).logits
    runtime = OnnxClassifier(int8, threads=1)
    got = runtime({"input_ids": ids, "attention_mask": mask})
    # Both runtimes quantize alike (fp32 embeddings, 7-bit weights, each token on its own 8-bit scale):
    # equal but for float rounding (measured up to 4e-9 over 5 random models), while int8 itself moves these
    # random models' small logits by 0.9-6.4%.
    torch.testing.assert_close(got, torch_int8, atol=1e-6, rtol=1e-4)
    assert 0 < relative_error(got, expected) < 0.2
    for i, n in enumerate(lengths):  # an example alone gets what it gets in the batch
        alone = runtime({"input_ids": ids[i:i + 1, :n], "attention_mask": mask[i:i + 1, :n]})
        torch.testing.assert_close(alone[0], got[i], atol=1e-6, rtol=0)


def test_onnx_errors_name_the_file_and_the_fix(tmp_path):
    missing = tmp_path / "nowhere.onnx"
    with pytest.raises(FileNotFoundError, match=r"nowhere\.onnx.*export_onnx"):
        OnnxClassifier(missing)
    with pytest.raises(FileNotFoundError, match=r"nowhere\.onnx"):
        quantize_onnx_int8(missing, tmp_path / "out.onnx")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(os.urandom(64) + b"not a protobuf")
    with pytest.raises(ValueError, match=r"corrupt\.onnx.*export it again"):
        OnnxClassifier(corrupt)


def test_int8_of_a_graph_without_linear_layers_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "no-linear", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "relu.onnx")
    with pytest.raises(ValueError, match="no linear layer"):
        quantize_onnx_int8(tmp_path / "relu.onnx", tmp_path / "relu.int8.onnx")
    assert sorted(os.listdir(tmp_path)) == ["relu.onnx"]  # nothing half-written


def test_failed_export_leaves_no_file(tmp_path, monkeypatch):
    def interrupted(model, args, f, **kwargs):
        with open(f, "wb") as out:
            out.write(b"half a graph")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch.onnx, "export", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_onnx(plain_classifier(), tmp_path / "model.onnx")
    assert os.listdir(tmp_path) == []


def test_int8_onnx_minilm_close_to_pytorch(minilm, tmp_path):
    from transformers import AutoModelForSequenceClassification

    path, batch = minilm
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=5).eval()
    fp32 = export_onnx(model, tmp_path / "minilm.onnx")
    int8 = quantize_onnx_int8(fp32, tmp_path / "minilm.int8.onnx")
    # The linear weights shrink to a quarter; the embedding tables (half of MiniLM's weights) stay fp32.
    assert os.path.getsize(int8) < 0.7 * os.path.getsize(fp32)
    with torch.no_grad():
        expected = model(**batch).logits
    torch.testing.assert_close(OnnxClassifier(fp32, threads=1)(batch), expected, atol=1e-4, rtol=0)
    got = OnnxClassifier(int8, threads=1)(batch)
    # Per-channel 7-bit weights, 8-bit activations per token: measured relative error 0.095 (0.11-0.13 with
    # one activation scale per call). Each example's error is set against the batch's typical logit size: the random
    # head gives one text logits half as large as the others', whose direction int8 moves the most.
    assert relative_error(got, expected) < 0.2
    per_example = (got - expected).norm(dim=1) / expected.norm(dim=1).mean()
    assert per_example.max() < 0.3  # measured: at most 0.12 (0.19 with one activation scale per call)
