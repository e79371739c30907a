"""Speed benchmark: how much of the ideal (FLOP) speed-up of token reduction the wall clock realises.

The plain Hugging Face model and the TR model (same weights) run on the same batches; the TR model
runs under several settings (full keep, fixed keep fractions with the policy bypassed, packed and
padded execution). Settings are timed round-robin within each repeat so that drift of the machine
hits all of them alike, and the median over repeats is reported.

Ideal speed-up = multiply-adds the plain model executes / multiply-adds the setting executes.
The plain model runs every layer on the padded batch; a TR setting's cost comes from
`trbert.reduction_cost` on the real and kept lengths of each example.

On the CPU in fp32 by default; `device="cuda"` and `dtype="bfloat16"` (or "float16", "float32") time
both models on a GPU, each pass waited for before the clock stops.
"""

import datetime
import os
import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from trbert.configuration import OFFSET_POSITIONS
from trbert.cost import reduction_cost
from trbert.evaluation import synchronize
from trbert.evaluation.records import versions
from trbert.hardware import cpu_name, instruction_set, isa_id
from trbert.strategies import FixedFractionStrategy, KeepStrategy, PolicyStrategy

from .report import markdown_table, provenance, update_section

BENCHMARK = "speed_minilm"
MODEL_NAME = "all-MiniLM-L6-v2"
DATA = "random_tokens"
DEFAULT_JSON = "docs/results/speed_minilm.json"
DEFAULT_MD = "docs/RESULTS.md"
COLUMNS = ["n", "batch", "setting", "kept per step", "ms/batch", "wall speed-up", "ideal speed-up", "wall/ideal"]


# ---------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Setting:
    """One way of running the TR model; `strategy=None` means the plain Hugging Face model."""

    name: str
    strategy: KeepStrategy | None = None
    execution: str = "packed"
    keep_threshold: float | None = None  # None: leave the model's own threshold

    @property
    def is_plain(self) -> bool:
        return self.strategy is None


PLAIN = Setting("plain")


def fraction_setting(fractions: Sequence[float], order: str = "first", execution: str = "packed") -> Setting:
    """A fixed keep fraction per reduction step, policy bypassed; named e.g. 'first 0.5,0.25 packed'."""
    name = f"{order} {','.join(f'{f:g}' for f in fractions)} {execution}"
    return Setting(name, FixedFractionStrategy(list(fractions), order=order), execution=execution)


def default_settings() -> list[Setting]:
    """The TR settings compared against the plain model."""
    return [
        # keep_threshold 0 makes the policy keep every token: the overhead of the machinery alone.
        Setting("full-keep", PolicyStrategy(), keep_threshold=0.0),
        fraction_setting([0.5, 0.25], "first", "packed"),
        fraction_setting([0.5, 0.25], "first", "padded"),
        fraction_setting([0.5, 0.25], "first", "graph"),
        fraction_setting([0.5, 0.25], "random", "packed"),
        fraction_setting([0.25, 0.1], "first", "packed"),
    ]


@contextmanager
def configured(model, setting: Setting):
    """Apply a setting (strategy, execution mode, threshold) to the TR model, and undo it afterwards."""
    config, encoder = model.config, model.base_model.encoder
    saved = encoder.strategy, config.execution, config.keep_threshold
    model.set_strategy(setting.strategy)
    config.execution = setting.execution
    if setting.keep_threshold is not None:
        config.keep_threshold = setting.keep_threshold
    try:
        yield model
    finally:
        model.set_strategy(saved[0])
        config.execution, config.keep_threshold = saved[1], saved[2]


def forward(setting: Setting, plain, tr, input_ids, attention_mask):
    if setting.is_plain:
        return plain(input_ids=input_ids, attention_mask=attention_mask)
    with configured(tr, setting):
        # restore=False: classification-style, only the kept tokens come out.
        return tr(input_ids=input_ids, attention_mask=attention_mask, restore=False)


