"""trbert.data: the built-in BBC / WNUT loaders (read for real: the data packages are small) and user files."""

import json
from collections import Counter

import pytest

from trbert.data import DataError, load_bbc, load_text_files, load_wnut

BBC_NAMES = ["business", "entertainment", "politics", "sport", "tech"]


@pytest.fixture(scope="module")
def bbc():
    return load_bbc(seed=0)


@pytest.fixture(scope="module")
def wnut():
    return load_wnut(seed=0)


def _ids(dataset_dict):
    return {split: list(dataset_dict[split]["id"]) for split in dataset_dict}


# --- BBC News -------------------------------------------------------------------------------------


def test_bbc_split_sizes_and_columns(bbc):
    assert list(bbc) == ["train", "validation", "test"]
    assert {split: bbc[split].num_rows for split in bbc} == {"train": 1335, "validation": 222, "test": 668}
    assert bbc["train"].column_names == ["text", "label", "id"]
    assert bbc["train"].features["label"].names == BBC_NAMES
    row = bbc["train"][0]
    assert isinstance(row["text"], str) and row["text"].strip()
    for split in bbc:  # the id is the file: its folder is the topic ("sports" for the label "sport")
        for label, file_id in zip(bbc[split]["label"], bbc[split]["id"]):
            assert file_id.split("/")[0] in (BBC_NAMES[label], "sports")


def test_bbc_headline_comes_first():
    article = next(row for row in load_bbc()["train"] if row["id"] == "business/001.txt")
    assert article["text"].startswith("Ad sales boost Time Warner profit\nQuarterly profits at US media giant")


def test_bbc_split_is_stratified(bbc):
    sizes = {split: Counter(bbc[split]["label"]) for split in bbc}
    for label in range(len(BBC_NAMES)):
        total = sum(sizes[split][label] for split in bbc)
        assert abs(sizes["test"][label] - 0.3 * total) <= 1
        assert abs(sizes["validation"][label] - 0.1 * total) <= 1


def test_bbc_no_article_in_two_splits(bbc):
    ids = _ids(bbc)
    assert sum(len(split_ids) for split_ids in ids.values()) == len(set().union(*ids.values())) == 2225
    # The corpus holds duplicate articles under different file names: they stay in one split too.
    texts = {split: {" ".join(text.split()) for text in bbc[split]["text"]} for split in bbc}
    assert not texts["train"] & texts["test"]
    assert not texts["train"] & texts["validation"]
    assert not texts["validation"] & texts["test"]


def test_bbc_reads_the_latin1_article(bbc):
    # sports/199.txt is the one file that is not UTF-8: its pound sign must come through as "£".
    text = next(row["text"] for split in bbc for row in bbc[split] if row["id"] == "sports/199.txt")
    assert "£15.8m" in text and "\ufffd" not in text


def test_bbc_split_depends_only_on_seed(bbc):
    assert _ids(load_bbc(seed=0)) == _ids(bbc)
    other = _ids(load_bbc(seed=1))
    assert other != _ids(bbc)
    assert {split: len(ids) for split, ids in other.items()} == {"train": 1335, "validation": 222, "test": 668}


# --- WNUT-16 --------------------------------------------------------------------------------------


def test_wnut_sizes_and_tags(wnut):
    sizes = {split: wnut[split].num_rows for split in wnut}
    assert sum(sizes.values()) == 2394
    assert sizes["train"] == pytest.approx(0.8 * 2394, abs=2)
    assert sizes["validation"] == pytest.approx(0.1 * 2394, abs=2)
    names = wnut["train"].features["ner_tags"].feature.names
    assert names[0] == "O" and names[1:] == sorted(names[1:])
    assert all(name[:2] in ("B-", "I-") for name in names[1:])
    row = wnut["train"][0]
    assert len(row["tokens"]) == len(row["ner_tags"]) > 0
    ids = _ids(wnut)
    assert len(set().union(*ids.values())) == 2394


def test_wnut_tags_are_valid_bio(wnut):
    names = wnut["train"].features["ner_tags"].feature.names
    for split in wnut:
        for tags in wnut[split]["ner_tags"]:
            previous = "O"
            for tag in (names[i] for i in tags):
                if tag.startswith("I-"):
                    assert previous[2:] == tag[2:], "an I- tag must follow a B- or I- tag of its type"
                previous = tag


def test_wnut_split_depends_only_on_seed(wnut):
    assert _ids(load_wnut(seed=0)) == _ids(wnut)
    assert _ids(load_wnut(seed=1)) != _ids(wnut)


# --- user files -----------------------------------------------------------------------------------


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


# Each bad file: (file name, content, text that the DataError must contain besides the file name).
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


def test_news_digests_are_long_multi_label_and_stay_in_their_split():
    from builders import tiny_tokenizer

    from trbert.data import load_bbc, load_digests

    tokenizer = tiny_tokenizer(max_length=10000)  # counts words here (unknown ones as [UNK]): fast and enough
    test = load_digests(300, "test", n=12, tokenizer=tokenizer)
    again = load_digests(300, "test", n=12, tokenizer=tokenizer)
    assert test["text"] == again["text"] and test["labels"] == again["labels"]
    bbc = load_bbc(seed=0)
    test_texts, train_texts = set(bbc["test"]["text"]), set(bbc["train"]["text"])
    for row in test:
        parts = row["text"].split("\n\n")
        joined = [p for p in test_texts if p in row["text"]]
        assert len(joined) >= len(row["topics"]) >= 1 and not any(t in row["text"] for t in list(train_texts)[:200])
        assert row["labels"] == sorted(set(row["topics"])) and row["n_tokens"] >= 300
        assert len(parts) >= len(row["topics"])
    assert len({tuple(r["labels"]) for r in test}) > 3  # the topic sets vary
    train = load_digests(300, "train", n=3, tokenizer=tokenizer)
    assert all(any(t in row["text"] for t in train_texts) for row in train)
