"""The training recipe on a tiny synthetic task: one marked token decides the label among filler.

Labels: "red" or "blue" when that marker word occurs (once), "none" when neither does; so dropping
either marker loses the label (with only two classes, a policy could drop one marker and read its
absence).

After policy training with alpha > 0 the model keeps the marked token, drops most filler and stays
accurate; a larger alpha keeps fewer tokens. The reduction step acts on the embeddings (before layer
0), so no layer has mixed the marker into other tokens before the policy decides. This checks the
REINFORCE signs and baseline in seconds.
"""

import json
import shutil
from dataclasses import replace

import pytest
import torch
from builders import LABELS, MARKERS, keep_stats, synthetic
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, BertTokenizerFast

import trbert
from trbert import training


def test_finetuned_backbone_solves_the_task(finetuned):
    accuracy, *_ = keep_stats(finetuned, synthetic(200, seed=2))
    assert accuracy >= 0.95


def test_policy_learns_to_keep_the_marker_and_drop_filler(finetuned, tmp_path):
    test = synthetic(200, seed=2)
    results = {}
    for alpha in (0.02, 0.5):
        settings = training.StageSettings(epochs=3, learning_rate=1e-2, batch_size=32, max_length=64,
                                          samples=8, alpha=alpha, save_steps=1000)
        out = training.train_policy(finetuned, synthetic(300, seed=3), tmp_path / f"policy-{alpha}", settings,
                                    reduction_layers=[0])
        results[alpha] = keep_stats(out, test)
    accuracy, marker_kept, other_kept, fraction = results[0.5]
    assert accuracy >= 0.9 and marker_kept >= 0.95 and other_kept <= 0.2, results
    assert results[0.02][0] >= 0.9 and results[0.02][1] >= 0.95, results
    assert fraction < 0.8 * results[0.02][3], results  # the larger alpha keeps fewer tokens


def test_joint_stage_and_checkpoints_load_through_auto(finetuned, tmp_path):
    settings = training.StageSettings(epochs=1, learning_rate=1e-2, batch_size=32, max_length=64, samples=4,
                                      alpha=1.0, save_steps=5, keep_checkpoints=True)
    policy = training.train_policy(finetuned, synthetic(160, seed=4), tmp_path / "policy", settings,
                                   reduction_layers=[0])
    settings.learning_rate = 1e-4
    joint = training.train_joint(policy, finetuned, synthetic(160, seed=5), tmp_path / "joint", settings)
    for folder in (finetuned, policy, joint):
        model = AutoModelForSequenceClassification.from_pretrained(folder)
        assert model.config.num_labels == 3
    assert isinstance(AutoModelForSequenceClassification.from_pretrained(joint),
                      trbert.TRBertForSequenceClassification)
    # Asked to keep them, every stage left resumable checkpoints; the last one is complete.
    last = training.last_complete_checkpoint(tmp_path / "joint-checkpoints")
    state = json.loads((tmp_path / "joint-checkpoints" / last.split("/")[-1] / "trainer_state.json").read_text())
    assert state["global_step"] == 5
    assert not list(tmp_path.glob(".joint.*"))  # no staging folder left behind


def test_attention_dropout_setting_reaches_the_trained_model(backbone, finetuned, tmp_path):
    short = dict(epochs=1, learning_rate=1e-4, batch_size=16, max_length=64, samples=2, save_steps=1000)
    assert AutoConfig.from_pretrained(backbone).attention_probs_dropout_prob == 0.1  # BERT's default
    out = training.finetune(backbone, synthetic(16, seed=6), tmp_path / "ft",
                            training.StageSettings(**short, attention_dropout=0.25), label_names=LABELS)
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.attention_probs_dropout_prob == 0.25
    assert model.bert.encoder.layer[0].attention.self.dropout.p == 0.25
    # The next stage keeps the checkpoint's rate unless it names one.
    policy = training.train_policy(str(out), synthetic(16, seed=6), tmp_path / "policy",
                                   training.StageSettings(**short), reduction_layers=[0])
    assert AutoConfig.from_pretrained(policy).attention_probs_dropout_prob == 0.25
    joint = training.train_joint(str(policy), finetuned, synthetic(16, seed=6), tmp_path / "joint",
                                 training.StageSettings(**short, attention_dropout=0.0))
    assert AutoConfig.from_pretrained(joint).attention_probs_dropout_prob == 0.0
    with pytest.raises(ValueError, match="attention_dropout"):
        training.finetune(backbone, synthetic(16, seed=6), tmp_path / "bad",
                          training.StageSettings(**short, attention_dropout=1.0), label_names=LABELS)
    assert not (tmp_path / "bad").exists()