# ---------------------------------------------------------------------------- inputs
def random_batch(
    n: int, batch_size: int, seed: int = 0, token_range=(1000, 20000), cls_id: int = 101, sep_id: int = 102
) -> tuple[torch.Tensor, torch.Tensor]:
    """input_ids and attention_mask of random words between [CLS] and [SEP], right-padded with 0.

    One example is always exactly n tokens long; the others (batch > 1) draw their length uniformly
    in [n // 4, n], so a batch mixes lengths as real text does.
    """
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(n // 4, n + 1, (batch_size,), generator=gen)
    lengths[0] = n
    ids = torch.randint(*token_range, (batch_size, n), generator=gen)
    mask = (torch.arange(n) < lengths[:, None]).long()
    ids = ids * mask
    ids[torch.arange(batch_size), lengths - 1] = sep_id
    ids[:, 0] = cls_id
    return ids, mask


# ---------------------------------------------------------------------------- measuring
def executed_macs(setting: Setting, plain_config, tr_config, attention_mask, output) -> float:
    """Multiply-adds a setting executed on the whole batch."""
    if setting.is_plain:  # every layer on the padded batch
        B, n = attention_mask.shape
        return float(reduction_cost(plain_config, torch.full((B,), n), None).macs.sum())
    lengths = attention_mask.sum(1)
    cost = reduction_cost(tr_config, lengths, output.kept_lengths, strategy=setting.strategy)
    return float(cost.macs.sum())


def rotated(items: list, shift: int) -> list:
    shift %= len(items)
    return items[shift:] + items[:shift]


def measure(
    plain,
    tr,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    settings: Sequence[Setting],
    repeats: int,
    *,
    model_name: str = MODEL_NAME,
    data: str = DATA,
    on_round: Callable[[], None] | None = None,
    extra: dict | None = None,
) -> list[dict]:
    """Time the plain model and every TR setting on one batch; one record per setting, plain first.

    One untimed warm-up call per setting (which also gives the kept lengths: every strategy here is
    deterministic), then `repeats` rounds. `on_round` is called after the warm-up and each round;
    `extra`: fields for every record (device, dtype). On a GPU each timed pass is waited for.
    """
    device = input_ids.device
    settings = [PLAIN, *settings]
    plain.eval()
    tr.eval()
    times = {s.name: [] for s in settings}
    with torch.inference_mode():
        outputs = {s.name: forward(s, plain, tr, input_ids, attention_mask) for s in settings}
        if on_round:
            on_round()
        for r in range(repeats):
            # Start each round one setting later, so no setting always follows the same one.
            for s in rotated(settings, r):
                synchronize(device)
                start = time.perf_counter()
                forward(s, plain, tr, input_ids, attention_mask)
                synchronize(device)
                times[s.name].append(time.perf_counter() - start)
            if on_round:
                on_round()

    B, n = input_ids.shape
    median = {name: statistics.median(t) for name, t in times.items()}
    macs = {s.name: executed_macs(s, plain.config, tr.config, attention_mask, outputs[s.name]) for s in settings}
    records = []
    for s in settings:
        out = outputs[s.name]
        kept = None if s.is_plain else [round(f, 4) for f in out.kept_fraction.mean(0).tolist()]
        ideal = macs[PLAIN.name] / macs[s.name]
        wall = median[PLAIN.name] / median[s.name]
        records.append({
            "method": "full" if s.is_plain else "tr",
            "setting": s.name,
            "model": model_name,
            "data": data,
            "split": None,
            "n_examples": B,
            "max_length": n,
            "batch_size": B,
            "metric": None,
            "score": None,
            "kept_fraction": kept,
            "flops_speedup": round(ideal, 4),
            "wall_speedup": round(wall, 4),
            "latency_ms": round(median[s.name] * 1000, 3),
            "throughput_per_s": round(B / median[s.name], 2),
            "peak_mem_mb": None,
            **(extra or {}),
        })
    return records


# ---------------------------------------------------------------------------- the whole run
def load_minilm(path: str | None = None):
    """The plain Hugging Face model and the TR model with the same weights (its policies are new): the
    embedded MiniLM, or the encoder in `path`."""
    import transformers

    from trbert import TRBertModel
    from trbert.configuration import default_backbone

    transformers.logging.set_verbosity_error()  # the load report lists the (expected) new policy weights
    transformers.logging.disable_progress_bar()
    path = path or default_backbone()
    # transformers picks PyTorch's SDPA kernel where the architecture has it (BERT), else eager (MPNet)
    plain = transformers.AutoModel.from_pretrained(path).eval()
    tr = TRBertModel.from_pretrained(path, attn_implementation="sdpa").eval()
    return plain, tr


def run(
    lengths: Sequence[int] = (512, 128),
    batch_sizes: Sequence[int] = (1, 32),
    repeats: int = 7,
    batched_repeats: int = 4,
    threads: int = 2,
    seed: int = 0,
    command: str = "trbert speed",
    progress: bool = True,
    device: str = "cpu",
    dtype: str = "float32",
    backbone: str | None = None,
) -> dict:
    """Measure every (n, batch) shape on MiniLM (or the encoder in `backbone`) and return the report
    (see `write_json`)."""
    torch.set_num_threads(threads)
    where = torch.device(device)
    gpu = torch.cuda.get_device_name(where) if where.type == "cuda" else None
    plain, tr = (model.to(device=where, dtype=getattr(torch, dtype)) for model in load_minilm(backbone))
    model_name = MODEL_NAME if backbone is None else os.path.basename(os.path.normpath(backbone))
    cls_id = 0 if tr.config.backbone in OFFSET_POSITIONS else 101  # <s>, [CLS]
    extra = {"device": gpu or "cpu", "dtype": dtype, "cpu_isa": isa_id(),
             "plain_attention": plain.config._attn_implementation}
    settings = default_settings()
    shapes = [(n, b, repeats if b == 1 else batched_repeats) for n in lengths for b in batch_sizes]
    records = []
    with tqdm(total=sum(r + 1 for _, _, r in shapes), desc="rounds", unit="round", disable=not progress) as bar:
        for n, b, r in shapes:
            bar.set_postfix_str(f"n={n} batch={b}")
            ids, mask = (x.to(where) for x in random_batch(n, b, seed=seed, cls_id=cls_id, sep_id=tr.config.sep_token_id))
            records += measure(plain, tr, ids, mask, settings, r, on_round=lambda: bar.update(1), extra=extra,
                               model_name=model_name)
    return {
        "benchmark": BENCHMARK,
        "command": command,
        "date": datetime.date.today().isoformat(),
        "machine": {"cpu": cpu_name(), "isa": instruction_set(), "threads": threads, "gpu": gpu},
        "versions": versions(),
        "records": records,
    }


# ---------------------------------------------------------------------------- output
def table_rows(records: Sequence[dict]) -> list[list[str]]:
    rows = []
    for r in records:
        kept = ", ".join(f"{f:.2f}" for f in r["kept_fraction"]) if r["kept_fraction"] else "-"
        rows.append([
            str(r["max_length"]),
            str(r["batch_size"]),
            r["setting"],
            kept,
            f"{r['latency_ms']:.1f}",
            f"{r['wall_speedup']:.2f}x",
            f"{r['flops_speedup']:.2f}x",
            f"{r['wall_speedup'] / r['flops_speedup']:.2f}",
        ])
    return rows


def text_table(records: Sequence[dict]) -> str:
    """Aligned plain-text table; a blank line between shapes."""
    rows = table_rows(records)
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(COLUMNS)]
    left = {2, 3}  # text columns; numbers are right-aligned

    def line(cells):
        return "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    out = [line(COLUMNS), "  ".join("-" * w for w in widths)]
    for i, row in enumerate(rows):
        if i and row[:2] != rows[i - 1][:2]:
            out.append("")
        out.append(line(row))
    return "\n".join(out)


