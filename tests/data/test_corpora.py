"""The corpora that ship as packages: fixed, seeded, stratified splits with no text in two splits; news digests."""

from collections import Counter

import pytest

from trbert.data import load_bbc, load_wnut

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












# Each bad file: (file name, content, text that the DataError must contain besides the file name).














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