def test_bf16_setting_trains_under_autocast_and_saves_fp32_weights(backbone, finetuned, tmp_path):
    short = dict(epochs=1, learning_rate=1e-4, batch_size=16, max_length=64, samples=2, save_steps=1000, bf16=True)
    seen = []  # (module class, in a policy network, autocast on, its dtype) for every module call while training
    depth = [0]  # policy networks entered

    def enter(module, args):
        depth[0] += isinstance(module, trbert.strategies.KeepPolicy)

    def record(module, args, output):
        depth[0] -= isinstance(module, trbert.strategies.KeepPolicy)
        seen.append((type(module).__name__, depth[0] > 0, torch.is_autocast_enabled("cpu"),
                     torch.get_autocast_dtype("cpu")))

    pre = torch.nn.modules.module.register_module_forward_pre_hook(enter)
    handle = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        ft = training.finetune(backbone, synthetic(16, seed=6), tmp_path / "ft", training.StageSettings(**short),
                               label_names=LABELS)
        seen_ft, seen[:] = list(seen), []
        policy = training.train_policy(ft, synthetic(16, seed=6), tmp_path / "policy",
                                       training.StageSettings(**short), reduction_layers=[0])
        seen_policy, seen[:] = list(seen), []
        training.train_policy(ft, synthetic(16, seed=6), tmp_path / "policy-fp32",
                              training.StageSettings(**{**short, "bf16": False}), reduction_layers=[0])
    finally:
        pre.remove()
        handle.remove()
    for calls in (seen_ft, seen_policy):
        linear = [(on, dtype) for name, in_policy, on, dtype in calls if name == "Linear" and not in_policy]
        assert linear and all(on and dtype == torch.bfloat16 for on, dtype in linear)
    # The policy networks run in fp32 inside the autocast region.
    policy_linear = [on for name, in_policy, on, _ in seen_policy if name == "Linear" and in_policy]
    assert policy_linear and not any(policy_linear)
    assert seen and not any(on for _, _, on, _ in seen)  # without bf16: no autocast
    for folder in (ft, policy):
        model = AutoModelForSequenceClassification.from_pretrained(folder)
        assert {p.dtype for p in model.parameters()} == {torch.float32}




def test_a_stage_trains_the_same_model_whatever_ran_before_in_the_process(backbone, tmp_path):
    from safetensors.torch import load_file

    short = dict(epochs=1, learning_rate=1e-3, batch_size=16, max_length=64, samples=2, save_steps=1000)
    data = synthetic(32, seed=6)
    weights = {}
    for run in ("first", "second"):
        torch.rand(7)  # whatever else draws from the random state in between
        ft = training.finetune(backbone, data, tmp_path / run / "ft", training.StageSettings(**short), label_names=LABELS)
        torch.rand(3)
        policy = training.train_policy(str(ft), data, tmp_path / run / "policy", training.StageSettings(**short),
                                       reduction_layers=[0])
        weights[run] = [load_file(str(folder / "model.safetensors")) for folder in (ft, policy)]
    for first, second in zip(weights["first"], weights["second"]):
        assert first.keys() == second.keys()
        assert all(torch.equal(first[k], second[k]) for k in first)
    other = training.finetune(backbone, data, tmp_path / "seed-1", training.StageSettings(**short, seed=1),
                              label_names=LABELS)
    assert not torch.equal(load_file(str(other / "model.safetensors"))["classifier.weight"],
                           weights["first"][0]["classifier.weight"])


