"""`trbert attack`: slow-down attacks on the cost of TR models, the token cap as the defence, and
word-substitution attacks on the prediction (`trbert.attacks`), on the test split of the main job's data
with its models.

Per model and attack, over the same test examples: the kept fraction (mean over the reduction steps of
kept / length) and the multiply-adds executed, clean against attacked (mean and worst case), the share of
the model's saving over the full model that the attack takes back, and the wall clock of the attacked
texts against the clean ones at batch 1 (interleaved). Also the costliest natural test inputs.

The defence: for each TR model, the largest cap (`max_keep_ratio`, on a grid of 0.05) whose cost bound
(`trbert.attacks.cost_bound`) keeps the mean cost of the texts the edit attacks made within
`max_cost_ratio` of the clean mean, whatever words an attacker chooses (appending raises the cost through
the length, which only the maximum length bounds, for the full model alike); its accuracy price on the whole test split, with the cap applied as it
is and after the capped training stage (`train_capped`) for one model; and the black-box attack run
again against the capped model.

Robustness: WordNet-synonym substitutions (`trbert.attacks.substitution`) against the full model and
the TR models: attack success rate, words changed per success, accuracy under attack.
"""

from __future__ import annotations

import json
import random
import re
import shlex
import statistics
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from trbert import evaluation
from trbert.attacks import Victim, append, blackbox, cost_bound, substitution_attack, whitebox
from trbert.configuration import default_backbone
from trbert.io import write_json
from trbert.modeling import TRBertForSequenceClassification
from trbert.training import train_capped

from . import bbc as main_job
from .report import markdown_table, provenance, save_png, update_section

ATTACKS = {"slowdown-whitebox": whitebox, "slowdown-blackbox": blackbox, "append": append}


@dataclass(frozen=True)
class AttackPreset:
    data: str  # a key of the main job's CORPORA
    main_job: str  # the main job's preset whose models are attacked
    alphas: tuple[float, ...]  # TR models attacked (steps of the main job's default layout)
    layout: tuple[int, ...] | None  # their reduction layers (None: the preset's alphas of the paper's placement)
    examples: int = 200  # test examples attacked on cost
    substitution_examples: int = 100  # ... on the prediction
    natural_examples: int = 2000  # test examples searched for the costliest natural inputs
    fraction: float = 0.1  # words an edit attack may change
    candidates: int = 8  # proposals run per attack step
    timed: int = 32  # examples timed clean against attacked at batch 1
    max_cost_ratio: float = 1.25  # the defence's target: attacked mean cost over clean mean
    defence_examples: int = 50  # examples the black-box attack runs against the capped model
    trained_cap_alpha: float | None = None  # the model the capped training stage runs for


PRESETS = {
    "bbc": AttackPreset(data="bbc", main_job="quick", alphas=(0.5, 1.0, 2.0), layout=None, trained_cap_alpha=1.0),
    "20newsgroups": AttackPreset(data="20newsgroups", main_job="full", alphas=(1.0, 2.0), layout=(0, 3),
                                 trained_cap_alpha=2.0),
}


def models_of(preset: AttackPreset, run_dir: Path, data, progress: bool) -> tuple[Path, dict, dict, main_job.Preset]:
    """The full model's folder, {name: folder} of the TR models and of the rivals whose cost depends on
    the input (one attention top-k schedule, one LTP penalty, as `trbert bench` makes them, into the same
    folders), each trained first where missing; and the main job's preset as used."""
    from . import rivals

    base = main_job.presets(preset.data)[preset.main_job]
    if preset.layout is None:
        base = replace(base, alphas=list(preset.alphas), layouts={})
    else:
        base = replace(base, alphas=[], layouts={preset.layout: list(preset.alphas)})
    base = replace(base, capped={})
    if not progress:
        base = main_job.quiet(base)
    folders = main_job.train_all(base, run_dir, default_backbone(), data["train"],
                                 data["train"].features["label"].names)
    full_dir = Path(folders["full"])
    tr = {("tr", f"alpha={a:g}"): f for a, f in folders["tr"].items()}
    tr.update({("tr", f"alpha={a:g}"): f for (_, a), f in folders["layouts"].items()})
    bench = rivals.presets(preset.data)[preset.main_job]
    layers = list(base.reduction_layers or [1, 3])  # the rivals' steps, as `trbert bench` places them
    fractions = bench.topk[-1]
    topk = ",".join(f"{f:g}" for f in fractions)
    lambda_ = bench.ltp_lambdas[-1]
    others = {
        ("attention_topk", f"keep {topk}"): rivals.selection_model(full_dir, run_dir / "rivals" / f"topk-{topk}",
                                                          reduction_layers=layers, selection="attention_topk",
                                                          keep_fractions=list(fractions)),
        ("ltp", f"lambda={lambda_:g}"): rivals.ltp_model(full_dir, run_dir / "rivals" / f"ltp-{lambda_:g}", data["train"],
                                                    lambda_, bench, base.max_length, layers, 0, progress),
    }
    return full_dir, tr, others, base


