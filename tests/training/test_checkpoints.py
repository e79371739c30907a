"""A stage's files: an interrupted stage resumes from its last complete checkpoint; a model folder is replaced whole."""

import json
import shutil
from dataclasses import replace

from builders import LABELS, synthetic
from transformers import AutoConfig, AutoModelForSequenceClassification

import pytest

import trbert
from trbert.errors import StaleStageError
from trbert import training


def test_interrupted_stage_resumes_from_last_complete_checkpoint(backbone, tmp_path, monkeypatch):
    settings = training.StageSettings(epochs=1, learning_rate=1e-3, batch_size=16, max_length=64, save_steps=3,
                                      keep_checkpoints=True)
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
    monkeypatch.setattr(training.stages, "last_complete_checkpoint",
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


def test_a_stage_records_its_length_and_logs_its_last_step(backbone, tmp_path):
    settings = training.StageSettings(epochs=1, learning_rate=1e-3, batch_size=16, max_length=24, save_steps=100,
                                      logging_steps=50)  # 3 steps: fewer than the logging interval
    out = training.finetune(backbone, synthetic(48, seed=6), tmp_path / "finetune", settings, label_names=LABELS)
    assert AutoConfig.from_pretrained(out).trained_max_length == 24
    lines = [json.loads(line) for line in training.log_path(out).read_text().splitlines()]
    assert [line["step"] for line in lines] == [3]  # the last step, although 3 < logging_steps
    policy = training.train_policy(str(out), synthetic(16, seed=7), tmp_path / "policy",
                                   replace(settings, max_length=20, samples=2), reduction_layers=[0])
    assert AutoConfig.from_pretrained(policy).trained_max_length == 20  # each stage records its own


def test_a_finished_stage_is_kept_for_the_same_and_refused_for_other_data(backbone, tmp_path):
    settings = training.StageSettings(epochs=1, learning_rate=1e-3, batch_size=16, max_length=24, save_steps=100)
    data = synthetic(32, seed=6)
    out = training.finetune(backbone, data, tmp_path / "ft", settings, label_names=LABELS)
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    record = json.loads((out / training.checkpoints.STAGE_RECORD).read_text())
    assert record["stage"] == "finetune" and record["data"] == training.data_fingerprint(data)
    # The same data and settings (how often it logs aside): kept as it is.
    assert training.finetune(backbone, data, out, replace(settings, logging_steps=1), label_names=LABELS) == out
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp
    for changed, what in [(dict(dataset=synthetic(32, seed=7)), "data"), (dict(settings=replace(settings, seed=1)),
                                                                        "settings")]:
        arguments = {"dataset": data, "settings": settings, **changed}
        with pytest.raises(StaleStageError, match=f"trained from another {what}"):
            training.finetune(backbone, arguments["dataset"], out, arguments["settings"], label_names=LABELS)


def test_a_finished_stage_removes_its_checkpoints_unless_asked_to_keep_them(backbone, tmp_path):
    settings = training.StageSettings(epochs=1, learning_rate=1e-3, batch_size=16, max_length=24, save_steps=1)
    data = synthetic(32, seed=6)
    out = training.finetune(backbone, data, tmp_path / "removed", settings, label_names=LABELS)
    assert training.stage_done(out) and not (tmp_path / "removed-checkpoints").exists()
    kept = training.finetune(backbone, data, tmp_path / "kept", replace(settings, keep_checkpoints=True),
                             label_names=LABELS)
    assert training.last_complete_checkpoint(tmp_path / "kept-checkpoints").endswith("checkpoint-2")
    assert training.log_path(kept).read_text()  # the log is written from the run, not from the checkpoints
