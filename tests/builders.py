"""Tiny models, batches, tokenizers and data sets built in code, shared by the tests."""

import csv
import itertools
import random
from pathlib import Path

import torch
from datasets import Dataset
from transformers import BertConfig, BertForSequenceClassification

import trbert

TINY = dict(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=4,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=64,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
    sep_token_id=3,
    pad_token_id=0,
)
CLS, SEP = 2, 3


def tiny_config(**overrides) -> trbert.TRBertConfig:
    return trbert.TRBertConfig(**{**TINY, **overrides})


def tiny_batch(lengths, n=None, seed=0):
    """input_ids / attention_mask for examples of the given real lengths: [CLS] words [SEP], right-padded."""
    gen = torch.Generator().manual_seed(seed)
    n = n or max(lengths)
    ids = torch.zeros(len(lengths), n, dtype=torch.long)
    mask = torch.zeros(len(lengths), n, dtype=torch.long)
    for b, length in enumerate(lengths):
        ids[b, :length] = torch.randint(5, TINY["vocab_size"], (length,), generator=gen)
        ids[b, 0], ids[b, length - 1] = CLS, SEP
        mask[b, :length] = 1
    return ids, mask


SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = [f"w{i}" for i in range(TINY["vocab_size"] - len(SPECIAL))]


def tiny_tokenizer(words=WORDS, max_length=TINY["max_position_embeddings"]):
    """A word-level BERT tokenizer over the given words (ids 5, 6, ... in order)."""
    from transformers import BertTokenizerFast

    vocab = {token: i for i, token in enumerate([*SPECIAL, *words])}
    return BertTokenizerFast(vocab=vocab, model_max_length=max_length)


# ---------------------------------------------------------------------------- a tiny synthetic task
# One marker word decides the label among filler: "red" or "blue" when that marker occurs (once),
# "none" when neither does; so dropping either marker loses the label.
FILLER = [f"w{i}" for i in range(40)]
MARKERS = ["red", "blue"]  # class 0, class 1; class 2: no marker
LABELS = [*MARKERS, "none"]


def synthetic(n, seed, length=24):
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        words = [rng.choice(FILLER) for _ in range(length)]
        label = rng.randrange(3)
        if label < 2:
            words[rng.randrange(length)] = MARKERS[label]
        texts.append(" ".join(words))
        labels.append(label)
    return Dataset.from_dict({"text": texts, "label": labels})




LENGTHS = [20, 9, 31, 3, 14]


def spread_policy(model, seed=1):
    """Policy weights that keep some tokens and skip others (an untrained policy keeps all)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for policy in model.base_model.encoder.policy:
            for p in policy.parameters():
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
            policy.out.bias.zero_()
    return model


def reducing_model(cls=trbert.TRBertForTokenClassification, **overrides):
    """A tiny TR model in eval mode whose policies keep some tokens and skip others."""
    return spread_policy(cls(tiny_config(num_labels=5, **overrides)).eval())


def keep_decisions(model, **batch):
    """The model's outputs on a batch and its keep decisions at each step, as [B, n] bools at original
    positions."""
    captured = []
    encoder = model.base_model.encoder
    original = encoder._select

    def spy(step, tokens, input_ids, action, sample):
        keep, *rest = original(step, tokens, input_ids, action, sample)
        kept = torch.zeros_like(batch["attention_mask"], dtype=torch.bool)
        kept[tokens.example[keep], tokens.position[keep]] = True
        captured.append(kept)
        return (keep, *rest)

    encoder._select = spy
    try:
        with torch.no_grad():
            out = model(**batch)
    finally:
        encoder._select = original
    return out, captured


def decisions(model, ids, mask):
    """The keep actions the deterministic policy takes, per step, at original positions."""
    return keep_decisions(model, input_ids=ids, attention_mask=mask)[1]


def synthetic_squad(n, seed, length=20, unanswerable=0.0):
    """The answer is the two-word span "red blue" among filler; the question is filler."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = [rng.choice(FILLER) for _ in range(length)]
        answers = {"text": [], "answer_start": []}
        if rng.random() >= unanswerable:
            p = rng.randrange(length - 1)
            words[p:p + 2] = ["red", "blue"]
            context = " ".join(words)
            start = len(" ".join(words[:p])) + (1 if p else 0)
            answers = {"text": ["red blue"], "answer_start": [start]}
        else:
            context = " ".join(words)
        rows.append({"id": f"s{seed}-{i}", "title": "", "context": context, "question": "w1 w2", "answers": answers})

    return Dataset.from_list(rows)