def speed_markdown_table(records: Sequence[dict]) -> str:
    rows = table_rows(records)
    align = ["---:", "---:", ":---", ":---", "---:", "---:", "---:", "---:"]
    return markdown_table(rows, [(c, a, lambda row, i=i: row[i]) for i, (c, a) in enumerate(zip(COLUMNS, align))])


def section_name(report: dict) -> str:
    """The results page's section of a report: "speed" (MiniLM, CPU, fp32), else e.g. "speed-cuda-bfloat16"
    or "speed-all-mpnet-base-v2"."""
    device, dtype = _device_and_dtype(report)
    model = report["records"][0].get("model", MODEL_NAME) if report["records"] else MODEL_NAME
    name = "speed" if (device, dtype) == ("cpu", "float32") else f"speed-{'cpu' if device == 'cpu' else 'cuda'}-{dtype}"
    return name if model == MODEL_NAME else f"{name}-{model}"


def default_json(device: str, dtype: str, model: str = MODEL_NAME) -> str:
    name = DEFAULT_JSON if (device, dtype) == ("cpu", "float32") else f"docs/results/speed_minilm_{device}_{dtype}.json"
    return name if model == MODEL_NAME else name.replace("speed_minilm", f"speed_{model}")


def _device_and_dtype(report: dict) -> tuple[str, str]:
    first = report["records"][0] if report["records"] else {}
    return first.get("device", "cpu"), first.get("dtype", "float32")


