"""Files and folders are written whole: a reader never sees one half-written, a failed write leaves the old one."""

import pytest

from trbert.io import atomic_folder, atomic_path, atomic_write, write_json


def test_atomic_write_writes_text_and_bytes(tmp_path):
    atomic_write(tmp_path / "sub" / "a.txt", "héllo")
    atomic_write(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "sub" / "a.txt").read_text(encoding="utf-8") == "héllo"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    write_json(tmp_path / "c.json", {"x": [1, 2]})
    assert (tmp_path / "c.json").read_text() == '{\n  "x": [\n    1,\n    2\n  ]\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.bin", "c.json", "sub"]  # no temporary file left


def test_a_failed_file_write_leaves_the_old_file_and_no_trace(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write("half")
        raise RuntimeError("interrupted")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_a_folder_is_replaced_whole_or_not_at_all(tmp_path):
    target = tmp_path / "model"
    with atomic_folder(target) as staging:
        (staging / "config.json").write_text("1")
    with pytest.raises(RuntimeError), atomic_folder(target) as staging:
        (staging / "config.json").write_text("2")
        raise RuntimeError("interrupted")
    assert (target / "config.json").read_text() == "1"
    with atomic_folder(target) as staging:
        (staging / "weights").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["weights"]  # the old folder's files are gone
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging or old folder left