CSV_COLUMNS = ["--text-column", "sentence", "--label-column", "tag"]


def write_csv(path: Path, data) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "sentence", "tag"])
        for i, (text, label) in enumerate(zip(data["text"], data["label"])):
            writer.writerow([i, text, LABELS[label]])
    return path


# ---------------------------------------------------------------------------- classifiers on word texts
MAX_LENGTH = TINY["max_position_embeddings"]


def word_texts(word_counts, seed=0) -> list[str]:
    """Texts of the given numbers of words, drawn from the tiny vocabulary."""
    gen = torch.Generator().manual_seed(seed)
    return [" ".join(WORDS[i] for i in torch.randint(len(WORDS), (n,), generator=gen).tolist()) for n in word_counts]


def random_labels(n, num_labels=3, seed=1) -> torch.Tensor:
    return torch.randint(num_labels, (n,), generator=torch.Generator().manual_seed(seed))


def tr_classifier(**overrides):
    """A tiny TR sequence classifier (3 classes) whose policies keep some tokens and skip others."""
    return spread_policy(trbert.TRBertForSequenceClassification(tiny_config(num_labels=3, **overrides)).eval())


def plain_twin(tr_model):
    """The plain transformers classifier with the TR model's weights (everything but the policies)."""
    plain = BertForSequenceClassification(BertConfig(**TINY, num_labels=tr_model.config.num_labels)).eval()
    missing, unexpected = plain.load_state_dict(tr_model.state_dict(), strict=False)
    assert not missing and all(".policy." in k for k in unexpected)
    return plain


TEXTS = word_texts([3, 40, 12, 25, 7, 70, 18, 33, 5])  # one text beyond MAX_LENGTH: truncated


def plain_classifier(num_labels=3):
    """A tiny plain transformers classifier (no reduction), in eval mode."""
    config = BertConfig(**{k: v for k, v in TINY.items() if k != "sep_token_id"}, num_labels=num_labels)
    return BertForSequenceClassification(config).eval()


def relative_error(got, expected):
    """|got - expected| / |expected| (Frobenius norms)."""
    return float((got - expected).norm() / expected.norm())


def run_cli(argv, capsys) -> tuple[int, str, str]:
    """Run the command line; its exit status, standard output and standard error."""
    from trbert.cli import main

    capsys.readouterr()
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def keep_stats(model_dir, data):
    """A TR classifier folder on the synthetic task: (accuracy, fraction of markers kept by the first step,
    fraction of other tokens kept by it, mean kept fraction over the steps)."""
    model = trbert.TRBertForSequenceClassification.from_pretrained(model_dir).eval()
    from transformers import BertTokenizerFast

    tok = BertTokenizerFast.from_pretrained(model_dir)
    enc = tok(list(data["text"]), return_tensors="pt", padding=True)
    marker_ids = torch.tensor(tok.convert_tokens_to_ids(MARKERS))
    captured = []
    original = model.bert.encoder._select

    def spy(step, tokens, input_ids, action, sample):
        keep, *rest = original(step, tokens, input_ids, action, sample)
        is_marker = torch.isin(input_ids[tokens.example, tokens.position], marker_ids)
        captured.append((keep[is_marker].float().mean().item(), keep[~is_marker].float().mean().item()))
        return (keep, *rest)

    model.bert.encoder._select = spy
    with torch.no_grad():
        out = model(**enc)
    accuracy = (out.logits.argmax(-1) == torch.tensor(list(data["label"]))).float().mean().item()
    marker_kept, other_kept = captured[0]
    return accuracy, marker_kept, other_kept, out.kept_fraction.mean().item()


