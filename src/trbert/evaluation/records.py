"""Results files: one record per measured system, in the one JSON shape every benchmark writes, with the
machine and versions of the run."""

import datetime
import os

import torch

from ..hardware import cpu_name, instruction_set, isa_id
from ..io import write_json

# Fields every record of a results file has (None where they do not apply).
RECORD_FIELDS = (
    "method", "setting", "model", "data", "split", "n_examples", "max_length", "batch_size", "metric",
    "score", "kept_fraction", "flops_speedup", "wall_speedup", "latency_ms", "throughput_per_s", "peak_mem_mb",
)
def versions() -> dict:
    import transformers

    from .. import __version__

    return {"trbert": __version__, "torch": torch.__version__, "transformers": transformers.__version__}


def machine(gpu: str | None = None) -> dict:
    """The machine a run happened on: CPU model and instruction set, torch's CPU thread count, and the GPU
    used (None: none)."""
    return {"cpu": cpu_name(), "isa": instruction_set(), "threads": torch.get_num_threads(), "gpu": gpu}


def results_record(result: dict, metric: str = "accuracy", key: str | None = None, **fields) -> dict:
    """A record for `write_results_json` from a result of `evaluate_classifier` or `truncation_baseline`
    (or of another evaluation, with its `metric` name and the `key` of its score in `result`): every
    field of `RECORD_FIELDS` (None if unknown), `score`, plus `fields` (method, setting, model, data,
    split, ...) and the result's other entries."""
    record = dict.fromkeys(RECORD_FIELDS)
    record.update(result)
    record.update(metric=metric, score=result[key or metric])
    record.update(fields)
    return record


def write_results_json(path: str | os.PathLike, benchmark: str, command: str, records: list[dict],
                       gpu: str | None = None, timing: dict | None = None, **extra) -> dict:
    """Write a results file (atomically) and return what was written. `gpu`: the GPU the runs used;
    `timing`: how long the run took (minutes per stage and in all), when the benchmark keeps it;
    `extra`: more top-level entries (e.g. "budget"). Each record gets the CPU's `cpu_isa` unless it has one."""
    for i, record in enumerate(records):
        missing = [f for f in RECORD_FIELDS if f not in record]
        if missing:
            raise ValueError(f"record {i} lacks {missing} (results_record fills them)")
        score = record["score"]
        if score is not None and not 0.0 <= score <= 1.0:
            raise ValueError(f"record {i} has score {score}: scores are fractions in [0, 1]")
    report = {
        "benchmark": benchmark,
        "command": command,
        "date": datetime.date.today().isoformat(),
        "machine": machine(gpu),
        "versions": versions(),
        "records": [{**record, "cpu_isa": record.get("cpu_isa") or isa_id()} for record in records],
    }
    if timing is not None:
        report["timing"] = timing
    report.update(extra)
    write_json(path, report)
    return report
