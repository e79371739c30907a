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
from builders import LABELS, MARKERS, synthetic, tiny_batch, tiny_config
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, BertTokenizerFast

import trbert
from trbert import training


@pytest.fixture(scope="module")
def finetuned(backbone, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "finetune"
    settings = training.StageSettings(epochs=12, learning_rate=2e-3, batch_size=32, max_length=64, save_steps=1000)
    training.finetune(backbone, synthetic(600, seed=1), out, settings, label_names=LABELS)
    return str(out)


def keep_stats(model_dir, data):
    model = trbert.TRBertForSequenceClassification.from_pretrained(model_dir).eval()
    tok = BertTokenizerFast.from_pretrained(model_dir)
    enc = tok(list(data["text"]), return_tensors="pt", padding=True)
    marker_ids = torch.tensor(tok.convert_tokens_to_ids(MARKERS))
    captured = []
    original = model.bert.encoder._select

    def spy(step, tokens, input_ids, action, sample):
        keep, *rest = original(step, tokens, input_ids, action, sample)
        is_marker = torch.isin(input_ids[tokens.example, tokens.position], marker_ids)
        captured.append((keep[is_marker].float().mean().item(), keep[~is_marker].float().mean().item()))
        return (keep, *rest)

    model.bert.encoder._select = spy
    with torch.no_grad():
        out = model(**enc)
    accuracy = (out.logits.argmax(-1) == torch.tensor(list(data["label"]))).float().mean().item()
    marker_kept, other_kept = captured[0]
    return accuracy, marker_kept, other_kept, out.kept_fraction.mean().item()


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
                                      alpha=1.0, save_steps=5)
    policy = training.train_policy(finetuned, synthetic(160, seed=4), tmp_path / "policy", settings,
                                   reduction_layers=[0])
    settings.learning_rate = 1e-4
    joint = training.train_joint(policy, finetuned, synthetic(160, seed=5), tmp_path / "joint", settings)
    for folder in (finetuned, policy, joint):
        model = AutoModelForSequenceClassification.from_pretrained(folder)
        assert model.config.num_labels == 3
    assert isinstance(AutoModelForSequenceClassification.from_pretrained(joint),
                      trbert.TRBertForSequenceClassification)
    # Every stage left resumable checkpoints; the last one is complete.
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


def test_keep_log_prob_is_computed_in_fp32_under_bf16_autocast():
    # Confident policies (p near 1) and actions that skip every token: in bfloat16 1 - p rounds to 0.
    model = trbert.TRBertForSequenceClassification(tiny_config(reduction_layers=[0, 2], num_labels=3)).train()
    for policy in model.bert.encoder.policy:
        torch.nn.init.constant_(policy.out.bias, 12.0)
    ids, mask = tiny_batch([20, 13, 30, 7])
    skip_all = [torch.zeros_like(ids)] * 2
    reference = model(input_ids=ids, attention_mask=mask, keep_actions=skip_all, masked=False).keep_log_prob
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(input_ids=ids, attention_mask=mask, keep_actions=skip_all, masked=False)
    assert out.keep_log_prob.dtype == torch.float32 and torch.isfinite(out.keep_log_prob).all()
    torch.testing.assert_close(out.keep_log_prob, reference, rtol=0.05, atol=0.0)
    # The first step skips all but [CLS], each at log(1 - sigmoid(12)) = -12 nats; the second has nothing to skip.
    torch.testing.assert_close(reference, -12.0 * (mask.sum(1) - 1).float(), rtol=1e-3, atol=0.0)


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