# Result records of three systems, as an evaluation writes them (for the results files and the page).
RECORDS = [
    {"method": "tr", "setting": "alpha 0.5", "accuracy": 0.90, "full_accuracy": 0.91, "accuracy_diff": -0.01,
     "ci_low": -0.03, "ci_high": 0.01, "flops_speedup": 1.8, "wall_speedup": 1.5},
    {"method": "tr", "setting": "alpha 1", "accuracy": 0.88, "full_accuracy": 0.91, "accuracy_diff": -0.03,
     "ci_low": -0.05, "ci_high": -0.01, "flops_speedup": 2.6, "wall_speedup": 2.0},
    {"method": "truncation", "setting": "first 64 tokens", "accuracy": 0.80, "full_accuracy": 0.91,
     "accuracy_diff": -0.11, "ci_low": -0.14, "ci_high": -0.08, "flops_speedup": 2.0, "wall_speedup": None},
]


def center_policies(model, batch, seed=0):
    """Random policies whose keep probabilities straddle the threshold: each step's bias puts its median
    logit on it, so about half the tokens go on at each step, many of them close to the threshold."""
    gen = torch.Generator().manual_seed(seed)
    for policy in model.base_model.encoder.policy:
        with torch.no_grad():
            for p in policy.parameters():
                p.copy_(0.02 * torch.randn(p.shape, generator=gen))
        logits = []
        hook = policy.out.register_forward_hook(lambda module, args, out: logits.append(out.flatten()))
        with torch.no_grad():
            model(**batch)
            policy.out.bias.sub_(logits[0].median())
        hook.remove()
    return model


# ---------------------------------------------------------------------------- letter words
# Alphabetic words of three letters (what the attacks substitute and insert), and one marked word.
LETTERS = ["".join(p) for p in itertools.product("bcd", "aei", "kl")]  # "bak", "bal", ... (18 words)
MARKED = "zap"


def letter_tokenizer():
    """A word-level BERT tokenizer over LETTERS and MARKED."""
    from transformers import BertTokenizerFast

    vocab = {t: i for i, t in enumerate([*SPECIAL, *LETTERS, MARKED])}
    return BertTokenizerFast(vocab=vocab, model_max_length=64)


# ---------------------------------------------------------------------------- WordNet files
WORDNET_HEADER = "  1 This software and database is being provided to you, the LICENSEE\n  2 by Princeton University\n"


def write_wordnet(folder: Path, synsets: dict) -> dict[str, bytes]:
    """WordNet's index.* and data.* files (a licence header, index lines, data lines found by byte offset)
    for {pos: [(words of a synset), ...]} over noun, verb, adj and adv; returns their bytes by name."""
    files = {}
    for pos in ("noun", "verb", "adj", "adv"):
        data, lemmas = WORDNET_HEADER, {}
        for words in synsets.get(pos, []):
            offset = len(data.encode())
            fields = " ".join(f"{w} 0" for w in words)
            data += f"{offset:08d} 03 {pos[0]} {len(words):02x} {fields} 000 | a gloss  \n"
            for w in words:
                lemmas.setdefault(w.split("(")[0].lower(), []).append(offset)
        index = WORDNET_HEADER + "".join(f"{lemma} {pos[0]} {len(o)} 0 {len(o)} 0 {' '.join(f'{x:08d}' for x in o)}  \n"
                                         for lemma, o in sorted(lemmas.items()))
        files[f"index.{pos}"], files[f"data.{pos}"] = index.encode(), data.encode()
    files["LICENSE.txt"] = b"WordNet Release 3.0\n"
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return files
