"""Extractive question answering: windows, answers mapped back to characters, EM/F1,
and the three training stages on a tiny synthetic SQuAD task (the answer follows a marker word)."""


import pytest
import torch
from builders import FILLER, synthetic_squad, tiny_tokenizer
from transformers import AutoModelForQuestionAnswering, BertTokenizerFast, pipeline

import trbert
from trbert import evaluation, training
from trbert.tasks import question_answering as qa


# ---------------------------------------------------------------------------- windows and answers
def test_windows_cover_a_long_context_and_label_the_answer():
    tok = tiny_tokenizer(FILLER + ["red"])
    words = [f"w{i % 40}" for i in range(60)]
    words[45] = "red"
    context = " ".join(words)
    start = context.index("red")
    answer = {"text": ["red w6"], "answer_start": [start]}
    f = qa.prepare_features(tok, ["w1 w2"], [context], max_length=24, stride=6, answers=[answer])
    windows = len(f["input_ids"])
    assert windows > 3 and set(f["example"]) == {0} and all(len(ids) <= 24 for ids in f["input_ids"])
    found = 0
    for w in range(windows):
        s, e = f["start_positions"][w], f["end_positions"][w]
        if (s, e) == (0, 0):
            continue
        found += 1
        offsets = f["offsets"][w]
        assert context[offsets[s][0]:offsets[e][1]] == "red w6" and e == s + 1
    assert found >= 1
    # Every context character is covered by some window.
    covered = {c for offsets in f["offsets"] for o in offsets if o for c in range(*o)}
    assert all(i in covered for i, ch in enumerate(context) if ch != " ")


def test_best_answers_pick_the_best_window_and_map_to_characters():
    tok = tiny_tokenizer(FILLER)
    context = " ".join(f"w{i % 40}" for i in range(30))
    f = qa.prepare_features(tok, ["w1"], [context], max_length=16, stride=4)
    n = [len(ids) for ids in f["input_ids"]]
    start = [torch.zeros(k) for k in n]
    end = [torch.zeros(k) for k in n]
    w = len(n) - 1  # the best span lies in the last window, tokens 5..6
    start[w][5], end[w][6] = 5.0, 4.0
    start[0][4], end[0][4] = 3.0, 3.0  # a worse one in the first window
    [answer] = qa.best_answers(f, start, end, [context])
    o = f["offsets"][w]
    assert (answer.start, answer.end) == (o[5][0], o[6][1]) and answer.text == context[o[5][0]:o[6][1]]
    assert answer.score == 9.0
    # SQuAD 2.0: the empty answer wins when [CLS] scores higher than the best span.
    for x in start + end:
        x[0] = 6.0
    [null] = qa.best_answers(f, start, end, [context], allow_null=True)
    assert null.text == "" and null.null_score == 12.0
    [forced] = qa.best_answers(f, start, end, [context], allow_null=False)
    assert forced.text == answer.text


def test_squad_scores_follow_the_official_normalisation():
    scores = qa.squad_scores(["The Eiffel  Tower!", "in Paris", "", "blue"],
                             [["Eiffel tower"], ["Paris, France", "Paris"], [], ["red"]])
    assert scores["per_question_em"] == [1.0, 0.0, 1.0, 0.0]
    assert scores["per_question_f1"][1] == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert scores["exact_match"] == 0.5 and scores["no_answer_f1"] == 1.0
    assert scores["has_answer_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)


# ---------------------------------------------------------------------------- training end to end
@pytest.fixture(scope="module")
def qa_stages(backbone, tmp_path_factory):
    run = tmp_path_factory.mktemp("qa-run")
    train = synthetic_squad(400, seed=1)
    quiet = {"disable_tqdm": True}
    training.finetune(backbone, train, run / "finetune", training.StageSettings(
        epochs=10, learning_rate=2e-3, batch_size=32, max_length=32, save_steps=1000, extra=quiet),
        task="question-answering")
    training.train_policy(str(run / "finetune"), train, run / "policy", training.StageSettings(
        epochs=3, learning_rate=1e-2, batch_size=32, max_length=32, samples=8, alpha=0.5, save_steps=1000,
        extra=quiet), task="question-answering", reduction_layers=[0])
    training.train_joint(str(run / "policy"), str(run / "finetune"), train, run / "joint", training.StageSettings(
        epochs=1, learning_rate=1e-4, batch_size=32, max_length=32, samples=2, alpha=0.5, save_steps=1000,
        extra=quiet), task="question-answering")
    return run


def test_qa_stages_answer_and_reduce(qa_stages):
    test = synthetic_squad(100, seed=7)
    tok = BertTokenizerFast.from_pretrained(qa_stages / "finetune")
    full = AutoModelForQuestionAnswering.from_pretrained(qa_stages / "finetune")
    for stage in ("policy", "joint"):
        model = AutoModelForQuestionAnswering.from_pretrained(qa_stages / stage)
        assert isinstance(model, trbert.TRBertForQuestionAnswering)
        r = evaluation.evaluate_qa(model, full, tok, test, max_length=32, stride=8, batch_size=16, timing_repeats=0,
                           progress=False)
        assert r["full_exact_match"] >= 0.9, r
        assert r["f1"] >= r["full_f1"] - 0.05 and r["ci_low"] <= r["f1_diff"] <= r["ci_high"], (stage, r)
        assert r["kept_fraction"][0] < 0.8 and r["flops_speedup"] > 1.2, (stage, r)
        assert not r["allow_null"] and all(a == "red blue" for a in r["answers"][:20])


def test_trained_qa_model_in_the_pipeline(qa_stages):
    qa_pipe = pipeline("question-answering", model=str(qa_stages / "joint"))
    context = "w3 w4 w5 red blue w10 w11"
    out = qa_pipe(question="w1 w2", context=context)
    assert out["answer"] == "red blue" and context[out["start"]:out["end"]] == "red blue"


def test_skipped_tokens_are_restored_for_every_position(qa_stages):
    model = AutoModelForQuestionAnswering.from_pretrained(qa_stages / "joint").eval()
    tok = BertTokenizerFast.from_pretrained(qa_stages / "joint")
    enc = tok(["w1 w2"] * 2, ["w3 w4 w5 red blue w10 w11", "w7 red blue"], return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(**enc)
    assert out.start_logits.shape == enc["input_ids"].shape and torch.isfinite(out.start_logits).all()
    assert (out.kept_lengths[:, 0] < enc["attention_mask"].sum(1)).all()  # something was skipped...
    # ...and each example's logits match a run of that example alone (restore writes to the right places).
    for b in range(2):
        n = int(enc["attention_mask"][b].sum())
        single = {k: v[b:b + 1, :n] for k, v in enc.items()}
        with torch.no_grad():
            alone = model(**single)
        torch.testing.assert_close(alone.start_logits[0], out.start_logits[b, :n], atol=1e-5, rtol=1e-4)