def text_kept(measured) -> torch.Tensor:
    """[N] each text's kept fraction, the mean over the reduction steps of kept / length."""
    return measured.kept_lengths.double().mean(1) / measured.lengths


def label(key: tuple[str, str]) -> str:
    return f"{key[0]} {key[1]}"


def record(key: tuple[str, str], common: dict, **fields) -> dict:
    """A results record (every field of `evaluation.RECORD_FIELDS`) of the model `key` = (method, setting)."""
    return {**dict.fromkeys(evaluation.RECORD_FIELDS), **common, "method": key[0], "setting": key[1], **fields}


def add_saving_taken_back(records: list[dict], full_macs: float) -> None:
    """Set each cost record's `saving_taken_back`: the share of its model's saving over the full model
    (mean multiply-adds per text, `full_macs` on the clean texts) that the attack takes back, over the
    texts together (a text the model does not speed up would make a per-text share unbounded); None
    where the model saves nothing on these texts."""
    clean = {(r["method"], r["setting"]): r["macs"] for r in records if r["attack"] == "none"}
    for r in records:
        if "macs" in r:
            base = clean[(r["method"], r["setting"])]
            saving = full_macs - base
            r["saving_taken_back"] = round((r["macs"] - base) / saving, 4) if saving > 0 else None


def slowdown_records(key, victim: Victim, texts: list[str], preset: AttackPreset, attacks: dict, progress: bool,
                     **common) -> tuple[list[dict], torch.Tensor, dict]:
    """One record per attack (and one for the clean texts) of a model; the clean texts' multiply-adds; and
    {attack: (attacked texts, their multiply-adds)}."""
    clean = victim.measure(texts)
    records, attacked = [], {}
    base = {"n_examples": len(texts), "max_keep_ratio": victim.model.config.max_keep_ratio, "batch_size": 1}
    records.append(record(key, common, **base, attack="none", kept_fraction=evaluation.kept_fraction(clean),
                          kept_fraction_worst=round(float(text_kept(clean).max()), 4),
                          macs=float(clean.macs.mean()), cost_ratio_mean=1.0, cost_ratio_worst=1.0,
                          edits=0.0, queries=0.0, wall_ratio=1.0))
    for attack_name, attack in attacks.items():
        rng = random.Random(0)
        start = time.perf_counter()
        results = []
        for i, text in enumerate(texts):
            kwargs = {} if attack is whitebox else {"rng": rng}
            if attack is not append:
                kwargs["fraction"] = preset.fraction
            results.append(attack(victim, text, candidates=preset.candidates, **kwargs))
            if progress and (i + 1) % 50 == 0:
                print(f"  {label(key)}, {attack_name}: {i + 1}/{len(texts)} texts", flush=True)
        after = victim.measure([r.text for r in results])
        ratio = after.macs / clean.macs
        timed = evaluation.spread(len(texts), preset.timed)
        clean_s, attacked_s, _ = evaluation.wall_speedup(
            lambda: _one_by_one(victim, [texts[i] for i in timed]),
            lambda: _one_by_one(victim, [results[i].text for i in timed]))
        records.append(record(
            key, common, **base, attack=attack_name, kept_fraction=evaluation.kept_fraction(after),
            kept_fraction_worst=round(float(text_kept(after).max()), 4), macs=float(after.macs.mean()),
            cost_ratio_mean=round(float(after.macs.mean() / clean.macs.mean()), 4),
            cost_ratio_worst=round(float(ratio.max()), 4),
            edits=round(statistics.mean(r.edits for r in results), 2),
            queries=round(statistics.mean(r.queries for r in results), 1),
            wall_ratio=round(attacked_s / clean_s, 4), minutes=round((time.perf_counter() - start) / 60, 2)))
        attacked[attack_name] = ([r.text for r in results], after.macs)
    return records, clean.macs, attacked


