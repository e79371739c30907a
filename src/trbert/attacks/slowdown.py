"""Slow-down attacks: edit an input so that the reduction steps keep more of its tokens, raising the
multiply-adds the model executes on it.

* `whitebox`: word substitutions guided by the gradient of the keep probabilities (summed over the
  reduction steps: for the "expected" keep rule, what each step keeps) with respect to the word
  embeddings; a first-order estimate ranks (word, replacement) pairs over the vocabulary, the best
  few are run, the costliest kept. Needs a learned policy.
* `blackbox`: greedy random search that sees only the cost (kept lengths): each round proposes
  substitutions and insertions of random vocabulary words at random visible positions, runs them in
  one batch and keeps the costliest, while it raises the cost.
* `append`: words appended to the end up to the maximum length, chosen greedily in chunks by cost
  (black-box); for texts that already fill the maximum length it changes nothing.

Both edit attacks change at most `fraction` of the visible words (at least one) and stop early after
`patience` steps in a row where no proposal raises the cost (white-box: 1 by default, the setting of the
results page; black-box: 2).
"""

import random
from dataclasses import dataclass

import torch

from .victim import Victim, edit_budget, insert, substitute


@dataclass
class SlowdownResult:
    text: str  # the attacked text
    edits: int  # words substituted or inserted (words appended, for `append`)
    queries: int  # texts run through the model
    clean_macs: float
    macs: float  # after the attack


def whitebox(victim: Victim, text: str, fraction: float = 0.1, candidates: int = 8, patience: int = 1) -> SlowdownResult:
    """Gradient-guided word substitutions that raise the keep probabilities (module docstring). After a
    step where no proposal adds cost, the words it proposed are set aside and the next-ranked tried, up
    to `patience` such steps in a row (1: stop at the first)."""
    words = text.split()
    budget = edit_budget(victim.visible_words(words), fraction)
    vocab_words, vocab_ids = victim.vocabulary_words
    table = victim.model.get_input_embeddings().weight.detach()
    candidate_rows = table[vocab_ids]  # [V', d]
    clean = cost = float(victim.measure([text]).macs[0])
    edited, tried, queries, edits, idle = set(), set(), 1, 0, 0
    while edits < budget and idle < patience:
        input_ids, word_ids, grad = keep_gradient(victim, words)
        first = {}
        for t, w in enumerate(word_ids):
            if w is not None and w not in first and w not in edited and w not in tried:
                first[w] = t
        if not first:
            break
        positions = torch.tensor(list(first.values()))
        g = grad[positions]  # [P, d]
        gain = g @ candidate_rows.T - (g * table[input_ids[positions]]).sum(-1, keepdim=True)  # [P, V']
        top = gain.flatten().topk(min(candidates, gain.numel())).indices
        order = list(first)
        proposals = [(order[int(i) // gain.shape[1]], vocab_words[int(i) % gain.shape[1]]) for i in top]
        texts = [" ".join(substitute(words, w, new)) for w, new in proposals]
        costs = victim.measure(texts).macs
        queries += len(texts)
        best = int(costs.argmax())
        if float(costs[best]) <= cost:
            idle += 1
            tried.update(w for w, _ in proposals)
            continue
        w, new = proposals[best]
        words, cost, idle = substitute(words, w, new), float(costs[best]), 0
        edited.add(w)
        tried.clear()  # the text changed: words set aside may help now
        edits += 1
    return SlowdownResult(" ".join(words), edits, queries, clean, cost)


def keep_gradient(victim: Victim, words: list[str]) -> tuple[torch.Tensor, list, torch.Tensor]:
    """(input ids [n], the word of each token, d(sum of the keep probabilities of every step) / d(word
    embeddings) [n, d]) of one text."""
    model = victim.model
    policies = getattr(model.base_model.encoder, "policy", None)  # a plain transformers model has none
    if not policies:
        raise ValueError("the white-box slow-down attack needs a model with learned keep policies "
                         "(selection='policy'); use the black-box attack for the others")
    enc = victim.tokenizer(words, is_split_into_words=True, truncation=True, max_length=victim.max_length,
                           return_tensors="pt")
    captured, probs = {}, []

    def leaf(module, inputs, output):  # the word embeddings become the leaf the gradient is taken at
        captured["embeddings"] = output.detach().requires_grad_(True)
        return captured["embeddings"]

    hooks = [model.get_input_embeddings().register_forward_hook(leaf)]
    hooks += [p.register_forward_hook(lambda module, inputs, output: probs.append(output)) for p in policies]
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
            objective = sum(p.float().sum() for p in probs)
            (grad,) = torch.autograd.grad(objective, captured["embeddings"])
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return enc["input_ids"][0], enc.word_ids(0), grad[0].float()


def blackbox(victim: Victim, text: str, fraction: float = 0.1, candidates: int = 8,
             rng: random.Random | None = None, patience: int = 2) -> SlowdownResult:
    """Greedy random search over substitutions and insertions that sees only the cost (module docstring).
    Stops after `patience` rounds in a row without a gain."""
    rng = rng or random.Random(0)
    words = text.split()
    visible = victim.visible_words(words)
    budget = edit_budget(visible, fraction)
    pool = victim.vocabulary_words[0]
    clean = cost = float(victim.measure([text]).macs[0])
    queries, edits, idle = 1, 0, 0
    while edits < budget and idle < patience and visible > 0:
        proposals = []
        for _ in range(candidates):
            i, new = rng.randrange(visible), rng.choice(pool)
            proposals.append(substitute(words, i, new) if rng.random() < 0.5 else insert(words, i, new))
        costs = victim.measure([" ".join(p) for p in proposals]).macs
        queries += len(proposals)
        best = int(costs.argmax())
        if float(costs[best]) <= cost:
            idle += 1
            continue
        words, cost, idle = proposals[best], float(costs[best]), 0
        edits += 1
        visible = victim.visible_words(words)
    return SlowdownResult(" ".join(words), edits, queries, clean, cost)


def append(victim: Victim, text: str, chunk: int = 8, candidates: int = 8,
           rng: random.Random | None = None) -> SlowdownResult:
    """Vocabulary words appended in chunks, the costliest of `candidates` chunks each time, until the text
    fills the maximum length (module docstring)."""
    rng = rng or random.Random(0)
    words = text.split()
    pool = victim.vocabulary_words[0]
    clean = victim.measure([text])
    cost, queries, added = float(clean.macs[0]), 1, 0
    length = int(clean.lengths[0])
    while length < victim.max_length:
        proposals = [words + rng.sample(pool, chunk) for _ in range(candidates)]
        measured = victim.measure([" ".join(p) for p in proposals])
        queries += len(proposals)
        best = int(measured.macs.argmax())
        words, cost, length = proposals[best], float(measured.macs[best]), int(measured.lengths[best])
        added += chunk
    return SlowdownResult(" ".join(words), added, queries, float(clean.macs[0]), cost)