def test_interrupted_stage_resumes_from_last_complete_checkpoint(backbone, tmp_path, monkeypatch):
    settings = training.StageSettings(epochs=1, learning_rate=1e-3, batch_size=16, max_length=64, save_steps=3)
    data = synthetic(128, seed=6)  # 8 steps: checkpoints at 3 and 6, then the end
    out = tmp_path / "finetune"
    training.finetune(backbone, data, out, settings, label_names=LABELS)
    checkpoints = tmp_path / "finetune-checkpoints"
    assert training.last_complete_checkpoint(checkpoints).endswith("checkpoint-8")
    # Simulate a kill: the stage folder never written, the newest checkpoint cut off mid-write.
    shutil.rmtree(out)
    (checkpoints / "checkpoint-8" / "trainer_state.json").unlink()
    assert training.last_complete_checkpoint(checkpoints).endswith("checkpoint-6")
    resumed_from = []
    original = training.last_complete_checkpoint
    monkeypatch.setattr(training, "last_complete_checkpoint",
                        lambda folder: resumed_from.append(original(folder)) or resumed_from[-1])
    training.finetune(backbone, data, out, settings, label_names=LABELS)
    assert resumed_from[0].endswith("checkpoint-6")
    state = json.loads((checkpoints / "trainer_state.json").read_text())
    assert state["global_step"] == 8
    assert AutoModelForSequenceClassification.from_pretrained(out).config.num_labels == 3


def test_save_atomically_replaces_a_folder_whole(tmp_path):
    model = trbert.TRBertForSequenceClassification(trbert.TRBertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=16,
        sep_token_id=3, num_labels=2))
    target = tmp_path / "model"
    training.save_atomically(model, None, target)
    (target / "stale.txt").write_text("from an older save")
    training.save_atomically(model, None, target)
    assert sorted(p.name for p in target.iterdir()) == ["config.json", "model.safetensors"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging or old folder left


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


def test_residual_heuristic_scores_the_marker_highest(finetuned):
    from trbert.tasks import get_task

    model = trbert.TRBertForSequenceClassification.from_pretrained(finetuned, reduction_layers=[0]).eval()
    tok = BertTokenizerFast.from_pretrained(finetuned)
    data = synthetic(60, seed=4)
    enc = tok(list(data["text"]), return_tensors="pt", padding=True)
    labels = {"labels": torch.tensor(list(data["label"]))}
    scores, states = training.residual_scores(model, dict(enc), labels, get_task("classification"))
    assert len(scores) == 1 and scores[0].shape == enc["input_ids"].shape
    marker_ids = torch.tensor(tok.convert_tokens_to_ids(MARKERS))
    has_marker = torch.isin(enc["input_ids"], marker_ids)
    rows = has_marker.any(1)
    ranked = scores[0].masked_fill(enc["attention_mask"] == 0, -1)
    ranked[:, 0] = -1  # [CLS] is always kept: the ranking that matters is among the others
    best = ranked.argmax(1)
    top_is_marker = has_marker[torch.arange(len(best)), best]
    assert top_is_marker[rows].float().mean() >= 0.8, top_is_marker[rows].float().mean()
    [action] = training.residual_actions(model, dict(enc), labels, get_task("classification"))
    assert action[has_marker].float().mean() >= 0.9 and action.sum() < enc["attention_mask"].sum()


def test_policy_training_with_imitation_warm_up(finetuned, tmp_path):
    settings = training.StageSettings(epochs=3, learning_rate=1e-2, batch_size=32, max_length=64, samples=8,
                                      alpha=0.5, save_steps=1000, guide_rate=0.5)
    out = training.train_policy(finetuned, synthetic(300, seed=3), tmp_path / "policy", settings,
                                reduction_layers=[0])
    accuracy, marker_kept, other_kept, _ = keep_stats(out, synthetic(200, seed=2))
    assert accuracy >= 0.9 and marker_kept >= 0.95 and other_kept <= 0.3, (accuracy, marker_kept, other_kept)


def test_head_learning_rate_trains_the_head_alone_and_resumes(backbone, tmp_path, monkeypatch):
    settings = training.StageSettings(epochs=1, learning_rate=1e-9, head_learning_rate=1e-2, batch_size=16,
                                      max_length=64, save_steps=1)
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