def _one_by_one(victim: Victim, texts: list[str]) -> None:
    replace(victim, batch_size=1).measure(texts)


def natural_record(key, victim: Victim, texts: list[str], **common) -> dict:
    """The costliest natural inputs among `texts`: the worst and the 99th percentile kept fraction."""
    measured = victim.measure(texts)
    kept = text_kept(measured)
    return record(key, common, attack="none (natural)", n_examples=len(texts), kept_fraction=evaluation.kept_fraction(measured),
                  max_keep_ratio=victim.model.config.max_keep_ratio,
                  kept_fraction_worst=round(float(kept.max()), 4), kept_fraction_p99=round(float(kept.quantile(0.99)), 4),
                  cost_ratio_worst=round(float(measured.macs.max() / measured.macs.mean()), 4))


def choose_cap(model, tokenizer, attacked_texts: list[str], clean_macs: torch.Tensor, max_length: int,
               target: float) -> tuple[float | None, float]:
    """The largest cap on a 0.05 grid whose bound on the attacked texts' mean cost is within `target` x the
    clean mean cost, and that bound's ratio (None when no cap on the grid is)."""
    enc = tokenizer(attacked_texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    original = model.config.max_keep_ratio
    try:
        for step in range(20, 0, -1):
            model.config.max_keep_ratio = step / 20
            ratio = float(cost_bound(model, enc["input_ids"], enc["attention_mask"]).mean() / clean_macs.mean())
            if ratio <= target:
                return step / 20, ratio
    finally:
        model.config.max_keep_ratio = original
    return None, float("nan")


def run(data: str = "bbc", run_dir: str | None = None, report: bool = False, progress: bool = True,
        command: str | None = None, preset: AttackPreset | None = None, wordnet: str | None = None,
        seed: int = 0) -> list[dict]:
    from trbert.data.wordnet import WordNet, wordnet_folder

    preset = preset or PRESETS[data]
    corpus = main_job.CORPORA[preset.data]
    main = main_job.presets(preset.data)[preset.main_job]
    run_path = Path(run_dir or f"runs/{corpus.slug}-{preset.main_job}")
    start = time.perf_counter()
    splits = corpus.load(seed=0)
    full_dir, tr_dirs, rival_dirs, base = models_of(preset, run_path, splits, progress)
    test = splits["test"]
    texts_all, labels_all = list(test["text"]), list(test["label"])
    chosen = evaluation.spread(len(texts_all), preset.examples)
    texts = [texts_all[i] for i in chosen]
    tokenizer = AutoTokenizer.from_pretrained(full_dir)
    full = AutoModelForSequenceClassification.from_pretrained(full_dir).eval()
    full_victim = Victim(full, tokenizer, main.max_length)
    full_macs = full_victim.measure(texts).macs
    common = {"model": main_job.MODEL_NAME, "data": corpus.data, "split": "test", "max_length": main.max_length,
              "edit_fraction": preset.fraction}
    records, defence = [], []
    natural = evaluation.spread(len(texts_all), preset.natural_examples)
    victims = {key: Victim(TRBertForSequenceClassification.from_pretrained(folder).eval(), tokenizer, main.max_length)
               for key, folder in {**tr_dirs, **rival_dirs}.items()}
    models = {"full": full_dir, **{label(k): folder for k, folder in {**tr_dirs, **rival_dirs}.items()}}
    parts = Parts(run_path / f"{corpus.slug}_attacks-parts", {
        "preset": asdict(preset), "seed": seed, "models": {name: _stamp(folder) for name, folder in models.items()}})
    reused = 0  # models whose records were found finished on disk
    for key, victim in victims.items():
        done = parts.get("cost", key)
        if done is not None:
            reused += 1
            print(f"{label(key)}: measured before, kept ({parts.folder})", flush=True)
            records += done["records"]
            defence += done["defence"]
            continue
        print(f"{label(key)}: attacking the cost of {len(texts)} test texts", flush=True)
        attacks = ATTACKS if victim.model.base_model.encoder.policy else {
            k: v for k, v in ATTACKS.items() if v is not whitebox}
        found, clean_macs, attacked = slowdown_records(key, victim, texts, preset, attacks, progress, **common)
        found.append(natural_record(key, victim, [texts_all[i] for i in natural], **common))
        guarded = []
        if key in tr_dirs:
            guarded = defence_records(key, victim, tr_dirs[key], full_dir, splits, clean_macs, attacked, texts,
                                      preset, base, progress, seed, **common)
        parts.put("cost", key, {"records": found, "defence": guarded})
        records += found
        defence += guarded
    add_saving_taken_back(records, float(full_macs.mean()))

    print(f"word substitutions against {len(tr_dirs) + 1} models", flush=True)
    wn = WordNet(wordnet or wordnet_folder())
    chosen_sub = evaluation.spread(len(texts_all), preset.substitution_examples)
    robustness = []
    for key, victim in {("full", "fine-tuned"): full_victim, **{k: victims[k] for k in tr_dirs}}.items():
        done = parts.get("substitution", key)
        reused += done is not None
        if done is None:
            results = [substitution_attack(victim, texts_all[i], labels_all[i], wn.synonyms, fraction=preset.fraction)
                       for i in chosen_sub]
            done = robustness_record(key, results, **common)
            parts.put("substitution", key, done)
        robustness.append(done)
    summary = {"minutes": round((time.perf_counter() - start) / 60, 1), "parts_reused": reused}
    all_records = records + defence + robustness
    command = command or shlex.join(["trbert", "attack", "--data", preset.data])
    name = f"{corpus.slug}_attacks"
    outputs = [run_path / f"{name}.json"] + ([Path(f"docs/results/{name}.json")] if report else [])
    for path in outputs:
        path.parent.mkdir(parents=True, exist_ok=True)
        evaluation.write_results_json(path, name, command, all_records, summary=summary)
    print(cost_table(records))
    print(defence_table(defence))
    print(robustness_table(robustness))
    if report:
        plot(records, f"docs/results/{name}.png", corpus.title)
        update_section("docs/RESULTS.md", f"attacks-{corpus.slug}",
                       markdown_section(records, defence, robustness, summary, command, preset, corpus, name))
    return all_records


def _stamp(folder: Path) -> list:
    """A model folder and when its weights were written: a retrained model makes the parts stale."""
    weights = Path(folder) / "model.safetensors"
    return [str(folder), weights.stat().st_mtime_ns if weights.exists() else None]


class Parts:
    """Each model's finished records in a folder, so that an interrupted run goes on from the models it had
    not finished. A part counts only if it was made with the same settings (`fingerprint`)."""

    def __init__(self, folder: Path, fingerprint: dict):
        self.folder, self.fingerprint = folder, json.loads(json.dumps(fingerprint))

    def _path(self, kind: str, key: tuple[str, str]) -> Path:
        return self.folder / f"{kind}-{re.sub(r'[^A-Za-z0-9.,=-]+', '_', label(key))}.json"

    def get(self, kind: str, key: tuple[str, str]):
        path = self._path(kind, key)
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return stored.get("value") if stored.get("fingerprint") == self.fingerprint else None

    def put(self, kind: str, key: tuple[str, str], value) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        write_json(self._path(kind, key), {"fingerprint": self.fingerprint, "value": value})


def defence_records(key, victim, folder, full_dir, splits, clean_macs, attacked, texts, preset, base, progress,
                    seed, **common) -> list[dict]:
    """The cap that bounds the attacked cost, its accuracy price (as it is, and trained for one model), and
    the black-box attack against the capped model."""
    model, tokenizer, max_length = victim.model, victim.tokenizer, victim.max_length
    # The edit attacks: appending raises the cost through the length, which the cap does not bound (the
    # maximum length does, for the full model alike).
    versions = [v for name, (v, _) in attacked.items() if name != "append"]
    costs = torch.stack([macs for name, (_, macs) in attacked.items() if name != "append"])  # [attacks, N]
    worst = [versions[int(a)][i] for i, a in enumerate(costs.argmax(0))]  # each text's costliest edit attack
    cap, bound_ratio = choose_cap(model, tokenizer, worst, clean_macs, max_length, preset.max_cost_ratio)
    if cap is None:
        return []
    test = splits["test"]
    texts_all, labels = list(test["text"]), torch.tensor(test["label"])
    variants = [("as trained", folder)]
    if preset.trained_cap_alpha is not None and key == ("tr", f"alpha={preset.trained_cap_alpha:g}"):
        out = Path(folder).parent / f"capped-{cap:g}"
        settings = replace(base.capped_stage, max_length=max_length, seed=seed)
        main_job.StageClock(Path(folder).parent).run(out, train_capped, str(folder), str(full_dir), splits["train"],
                                                     out, settings, cap)
        variants.append(("capped stage", out))
    uncapped = evaluation.predict_batches(model, tokenizer, texts_all, max_length, 32, progress=progress)
    rows = []
    for how, path in variants:
        capped = TRBertForSequenceClassification.from_pretrained(path).eval()
        capped.config.max_keep_ratio = cap
        pred = evaluation.predict_batches(capped, tokenizer, texts_all, max_length, 32, progress=progress)
        capped_victim = Victim(capped, tokenizer, max_length)
        sample = evaluation.spread(len(texts), preset.defence_examples)
        rng = random.Random(0)
        again = [blackbox(capped_victim, texts[i], fraction=preset.fraction, candidates=preset.candidates, rng=rng)
                 for i in sample]
        full_cost = float(evaluation.model_macs(capped, pred.lengths, None).sum())
        rows.append(record(
            key, common, attack="slowdown-blackbox", defence=how, max_keep_ratio=cap, n_examples=len(texts_all),
            batch_size=32, metric="accuracy", score=round(float((pred.pred == labels).double().mean()), 4),
            uncapped_score=round(float((uncapped.pred == labels).double().mean()), 4),
            bound_cost_ratio=round(bound_ratio, 4), attacked_examples=len(sample),
            cost_ratio_mean=round(sum(r.macs for r in again) / float(clean_macs[sample].sum()), 4),
            flops_speedup=round(full_cost / float(pred.macs.sum()), 4),
            uncapped_flops_speedup=round(full_cost / float(uncapped.macs.sum()), 4)))
    return rows


def robustness_record(key, results, **common) -> dict:
    right = [r for r in results if r.clean_correct]
    won = [r for r in right if r.success]
    kept = [r.kept for r in right if r.kept is not None]
    return record(key, common, attack="substitution", n_examples=len(results), metric="accuracy under attack",
                  score=round((len(right) - len(won)) / len(results), 4),
                  clean_score=round(len(right) / len(results), 4),
                  success_rate=round(len(won) / len(right), 4) if right else None,
                  words_per_success=round(statistics.mean(r.changed for r in won), 2) if won else None,
                  queries=round(statistics.mean(r.queries for r in right), 1) if right else None,
                  kept_fraction_attacked=round(statistics.mean(kept), 4) if kept else None)


# ---------------------------------------------------------------------------- reporting
def _mean_kept(r: dict) -> float:
    return sum(r["kept_fraction"]) / len(r["kept_fraction"])


def cost_table(records: list[dict]) -> str:
    def x(key):
        return lambda r: "" if r.get(key) is None else f"{r[key]:.2f}x"

    return markdown_table(records, [
        ("model", ":--", lambda r: f"{r['method']} {r['setting']}"), ("attack", ":--", lambda r: r["attack"]),
        ("kept (mean)", "--:", lambda r: f"{100 * _mean_kept(r):.1f}%"),
        ("kept (worst)", "--:", lambda r: f"{100 * r['kept_fraction_worst']:.1f}%"),
        ("cost vs clean (mean)", "--:", x("cost_ratio_mean")), ("cost vs clean (worst)", "--:", x("cost_ratio_worst")),
        ("saving taken back", "--:", lambda r: "" if r.get("saving_taken_back") is None else
         f"{100 * r['saving_taken_back']:.1f}%"),
        ("wall vs clean, batch 1", "--:", x("wall_ratio")),
        ("words changed", "--:", lambda r: "" if r.get("edits") is None else f"{r['edits']:.1f}"),
    ])


def defence_table(rows: list[dict]) -> str:
    return markdown_table(rows, [
        ("model", ":--", lambda r: f"{r['method']} {r['setting']}"), ("policies", ":--", lambda r: r["defence"]),
        ("cap", "--:", lambda r: f"{r['max_keep_ratio']:g}"),
        ("bound on attacked cost vs clean", "--:", lambda r: f"{r['bound_cost_ratio']:.2f}x"),
        ("black-box attacked cost vs clean", "--:", lambda r: f"{r['cost_ratio_mean']:.2f}x"),
        ("accuracy, capped (no cap)", "--:", lambda r: f"{100 * r['score']:.2f} ({100 * r['uncapped_score']:.2f})"),
        ("FLOPs speed-up, capped (no cap)", "--:",
         lambda r: f"{r['flops_speedup']:.2f}x ({r['uncapped_flops_speedup']:.2f}x)"),
    ])


def robustness_table(rows: list[dict]) -> str:
    return markdown_table(rows, [
        ("model", ":--", lambda r: f"{r['method']} {r['setting']}"),
        ("clean accuracy", "--:", lambda r: f"{100 * r['clean_score']:.1f}"),
        ("accuracy under attack", "--:", lambda r: f"{100 * r['score']:.1f}"),
        ("success rate", "--:", lambda r: "" if r["success_rate"] is None else f"{100 * r['success_rate']:.1f}%"),
        ("words per success", "--:", lambda r: "" if r["words_per_success"] is None else f"{r['words_per_success']:.1f}"),
    ])


def plot(records: list[dict], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in records if r["attack"] != "none (natural)"]
    names = list(dict.fromkeys(f"{r['method']} {r['setting']}" for r in shown))
    attacks = list(dict.fromkeys(r["attack"] for r in shown))
    fig, ax = plt.subplots(figsize=(8, 3.8))
    width = 0.8 / len(attacks)
    for j, attack in enumerate(attacks):
        values = [next((_mean_kept(r) for r in shown if f"{r['method']} {r['setting']}" == n and r["attack"] == attack), 0)
                  for n in names]
        ax.bar([i + j * width for i in range(len(names))], [100 * v for v in values], width, label=attack)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(names))], names, rotation=15, fontsize=8)
    ax.set_ylabel("tokens kept, mean over steps (%)")
    ax.set_title(f"{title}: tokens kept, clean and attacked")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, path)