def test_capped_stage_keeps_within_the_cap_and_tunes_only_the_backbone(finetuned, tmp_path):
    settings = training.StageSettings(epochs=3, learning_rate=1e-2, batch_size=32, max_length=64, samples=8,
                                      alpha=0.02, save_steps=1000)
    policy = training.train_policy(finetuned, synthetic(300, seed=3), tmp_path / "policy", settings,
                                   reduction_layers=[0])
    test = synthetic(200, seed=2)
    *_, uncapped = keep_stats(policy, test)
    assert uncapped > 0.5  # a small alpha keeps most tokens: the cap below binds
    settings = training.StageSettings(epochs=2, learning_rate=1e-4, batch_size=32, max_length=64, save_steps=1000)
    capped = training.train_capped(policy, finetuned, synthetic(300, seed=5), tmp_path / "capped", settings,
                                   max_keep_ratio=0.25)
    model = AutoModelForSequenceClassification.from_pretrained(capped)
    assert isinstance(model, trbert.TRBertForSequenceClassification) and model.config.max_keep_ratio == 0.25
    before = trbert.TRBertForSequenceClassification.from_pretrained(policy).state_dict()
    after = model.state_dict()
    for name, value in after.items():
        changed = not torch.equal(value, before[name])
        if ".policy." in name:
            assert not changed, name  # the policies are frozen
    assert any(not torch.equal(v, before[k]) for k, v in after.items() if ".layer." in k)
    accuracy, marker_kept, _, fraction = keep_stats(capped, test)
    tok = BertTokenizerFast.from_pretrained(capped)
    lengths = tok(list(test["text"]), return_tensors="pt", padding=True)["attention_mask"].sum(1).float()
    # At most floor(0.25 n) tokens per example, plus [CLS] which every step keeps.
    assert fraction <= (torch.floor(0.25 * lengths + 1e-6) + 1).div(lengths).mean().item() + 1e-6
    assert marker_kept >= 0.95 and accuracy >= 0.9, (accuracy, marker_kept, fraction)


def test_distillation_computes_the_teacher_logits_once_per_training_set(finetuned, tmp_path, monkeypatch):
    data = synthetic(48, seed=6)
    tok = BertTokenizerFast.from_pretrained(finetuned)
    logits = training.teacher_logits(finetuned, training.tokenize_dataset(data, tok, 64), tok, progress=False)
    teacher = AutoModelForSequenceClassification.from_pretrained(finetuned).eval()
    with torch.no_grad():
        expected = teacher(**tok(list(data["text"]), truncation=True, max_length=64, padding=True,
                                 return_tensors="pt")).logits
    assert logits.shape == (48, 3) and torch.allclose(logits, expected, atol=1e-5)
    # The same rows tokenized again (as the next stage does): the same tensor, the teacher not run again.
    assert training.teacher_logits(finetuned, training.tokenize_dataset(data, tok, 64), tok, progress=False) is logits
    with pytest.raises(ValueError, match="per-token"):
        training.teacher_logits(finetuned, training.tokenize_dataset(data, tok, 64), tok, task="token-classification")
    # A joint stage on those rows distils from them: the teacher's forward never runs.
    settings = training.StageSettings(epochs=1, learning_rate=1e-2, batch_size=16, max_length=64, samples=2,
                                      save_steps=1000)
    policy = training.train_policy(finetuned, data, tmp_path / "policy", settings, reduction_layers=[0])

    def no_forward(*args, **kwargs):
        raise AssertionError("the teacher ran during training")

    monkeypatch.setattr(type(teacher), "forward", no_forward)
    training.train_joint(policy, finetuned, data, tmp_path / "joint", settings)
    assert training.stage_done(tmp_path / "joint")






