"""`trbert attack`'s benchmark end to end on tiny models and a tiny letter-word data set: every attack,
the defence and the substitutions run and report; the tables and the plot are written."""

import json
import random
from dataclasses import replace

import pytest
import torch
from builders import TINY, LETTERS, letter_tokenizer, spread_policy, tiny_config, write_wordnet
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from transformers import BertConfig, BertForSequenceClassification

import trbert
from trbert.attacks import Victim
from trbert.benchmarks import attack, bbc, rivals


def letter_data(n, seed):
    rng = random.Random(seed)
    rows = [{"text": " ".join(rng.choice(LETTERS) for _ in range(rng.randrange(12, 40))), "label": rng.randrange(3)}
            for _ in range(n)]
    features = Features({"text": Value("string"), "label": ClassLabel(names=["a", "b", "c"])})
    return Dataset.from_list(rows, features=features)


@pytest.fixture
def run_folder(tmp_path):
    tokenizer = letter_tokenizer()
    shape = dict(vocab_size=len(tokenizer.get_vocab()), max_position_embeddings=160, num_labels=3)
    torch.manual_seed(0)
    tr = spread_policy(trbert.TRBertForSequenceClassification(
        tiny_config(**shape, reduction_layers=[1, 3], keep_threshold=0.8)).eval())
    plain = BertForSequenceClassification(BertConfig(**{**TINY, **shape}))
    plain.load_state_dict(tr.state_dict(), strict=False)
    for name, model in (("finetune", plain), ("alpha-1/joint", tr)):
        model.save_pretrained(tmp_path / name)
        tokenizer.save_pretrained(tmp_path / name)
    return tmp_path


def test_the_attack_benchmark_runs_every_part(run_folder, tmp_path, monkeypatch, capsys):
    splits = DatasetDict({"train": letter_data(20, 1), "validation": letter_data(5, 2), "test": letter_data(12, 3)})
    corpus = bbc.CORPORA["bbc"]
    monkeypatch.setitem(bbc.CORPORA, "bbc", bbc.Corpus(corpus.data, corpus.title, lambda seed=0: splits, corpus.slug))
    base = bbc.presets("bbc")["quick"]
    topk = rivals.selection_model(run_folder / "finetune", run_folder / "topk", reduction_layers=[1, 3],
                                  selection="attention_topk", keep_fractions=[0.5, 0.25])
    monkeypatch.setattr(attack, "models_of", lambda preset, run_dir, data, progress: (
        run_folder / "finetune", {("tr", "alpha=1"): run_folder / "alpha-1/joint"},
        {("attention_topk", "keep 0.5,0.25"): topk}, base))
    words = tmp_path / "wordnet"
    write_wordnet(words, {"noun": [("bak", "bal", "cal"), ("dek", "dik")], "verb": [("bil", "cel")]})
    preset = attack.AttackPreset(data="bbc", main_job="quick", alphas=(1.0,), layout=None, examples=4,
                                 substitution_examples=4, natural_examples=8, timed=2, defence_examples=2,
                                 max_cost_ratio=1.25)
    records = attack.run("bbc", str(run_folder), report=False, progress=False, preset=preset, wordnet=str(words))
    out = capsys.readouterr().out

    tr = [r for r in records if (r["method"], r["setting"]) == ("tr", "alpha=1")]
    cost = [r for r in tr if "cost_ratio_mean" in r and "defence" not in r]
    assert [r["attack"] for r in cost] == ["none", "slowdown-whitebox", "slowdown-blackbox", "append"]
    assert all(r["cost_ratio_mean"] >= 1.0 and r["cost_ratio_worst"] >= r["cost_ratio_mean"] - 1e-9 for r in cost)
    assert all(len(r["kept_fraction"]) == 2 and 0 < min(r["kept_fraction"]) <= 1 for r in cost)
    assert all(sum(r["kept_fraction"]) / 2 <= r["kept_fraction_worst"] <= 1 for r in cost)
    assert cost[3]["cost_ratio_mean"] > 1.0  # appended up to 128 tokens: texts of 12-40 words cost more
    natural = next(r for r in tr if r["attack"] == "none (natural)")
    assert natural["n_examples"] == 8 and natural["kept_fraction_worst"] >= natural["kept_fraction_p99"]

    defence = [r for r in tr if "defence" in r]
    assert [r["defence"] for r in defence] == ["as trained"]
    assert 0 < defence[0]["max_keep_ratio"] < 1 and defence[0]["bound_cost_ratio"] <= 1.25
    assert defence[0]["flops_speedup"] >= defence[0]["uncapped_flops_speedup"] > 1

    rival = [r["attack"] for r in records if r["method"] == "attention_topk"]
    assert rival == ["none", "slowdown-blackbox", "append", "none (natural)"]  # no policy: no gradient to follow

    robust = [r for r in records if r["attack"] == "substitution"]
    assert [r["method"] for r in robust] == ["full", "tr"]
    for r in robust:
        assert r["metric"] == "accuracy under attack" and r["score"] <= r["clean_score"]
        assert r["success_rate"] is None or 0 <= r["success_rate"] <= 1
    assert (run_folder / "bbc_attacks.json").is_file()
    assert "| tr alpha=1 | slowdown-blackbox |" in out and "words per success" in out

    # A second run takes each model's finished records from its parts instead of attacking again...
    def fail(*args, **kwargs):
        raise AssertionError("attacked again")

    monkeypatch.setattr(attack, "slowdown_records", fail)
    monkeypatch.setattr(attack, "substitution_attack", fail)
    again = attack.run("bbc", str(run_folder), report=False, progress=False, preset=preset, wordnet=str(words))
    assert [{k: v for k, v in r.items() if k != "minutes"} for r in again] == \
        [{k: v for k, v in r.items() if k != "minutes"} for r in records]
    summary = json.loads((run_folder / "bbc_attacks.json").read_text())["summary"]
    assert summary["parts_reused"] == 4  # two models' cost attacks, two models' substitutions
    section = attack.markdown_section([r for r in again if "cost_ratio_mean" in r and "defence" not in r],
                                      [], [], summary, "trbert attack", preset, bbc.CORPORA["bbc"], "bbc_attacks")
    assert "4 model part(s) (cost attacks, or substitutions) were found finished on disk" in section
    # ... but not those made with other settings
    with pytest.raises(AssertionError, match="attacked again"):
        attack.run("bbc", str(run_folder), report=False, progress=False, preset=replace(preset, examples=3),
                   wordnet=str(words))


