"""Extractive question answering: SQuAD files, windows, answers mapped back to characters, EM/F1,
and the three training stages on a tiny synthetic SQuAD task (the answer follows a marker word)."""

import json

import pytest
import torch
from builders import FILLER, synthetic_squad, tiny_tokenizer
from transformers import AutoModelForQuestionAnswering, BertTokenizerFast, pipeline

import trbert
from trbert import evaluation, training
from trbert.data import DataError, load_squad
from trbert.tasks import question_answering as qa


def squad_file(path, paragraphs, version="1.1"):
    path.write_text(json.dumps({"version": version, "data": [{"title": "t", "paragraphs": paragraphs}]}))
    return path


def paragraph(context, *qas):
    return {"context": context, "qas": list(qas)}


def question(qid, text, answers, impossible=None):
    q = {"id": qid, "question": text, "answers": [{"text": a, "answer_start": s} for a, s in answers]}
    if impossible is not None:
        q["is_impossible"] = impossible
    return q


# ---------------------------------------------------------------------------- files
def test_load_squad_v1_and_v2(tmp_path):
    ctx = "The cat sat on the mat. It was red."
    path = squad_file(tmp_path / "v2.json", [
        paragraph(ctx, question("q1", "Where did the cat sit?", [("the mat", 15), ("mat", 19)]),
                  question("q2", "What colour?", [("red", 31)], impossible=False),
                  question("q3", "Who owns it?", [], impossible=True)),
    ], version="v2.0")
    rows = load_squad(path)
    assert rows["id"] == ["q1", "q2", "q3"] and rows["context"] == [ctx] * 3
    assert rows["answers"][0] == {"text": ["the mat", "mat"], "answer_start": [15, 19]}
    assert rows["answers"][2] == {"text": [], "answer_start": []}


@pytest.mark.parametrize("make, message", [
    (lambda: [paragraph("abc def", {"id": "q7", "answers": []})], "question 'q7': the field 'question' is missing"),
    (lambda: [paragraph("abc def", question("q8", "what?", [("xyz", 0)]))],
     "question 'q8': the answer 'xyz' is not in the context at answer_start 0"),
    (lambda: [paragraph("abc def", question("q9", "what?", [("def", 0)]))], "(it occurs at 4)"),
    (lambda: [paragraph("   ", question("q10", "what?", [("a", 0)]))], "the context is empty (questions ['q10'])"),
    (lambda: [paragraph("abc", question("q11", "what?", []))], "question 'q11': no answers"),
    (lambda: [paragraph("abc", question("q12", "a?", [("abc", 0)]), question("q12", "b?", [("abc", 0)]))],
     "question 'q12': the id is used by another question"),
    (lambda: [paragraph("abc", question("q13", "  ", [("abc", 0)]))], "question 'q13': the question is empty"),
    (lambda: [{"qas": []}], "article 0 paragraph 0: the field 'context' is missing"),
])
def test_bad_squad_files_name_the_file_and_question(tmp_path, make, message):
    path = squad_file(tmp_path / "bad.json", make())
    with pytest.raises(DataError) as error:
        load_squad(path)
    assert str(path) in str(error.value) and message in str(error.value)


def test_unreadable_squad_files(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_squad(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text('{"data": [')
    with pytest.raises(DataError, match="line 1: malformed JSON"):
        load_squad(tmp_path / "broken.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(DataError, match="not a SQuAD file"):
        load_squad(tmp_path / "list.json")
    squad_file(tmp_path / "none.json", [paragraph("abc", )])
    with pytest.raises(DataError, match="holds no questions"):
        load_squad(tmp_path / "none.json")


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
