"""The results page's machinery: markdown tables, sections of docs/RESULTS.md, plots."""

import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from trbert.io import atomic_write

Column = tuple[str, str, Callable[[dict], str]]  # header, markdown alignment (":--" or "--:"), cell of a record


def markdown_table(records: Sequence[dict], columns: Sequence[Column]) -> str:
    """A markdown table with one row per record."""
    lines = ["| " + " | ".join(header for header, _, _ in columns) + " |",
             "|" + "|".join(align for _, align, _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(r) for _, _, cell in columns) + " |" for r in records]
    return "\n".join(lines)


def diff_cell(key: str) -> Callable[[dict], str]:
    """A record's `key` difference with its 95% interval, in points ("" when it has none)."""
    return lambda r: "" if r.get(key) is None else (
        f"{100 * r[key]:+.2f} [{100 * r['ci_low']:+.2f}, {100 * r['ci_high']:+.2f}]")


def kept_cell(r: dict) -> str:
    """The fraction of tokens each reduction step kept ("" without reduction)."""
    return "" if r.get("kept_fraction") is None else ", ".join(f"{k:.2f}" for k in r["kept_fraction"])


def speedup_cell(key: str) -> Callable[[dict], str]:
    """A speed-up as "2.50x" ("" when not measured)."""
    return lambda r: "" if r.get(key) is None else f"{r[key]:.2f}x"


def provenance(command: str, machine: dict) -> list[str]:
    """The lines under a results section's prose that say how to rerun it and where it ran."""
    isa = f" ({machine['isa']})" if machine.get("isa") else ""
    gpu = machine.get("gpu") or "no GPU"
    threads = f"{machine['threads']} thread{'' if machine['threads'] == 1 else 's'}"
    return [f"- Command: `{command}`", f"- Machine: {machine['cpu']}{isa}, {threads}, {gpu}"]


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


X_LABELS = {
    "flops_speedup": "speed-up over the full model (FLOPs)",
    "wall_speedup": "speed-up over the full model (wall clock)",
}


def _accuracy_of(record: dict) -> float | None:
    return record.get("accuracy", record.get("score"))


def _full_accuracy(records: Sequence[dict]) -> float | None:
    for r in records:
        if r.get("full_accuracy") is not None:
            return r["full_accuracy"]
    for r in records:
        if r.get("method") == "full":
            return _accuracy_of(r)
    return None


def _error_bars(points: list[dict], full_accuracy: float | None) -> list[list[float]] | None:
    """[below, above] each point: its confidence interval as accuracies, full_accuracy + [ci_low, ci_high]."""
    if full_accuracy is None or not any(p.get("ci_low") is not None for p in points):
        return None
    below, above = [], []
    for p in points:
        if p.get("ci_low") is None or p.get("ci_high") is None:
            below.append(0.0)
            above.append(0.0)
            continue
        base = p.get("full_accuracy", full_accuracy)
        below.append(max(0.0, _accuracy_of(p) - (base + p["ci_low"])))
        above.append(max(0.0, base + p["ci_high"] - _accuracy_of(p)))
    return [below, above]


def display_name(method: str) -> str:
    """A method's name as the page writes it: "tr" is TR-BERT."""
    return "TR-BERT" + method[2:] if method == "tr" or method.startswith("tr ") else method


def plot_tradeoff(records: list[dict], path: str | os.PathLike, title: str, y_label: str = "accuracy",
                  axes: Sequence[str] = ("flops_speedup", "wall_speedup")) -> list[str]:
    """PNG of the score (in percent) against speed-up, one panel per speed-up in `axes` that the records
    measure (FLOPs, wall clock), one line per method, each point labelled with its setting; the full model
    is a star at 1x with a dashed line at its score. Returns the panels drawn. Needs matplotlib."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    unknown = [x for x in axes if x not in X_LABELS]
    if unknown or not axes:
        raise ValueError(f"axes={list(axes)} must name some of {list(X_LABELS)}")
    full_accuracy = _full_accuracy(records)
    drawn = [x for x in axes if any(r.get("method") != "full" and r.get(x) is not None for r in records)]
    names = list(dict.fromkeys(r.get("method") or "?" for r in records if r.get("method") != "full"))
    colour = {m: f"C{i % 10}" for i, m in enumerate(names)}  # a method keeps its colour in every panel
    fig = Figure(figsize=(6.4 * len(drawn) or 6.4, 5.2))
    FigureCanvasAgg(fig)
    for i, x in enumerate(drawn):
        ax = fig.add_subplot(1, len(drawn), i + 1)
        methods: dict[str, list[dict]] = {}
        for r in records:
            if r.get("method") != "full" and r.get(x) is not None and _accuracy_of(r) is not None:
                methods.setdefault(r.get("method") or "?", []).append(r)
        for method, points in methods.items():
            points = sorted(points, key=lambda p: p[x])
            bars = _error_bars(points, full_accuracy)
            ax.errorbar([p[x] for p in points], [100 * _accuracy_of(p) for p in points],
                        yerr=None if bars is None else [[100 * v for v in side] for side in bars],
                        marker="o", capsize=3, color=colour[method], label=display_name(method))
            for p in points:
                ax.annotate(p.get("setting", ""), (p[x], 100 * _accuracy_of(p)), textcoords="offset points",
                            xytext=(4, 4), fontsize=7, alpha=0.8)
        if full_accuracy is not None:
            ax.axhline(100 * full_accuracy, color="gray", linestyle="--", linewidth=1)
            ax.plot([1.0], [100 * full_accuracy], marker="*", markersize=14, color="black", linestyle="none",
                    label="full model")
        ax.set_xlabel(X_LABELS[x])
        ax.set_ylabel(f"{y_label} (%)")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.text(0.01, 0.01, "Error bars: the 95% paired-bootstrap interval of the difference to the full model, drawn "
             "around the full model's score plus that difference.", fontsize=7)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    save_png(fig, path)
    return drawn