def test_the_saving_taken_back_is_over_the_texts_together():
    records = [{"method": "tr", "setting": "a", "attack": "none", "macs": 40.0},
               {"method": "tr", "setting": "a", "attack": "append", "macs": 70.0},
               {"method": "tr", "setting": "a", "attack": "none (natural)", "cost_ratio_worst": 2.0},
               {"method": "ltp", "setting": "b", "attack": "none", "macs": 100.0},
               {"method": "ltp", "setting": "b", "attack": "slowdown-blackbox", "macs": 104.0}]
    attack.add_saving_taken_back(records, full_macs=100.0)
    # 30 of the 60 saved; a model that saves nothing on these texts has no saving to take back.
    assert [r.get("saving_taken_back", "-") for r in records] == [0.0, 0.5, "-", None, None]


def test_the_cap_is_the_largest_whose_bound_meets_the_target():
    tokenizer = letter_tokenizer()
    model = spread_policy(trbert.TRBertForSequenceClassification(tiny_config(
        vocab_size=len(tokenizer.get_vocab()), num_labels=3, reduction_layers=[1])).eval())
    texts = [" ".join(LETTERS[:20])] * 3
    victim = Victim(model, tokenizer, 64)
    clean = victim.measure(texts).macs
    cap, ratio = attack.choose_cap(model, tokenizer, texts, clean, 64, 1.25)
    assert cap is not None and ratio <= 1.25
    model.config.max_keep_ratio = cap + 0.05
    enc = tokenizer(texts, return_tensors="pt")
    assert float(trbert.attacks.cost_bound(model, enc["input_ids"], enc["attention_mask"]).mean() / clean.mean()) > 1.25
    assert model.config.max_keep_ratio == pytest.approx(cap + 0.05)