def markdown_section(records, defence, robustness, summary, command, preset, corpus, name) -> str:
    natural = next((r["n_examples"] for r in records if r["attack"] == "none (natural)"), 0)
    return "\n".join([
        f"<!-- attacks-{corpus.slug}:begin -->",
        f"## Attacks on {corpus.title}: the cost of TR models, the cap as the defence, word substitutions",
        "",
        f"{corpus.title} test, {main_job.MODEL_NAME}, the main job's models (`trbert run`, preset "
        f"{preset.main_job}, max length {records[0]['max_length']}). Cost attacks on {preset.examples} test texts "
        "spread over the split: at most "
        f"{100 * preset.fraction:g}% of the visible words substituted or inserted (white-box: gradient of the keep "
        "probabilities; black-box: greedy search that sees only the cost), or words appended up to the maximum "
        "length; 'saving taken back': the share of the model's multiply-adds saving over the full model (on the "
        "clean texts, all together) that the attack removes; wall clock of the attacked texts over the clean ones at batch 1. Natural: the costliest "
        f"of {natural} test texts. Substitutions: WordNet synonyms, at most "
        f"{100 * preset.fraction:g}% of the visible words, {preset.substitution_examples} test texts.",
        "",
        *provenance(command, evaluation.machine()),
        f"- Time: {summary['minutes']:.1f} min" + (
            f" in the last run; {summary['parts_reused']} model part(s) (cost attacks, or substitutions) were found "
            "finished on disk from an earlier run of the same command and reused" if summary.get("parts_reused") else ""),
        "",
        cost_table(records),
        "",
        "The cap that bounds the attacked cost (the largest `max_keep_ratio` on a 0.05 grid whose cost bound keeps "
        f"the attacked texts' mean cost within {preset.max_cost_ratio:g}x the clean mean), its accuracy on the whole "
        "test split, and the black-box attack run again against the capped model:",
        "",
        defence_table(defence),
        "",
        robustness_table(robustness),
        "",
        f"![tokens kept, clean and attacked](results/{name}.png)",
        f"<!-- attacks-{corpus.slug}:end -->",
    ])
