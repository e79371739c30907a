"""What every results file records besides its numbers: the machine, the versions, and a safe write."""

import io
import json
import os
import platform
import tempfile
from pathlib import Path

import torch


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict:
    import transformers

    from . import __version__

    return {"trbert": __version__, "torch": torch.__version__, "transformers": transformers.__version__}


def atomic_write(path: str | os.PathLike, data: str | bytes) -> None:
    """Write text (UTF-8) or bytes through a temporary file in the same folder, so a reader never
    sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode("utf-8"))
        os.chmod(tmp, 0o644)  # mkstemp makes it private
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, report: dict) -> None:
    atomic_write(path, json.dumps(report, indent=2) + "\n")


def machine(gpu: str | None = None) -> dict:
    """The machine a run happened on: CPU model, torch's CPU thread count, and the GPU used (None: none)."""
    return {"cpu": cpu_name(), "threads": torch.get_num_threads(), "gpu": gpu}


def update_section(path: str | os.PathLike, name: str, section: str) -> None:
    """Replace the block between `<!-- name:begin -->` and `<!-- name:end -->` of a markdown file by
    `section` (which holds both markers), or append it; the rest of the file stays as it is."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.exists() else "# Results\n"
    start, stop = text.find(begin), text.find(end)
    if start != -1 and stop > start:
        text = text[:start] + section + text[stop + len(end):]
    else:
        text = text.rstrip("\n") + ("\n\n" if text.strip() else "") + section + "\n"
    atomic_write(path, text)


def save_png(fig, path: str | os.PathLike, dpi: int = 120) -> None:
    """A matplotlib figure written as a PNG, atomically."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    atomic_write(path, buffer.getvalue())
