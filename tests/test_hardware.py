"""What the machine can do: its instruction set, native bfloat16, its cores; training's precision on it; and
the allocator setting every command makes."""

import os
import platform
import subprocess
import sys

import pytest

from trbert import hardware, training

AVX2 = frozenset({"sse4_2", "avx", "avx2", "fma"})
AVX512 = AVX2 | {"avx512f", "avx512bw", "avx512vl"}
AVX512_BF16 = AVX512 | {"avx512_bf16"}
AMX = AVX512_BF16 | {"amx_bf16", "amx_tile"}


@pytest.mark.parametrize("flags,name,native", [(AVX2, "AVX2", False), (AVX512, "AVX-512", False),
                                               (AVX512_BF16, "AVX-512 BF16", True), (AMX, "AMX", True)])
def test_instruction_set_and_native_bfloat16(flags, name, native, monkeypatch):
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.setattr(hardware, "cpu_flags", lambda: flags)
    assert hardware.instruction_set() == name
    assert hardware.native_bfloat16("cpu") is native


@pytest.mark.parametrize("env,name,native", [
    ({"ATEN_CPU_CAPABILITY": "avx2"}, "AVX2 (capped by the environment on an AMX CPU)", False),
    ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, "AVX2 (capped by the environment on an AMX CPU)", False),
    ({"ONEDNN_MAX_CPU_ISA": "avx512_core"}, "AVX-512 (capped by the environment on an AMX CPU)", False),
    ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}, "AVX-512 BF16 (capped by the environment on an AMX CPU)", True),
    ({"ONEDNN_MAX_CPU_ISA": "ALL", "ATEN_CPU_CAPABILITY": "avx512"}, "AMX", True),
    ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "ATEN_CPU_CAPABILITY": "avx2"},
     "AVX2 (capped by the environment on an AMX CPU)", False),
])
def test_the_environment_caps_the_instruction_set(env, name, native, monkeypatch):
    monkeypatch.setattr(hardware, "cpu_flags", lambda: AMX)
    for key in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert hardware.instruction_set() == name
    assert hardware.native_bfloat16("cpu") is native
    assert hardware.isa_id() == {"AVX2": "avx2", "AVX-512": "avx512", "AVX-512 BF16": "avx512_bf16",
                                 "AMX": "amx"}[name.split(" (")[0]]


def test_a_cap_never_widens_the_cpu(monkeypatch):
    monkeypatch.setattr(hardware, "cpu_flags", lambda: AVX2)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    assert hardware.instruction_set() == "AVX2" and not hardware.native_bfloat16("cpu")


def test_this_machine_is_read():
    assert hardware.instruction_set() and hardware.cpu_name()
    assert hardware.available_cores() == len(os.sched_getaffinity(0))


def test_bfloat16_training_falls_back_to_fp32_where_it_is_emulated(monkeypatch, capsys):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.setattr(hardware, "cpu_flags", lambda: AVX2)
    monkeypatch.setattr(training.stages, "_NOTED", set())
    assert training.mixed_precision(True) is False
    assert training.mixed_precision(True) is False  # the notice once per process
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "this CPU (AVX2) does not compute bfloat16 natively" in err
    assert training.mixed_precision(False) is False
    monkeypatch.setattr(hardware, "cpu_flags", lambda: AVX512_BF16)
    assert training.mixed_precision(True) is True
    assert capsys.readouterr().err == ""


_HEAP_BLOCK = """
import sys, torch
from trbert import hardware
if sys.argv[1] == "keep":
    assert hardware.keep_freed_memory()
address = torch.ones(16 << 20).data_ptr()  # 64 MB
for line in open("/proc/self/maps"):
    if line.rstrip().endswith("[heap]"):
        start, end = (int(x, 16) for x in line.split()[0].split("-"))
        print(start <= address < end)
        break
else:
    print(False)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator")
def test_large_blocks_come_from_the_heap_where_freed_memory_stays():
    def on_heap(mode):
        run = subprocess.run([sys.executable, "-c", _HEAP_BLOCK, mode], capture_output=True, text=True, check=True)
        return run.stdout.strip()

    assert on_heap("default") == "False"  # glibc maps a block this large afresh, and unmaps it on free
    assert on_heap("keep") == "True"