def test_multi_label_stages_on_a_tiny_task(backbone, tmp_path):
    """Two markers, each a label of its own (either, both or none): binary cross-entropy per class."""
    import random

    from datasets import ClassLabel, Dataset, Features, Sequence, Value

    rng = random.Random(0)
    rows = []
    for _ in range(300):
        words = [rng.choice([f"w{i}" for i in range(40)]) for _ in range(20)]
        labels = [c for c in (0, 1) if rng.random() < 0.5]
        for c in labels:
            words[rng.randrange(20)] = MARKERS[c]
        labels = sorted({c for c in (0, 1) if MARKERS[c] in words})
        rows.append({"text": " ".join(words), "labels": labels})
    data = Dataset.from_list(rows, features=Features({"text": Value("string"),
                                                      "labels": Sequence(ClassLabel(names=MARKERS))}))
    quiet = {"disable_tqdm": True}
    training.finetune(backbone, data, tmp_path / "ft", training.StageSettings(
        epochs=15, learning_rate=3e-3, batch_size=32, max_length=32, save_steps=1000, extra=quiet),
        label_names=MARKERS, task="multi-label")
    training.train_policy(str(tmp_path / "ft"), data, tmp_path / "policy", training.StageSettings(
        epochs=2, learning_rate=1e-2, batch_size=32, max_length=32, samples=4, alpha=0.5, save_steps=1000,
        extra=quiet), task="multi-label", reduction_layers=[0])
    training.train_joint(str(tmp_path / "policy"), str(tmp_path / "ft"), data, tmp_path / "joint",
                         training.StageSettings(epochs=1, learning_rate=1e-4, batch_size=32, max_length=32, samples=2,
                                                alpha=0.5, save_steps=1000, extra=quiet), task="multi-label")
    model = trbert.TRBertForSequenceClassification.from_pretrained(tmp_path / "joint").eval()
    assert model.config.problem_type == "multi_label_classification"
    tok = BertTokenizerFast.from_pretrained(tmp_path / "joint")
    test = rows[:100]
    enc = tok([r["text"] for r in test], return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(**enc)
    predicted = (out.logits > 0).tolist()
    exact = sum(p == [c in r["labels"] for c in (0, 1)] for p, r in zip(predicted, test)) / len(test)
    assert exact >= 0.9 and out.kept_fraction.mean() < 0.8, (exact, out.kept_fraction.mean())






def test_head_learning_rate_trains_the_head_alone_and_resumes(backbone, tmp_path, monkeypatch):
    settings = training.StageSettings(epochs=1, learning_rate=1e-9, head_learning_rate=1e-2, batch_size=16,
                                      max_length=64, save_steps=1, keep_checkpoints=True)
    out = training.finetune(backbone, synthetic(32, seed=6), tmp_path / "ft", settings, label_names=LABELS)
    tuned = AutoModelForSequenceClassification.from_pretrained(out)
    head = training.head_parameters(tuned)
    assert set(head) == {"bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight", "classifier.bias"}
    source = AutoModel.from_pretrained(backbone).state_dict()
    tuned_weights = tuned.state_dict()
    moved = {n: (tuned_weights[n] - source[n.removeprefix("bert.")]).abs().max().item()
             for n in tuned_weights if n.startswith("bert.")}
    assert max(moved[n] for n in moved if n not in head) < 1e-6  # the backbone at lr 1e-9: two steps, no visible move
    assert moved["bert.pooler.dense.weight"] > 1e-3  # the head at lr 1e-2
    # The split optimizer resumes from its checkpoint: a longer run continues from step 2.
    shutil.rmtree(out)
    resumed_from, train = [], training.FinetuneTrainer.train
    monkeypatch.setattr(training.FinetuneTrainer, "train",
                        lambda self, **kw: resumed_from.append(kw.get("resume_from_checkpoint")) or train(self, **kw))
    training.finetune(backbone, synthetic(32, seed=6), tmp_path / "ft", replace(settings, epochs=2), label_names=LABELS)
    assert resumed_from == [str(tmp_path / "ft-checkpoints" / "checkpoint-2")]
    state = json.loads((tmp_path / "ft-checkpoints" / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    with pytest.raises(ValueError, match="head_learning_rate"):
        training.finetune(backbone, synthetic(16, seed=6), tmp_path / "bad",
                          replace(settings, head_learning_rate=0.0), label_names=LABELS)
