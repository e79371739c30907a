"""Your own files: CSV and JSON Lines round trips, label names, and a DataError naming the file and row for every bad one."""

import json

import pytest

from trbert.data import DataError, load_squad, load_text_files

BAD_FILES = [
    ("empty.csv", "", "empty"),
    ("header_only.csv", "text,label\n", "no data rows"),
    ("empty.jsonl", "\n\n", "no data rows"),
    ("no_label.csv", "text,topic\nhello,a\n", "'label'"),
    ("empty_text.csv", "text,label\nhello,a\n   ,a\n", "row 2"),
    ("missing_text.csv", "text,label\nhello,a\nworld,a\n,a\n", "row 3"),
    ("missing_label.csv", "text,label\nhello,a\nworld,\n", "row 2"),
    ("ragged.csv", "text,label\nhello,a\nx,y,z\n", "line 3"),
    ("malformed.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", label}\n', "row 2"),
    ("not_object.jsonl", '{"text": "a", "label": "x"}\n["b", "y"]\n', "row 2"),
    ("no_label_key.jsonl", '{"text": "a", "label": "x"}\n{"text": "b"}\n', "row 2"),
    ("malformed_array.json", '[{"text": "a", "label": "x"},\n {"text": "b", "label": }]\n', "line 2"),
    ("notes.txt", "hello\n", "unsupported file type"),
]



def _write(path, text, encoding="utf-8"):
    path.write_text(text, encoding=encoding)
    return str(path)


def _jsonl(path, rows):
    return _write(path, "".join(json.dumps(row) + "\n" for row in rows))


def test_csv_round_trip(tmp_path):
    train = _write(tmp_path / "train.csv", 'text,label,extra\n"good, really",pos,1\nbad,neg,2\nfine,pos,3\n')
    test = _write(tmp_path / "test.csv", "text,label,extra\nawful,neg,4\n")
    data = load_text_files(train, test=test)
    assert list(data) == ["train", "test"]
    assert data["train"].column_names == ["text", "label"]
    assert data["train"].features["label"].names == ["neg", "pos"]
    assert data["train"]["text"] == ["good, really", "bad", "fine"]
    assert data["train"]["label"] == [1, 0, 1]
    assert data["test"]["label"] == [0]


def test_jsonl_round_trip_with_other_columns_and_given_labels(tmp_path):
    rows = [{"sentence": "héllo wörld", "topic": "b"}, {"sentence": "second", "topic": "a"}]
    train = _jsonl(tmp_path / "train.jsonl", rows)
    validation = _jsonl(tmp_path / "dev.jsonl", rows[:1])
    data = load_text_files(train, validation, text_column="sentence", label_column="topic", labels=["b", "a", "c"])
    assert data["train"].features["label"].names == ["b", "a", "c"]
    assert data["train"]["text"] == ["héllo wörld", "second"]
    assert data["train"]["label"] == [0, 1]
    assert data["validation"]["label"] == [0]


def test_integer_labels_sort_numerically(tmp_path):
    train = _write(tmp_path / "train.csv", "text,label\na,10\nb,2\nc,1\n")
    data = load_text_files(train)
    assert data["train"].features["label"].names == ["1", "2", "10"]
    assert data["train"]["label"] == [2, 1, 0]


@pytest.mark.parametrize("name, content, expected", BAD_FILES, ids=[case[0] for case in BAD_FILES])
def test_bad_file_raises_data_error(tmp_path, name, content, expected):
    path = _write(tmp_path / name, content)
    with pytest.raises(DataError) as error:
        load_text_files(path)
    assert name in str(error.value) and expected in str(error.value)


def test_missing_column_lists_the_columns(tmp_path):
    path = _write(tmp_path / "train.csv", "body,label\nhello,a\n")
    with pytest.raises(DataError, match=r"train\.csv.*'text'.*\['body', 'label'\]"):
        load_text_files(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nowhere\.csv: file not found"):
        load_text_files(str(tmp_path / "nowhere.csv"))


def test_not_utf8(tmp_path):
    path = _write(tmp_path / "latin.csv", "text,label\nhello,a\ncafé,b\n", encoding="latin-1")
    with pytest.raises(DataError, match=r"latin\.csv: line 3: .*not UTF-8.*save it as UTF-8"):
        load_text_files(path)


def test_unknown_label_in_validation_or_test(tmp_path):
    train = _write(tmp_path / "train.csv", "text,label\na,pos\nb,neg\n")
    test = _write(tmp_path / "test.csv", "text,label\nc,pos\nd,neutral\n")
    with pytest.raises(DataError, match=r"test\.csv: row 2: unknown label 'neutral'"):
        load_text_files(train, test=test)


def test_unknown_label_in_train_when_labels_given(tmp_path):
    train = _jsonl(tmp_path / "train.jsonl", [{"text": "a", "label": "pos"}, {"text": "b", "label": "meh"}])
    with pytest.raises(DataError, match=r"train\.jsonl: row 2: unknown label 'meh'"):
        load_text_files(train, labels=["neg", "pos"])


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


def test_a_train_file_with_one_label_is_refused(tmp_path):
    path = _write(tmp_path / "one.csv", "text,label\nw1 w2,sport\nw3,sport\n")
    with pytest.raises(DataError, match=r"every row has the label 'sport': a classifier needs at least two classes"):
        load_text_files(train=path)
    # With the model's labels given (evaluating on a file of one class) one label is fine.
    assert load_text_files(train=path, labels=["business", "sport"])["train"]["label"] == [1, 1]
