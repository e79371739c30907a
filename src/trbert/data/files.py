"""Your own files: text classification from CSV or JSON Lines (`load_text_files`, `read_text_column`)
and SQuAD-format question answering (`load_squad`). Every problem with a file is a DataError that
names the file (and the row)."""

import json
import math
import os
import tempfile
from pathlib import Path

import datasets
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from ..errors import DataError


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
    tables = {split: read_table(Path(path)) for split, path in files.items() if path is not None}
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
        if len(names) < 2:
            raise DataError(f"{files['train']}: every row has the label {names[0]!r}: a classifier needs at least two "
                            f"classes (is {label_column!r} the label column?)")

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


def read_table(path: Path) -> Dataset:
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


def read_text_column(path: str | os.PathLike, column: str = "text") -> list[str]:
    """The texts of one column of a CSV or JSON (Lines) file, or a DataError naming the file and row."""
    table = read_table(Path(path))
    if column not in table.column_names:
        raise DataError(f"{path}: no column {column!r}; the columns are {table.column_names} "
                        f"(choose another with text_column=)")
    return _texts(path, table[column])


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
