"""What the machine can do: the CPU's instruction set, whether it computes bfloat16 natively, and the
cores this process may use. Defaults that depend on the hardware are chosen here, in one place.

On a CPU without native bfloat16 (AVX2 only, no AVX-512 BF16 or AMX) a bfloat16 matrix product is
emulated, so mixed precision is only asked for where `native_bfloat16()` says so.
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


def instruction_set() -> str:
    """The widest vector instructions of the CPU, as timings name them: "AMX", "AVX-512 BF16", "AVX-512",
    "AVX2" or the machine's architecture when none of these is known."""
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
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, which a container or `taskset` may narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