def markdown_section(report: dict, repeats: int, batched_repeats: int) -> str:
    v, m = report["versions"], report["machine"]
    run = "\n".join(provenance(report["command"], m))
    device, dtype = _device_and_dtype(report)
    name = section_name(report)
    where = "CPU" if device == "cpu" else device
    model = report["records"][0].get("model", MODEL_NAME) if report["records"] else MODEL_NAME
    implementation = report["records"][0].get("plain_attention", "sdpa") if report["records"] else "sdpa"
    attention = {"sdpa": "SDPA", "eager": "eager (transformers has no SDPA path for it)"}.get(implementation, implementation)
    return f"""<!-- {name}:begin -->
## Speed: {model} on {where}{"" if dtype == "float32" else f", {dtype}"}

Wall-clock against ideal speed-up of token reduction over the plain Hugging Face model
({attention} attention, {dtype}, `torch.inference_mode`), on random token ids. Batches of 1 hold one
example of n tokens; in batches larger than 1 each example's length is drawn in [n/4, n] and
padded to n. Median of {repeats} rounds at batch 1 and {batched_repeats} at larger batches, the settings
interleaved within each round{"" if device == "cpu" else "; every timed pass waited for on the GPU"}.

{run}
- Date: {report["date"]}; trbert {v["trbert"]}, torch {v["torch"]}, transformers {v["transformers"]}

{speed_markdown_table(report["records"])}

Settings: `plain` is `AutoModel` (every layer runs on the padded batch); `full-keep` is the TR
model with `keep_threshold=0` (the policies run and keep every token: the full model packed, without
padding, plus the machinery); `first`/`random f1,f2`
keep the first / a random f1 and f2 of each example's tokens at the two reduction steps
(`FixedFractionStrategy`, policy bypassed); `packed`/`padded` is the execution mode. The TR
model returns only the kept tokens (`restore=False`). Ideal speed-up = multiply-adds of the
plain model / multiply-adds the setting executes (`trbert.reduction_cost` on the kept lengths,
policies included when they run); wall/ideal is the share of it the wall clock realises.
<!-- {name}:end -->"""


def update_results_md(path: str | os.PathLike, section: str) -> None:
    name = section.split(":begin -->", 1)[0].removeprefix("<!-- ")
    update_section(path, name, section)
