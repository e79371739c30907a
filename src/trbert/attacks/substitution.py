"""A word-substitution attack on the prediction, in the spirit of BERT-Attack (Li et al., 2020): find
the words the prediction leans on, then replace them one at a time, most important first, until the
prediction changes or the edit budget is spent.

Candidates come from WordNet 3.0 (`trbert.data.wordnet`) instead of a masked language model (the
embedded MiniLM has none): a word may only become one of its WordNet synonyms (a single word sharing
a synset with it). That, with no stop words or words under 3 letters replaced, the word's case and
punctuation kept, and at most `fraction` of the visible words changed, is the constraint that keeps a
substitution's meaning. WordNet lists base forms, so inflected words ("shares") have no candidates.

Importance: the drop in the true class's probability when the word is deleted (all visible words
with candidates deleted in one batch). Each replaced word takes the synonym that lowers the true
class's probability most; a synonym that changes the prediction ends the attack.
"""

from collections.abc import Callable
from dataclasses import dataclass

from .victim import Victim, edit_budget, split_punctuation, substitute

STOP_WORDS = frozenset(
    "about above after again against all also and any are because been before being below between both but "
    "can could did does doing down during each few for from further had has have having her here hers him "
    "his how into its just more most not now off once only other our out over own same she should some "
    "such than that the their them then there these they this those through too under until very was were "
    "what when where which while who whom why will with would you your".split()
)


@dataclass
class SubstitutionResult:
    text: str  # the attacked text (the original when the model was wrong on it)
    label: int
    clean_correct: bool  # the model's prediction on the original text was right
    success: bool  # the prediction changed from right to wrong
    changed: int  # words replaced
    queries: int  # texts run through the model
    clean_kept: float | None  # mean kept fraction before and after (None without reduction)
    kept: float | None


def _kept(measured, i: int) -> float | None:
    if measured.kept_lengths is None:
        return None
    return float(measured.kept_lengths[i].double().mean() / measured.lengths[i])


def _recase(original: str, word: str) -> str:
    if original.isupper() and len(original) > 1:
        return word.upper()
    return word.capitalize() if original[:1].isupper() else word


def attack(victim: Victim, text: str, label: int, synonyms: Callable[[str], list[str]], fraction: float = 0.1,
           max_candidates: int = 8) -> SubstitutionResult:
    """Attack one text whose true class is `label` (module docstring)."""
    words = text.split()
    clean = victim.measure([text])
    queries = 1
    if int(clean.pred[0]) != label:
        return SubstitutionResult(text, label, False, False, 0, queries, _kept(clean, 0), _kept(clean, 0))
    visible = victim.visible_words(words)
    budget = edit_budget(visible, fraction)
    options = {}
    for i in range(visible):
        before, core, after = split_punctuation(words[i])
        if len(core) < 3 or not core.isalpha() or core.lower() in STOP_WORDS:
            continue
        found = [s for s in synonyms(core.lower()) if s.isalpha()][:max_candidates]
        if found:
            options[i] = [before + _recase(core, s) + after for s in found]
    if not options:
        return SubstitutionResult(text, label, True, False, 0, queries, _kept(clean, 0), _kept(clean, 0))
    # Importance: how much deleting the word lowers the true class's probability (deleting the only word
    # leaves no text: it counts as losing all of it)
    rests = [" ".join(words[:i] + words[i + 1:]) for i in options]
    readable = [j for j, rest in enumerate(rests) if rest.strip()]
    drop = clean.probs[0, label].repeat(len(rests))
    if readable:
        deleted = victim.measure([rests[j] for j in readable])
        drop[readable] = clean.probs[0, label] - deleted.probs[:, label]
        queries += len(readable)
    order = [list(options)[int(j)] for j in drop.argsort(descending=True)]
    true_prob, kept, changed = float(clean.probs[0, label]), _kept(clean, 0), 0
    for i in order:
        if changed == budget:
            break
        variants = [substitute(words, i, new) for new in options[i]]
        measured = victim.measure([" ".join(v) for v in variants])
        queries += len(variants)
        flipped = [j for j in range(len(variants)) if int(measured.pred[j]) != label]
        best = min(flipped or range(len(variants)), key=lambda j: float(measured.probs[j, label]))
        if not flipped and float(measured.probs[best, label]) >= true_prob:
            continue  # no synonym of this word helps: leave it
        words, true_prob, kept, changed = variants[best], float(measured.probs[best, label]), _kept(measured, best), changed + 1
        if flipped:
            return SubstitutionResult(" ".join(words), label, True, True, changed, queries, _kept(clean, 0), kept)
    return SubstitutionResult(" ".join(words), label, True, False, changed, queries, _kept(clean, 0), kept)
