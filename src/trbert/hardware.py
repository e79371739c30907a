"""What the machine can do: the CPU's instruction set, whether it computes bfloat16 natively, and the
cores this process may use. Defaults that depend on the hardware are chosen here, in one place.

On a CPU without native bfloat16 (AVX2 only, no AVX-512 BF16 or AMX) a bfloat16 matrix product is
emulated, so mixed precision is only asked for where `native_bfloat16()` says so.

The instruction set is the one torch may use: the CPU's flags, capped where the environment narrows
torch's kernels (`ATEN_CPU_CAPABILITY=avx2`, `ONEDNN_MAX_CPU_ISA=AVX2`). Those two variables make an
AVX-512 machine run (and trbert choose) as an AVX2-only one does.
"""

import os
import platform
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as the kernel lists them (empty where /proc/cpuinfo is not readable)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# The names in order, and where each variable's values fall among them.
_ORDER = ("AVX2", "AVX-512", "AVX-512 BF16", "AMX")
_ATEN_CAP = {"default": "AVX2", "avx2": "AVX2", "avx512": "AMX"}  # ATen's own kernels; matmuls go to oneDNN
_ONEDNN_CAP = (("AMX", "AMX"), ("BF16", "AVX-512 BF16"), ("AVX512", "AVX-512"), ("AVX10", "AVX-512 BF16"),
               ("AVX", "AVX2"), ("SSE", "AVX2"))


def _ceiling() -> str | None:
    """The widest set the environment lets torch use, or None where it does not narrow it."""
    caps = []
    aten = os.environ.get("ATEN_CPU_CAPABILITY", "").strip().lower()
    if aten in _ATEN_CAP:
        caps.append(_ATEN_CAP[aten])
    onednn = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    if onednn and onednn != "ALL":
        caps.append(next((name for key, name in _ONEDNN_CAP if key in onednn), "AMX"))
    return min(caps, key=_ORDER.index) if caps else None


def instruction_set() -> str:
    """The widest vector instructions torch may use, as timings name them: "AMX", "AVX-512 BF16",
    "AVX-512", "AVX2" or the machine's architecture when none of these is known."""
    name = _cpu_instruction_set()
    cap = _ceiling()
    if cap and name in _ORDER and _ORDER.index(cap) < _ORDER.index(name):
        return f"{cap} (capped by the environment on an {name} CPU)"
    return name


def isa_id() -> str:
    """The instruction set as results records name it: "amx", "avx512_bf16", "avx512", "avx2" (or the
    machine's architecture, lower case)."""
    name = instruction_set().split(" (")[0]
    return {"AMX": "amx", "AVX-512 BF16": "avx512_bf16", "AVX-512": "avx512", "AVX2": "avx2"}.get(name, name.lower())


def _cpu_instruction_set() -> str:
    flags = cpu_flags()
    if "amx_bf16" in flags:
        return "AMX"
    if "avx512_bf16" in flags:
        return "AVX-512 BF16"
    if "avx512f" in flags:
        return "AVX-512"
    if "avx2" in flags:
        return "AVX2"
    return platform.machine() or "unknown"


def native_bfloat16(device_type: str = "cpu") -> bool:
    """Whether bfloat16 matrix products run natively: on the CPU with AVX-512 BF16 or AMX; on a GPU when
    torch says the card supports it."""
    if device_type == "cuda":
        import torch

        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return instruction_set().startswith(("AVX-512 BF16", "AMX"))


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, which a container or `taskset` may narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4


def keep_freed_memory() -> bool:
    """Have glibc's allocator serve large blocks from its heap and keep what is freed there.

    By default glibc maps every block over a few MB afresh and unmaps it on free, so each training step
    of a base-size encoder has the kernel fault in its activations page by page again. From the heap,
    freed blocks are reused, and up to 1 GB freed at its top stays there (docs/RESULTS.md has the time
    it saves). Returns whether the allocator took the settings (False off glibc)."""
    import ctypes
    import ctypes.util

    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return all(libc.mallopt(param, value) == 1 for param, value in
                   ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 1 << 30), (_M_TOP_PAD, 1 << 28)))
    except (OSError, AttributeError):
        return False
