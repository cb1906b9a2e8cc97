"""Labelled near-duplicate corpora and a pure-Python exact ground truth.

Used by the tests and benchmarks to measure the compiled core against exact
Jaccard without downloading anything: prompt-like texts are generated from word
lists and templates (so unrelated prompts share boilerplate, as real templated
synthetic prompts do), then a share of them are re-emitted with controlled word
edits and surface noise. The ground truth is computed independently of the Rust
code (Python ``unicodedata``, ``str.casefold`` and sets).
"""

from __future__ import annotations

import math
import random
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_SUBJECTS = (
    "a lighthouse keeper",
    "a retired astronaut",
    "two rival chefs",
    "a young botanist",
    "an overworked nurse",
    "a city planner",
    "a stray cat",
    "a jazz pianist",
    "a data scientist",
    "a beekeeper",
    "a ferry captain",
    "a museum guard",
    "a teenage inventor",
    "a mountain guide",
    "a small-town librarian",
    "an AI assistant",
    "a marine biologist",
    "a night-shift baker",
    "a chess prodigy",
    "a weather forecaster",
)
_TOPICS = (
    "photosynthesis",
    "compound interest",
    "the water cycle",
    "binary search",
    "supply chains",
    "vaccination",
    "plate tectonics",
    "public key cryptography",
    "the French revolution",
    "climate adaptation",
    "sourdough fermentation",
    "database indexing",
    "migratory birds",
    "urban gardening",
    "quantum entanglement",
    "the immune system",
    "renewable energy",
    "medieval trade routes",
    "sleep hygiene",
    "volcanic eruptions",
    "game theory",
    "coral reefs",
    "inflation",
    "the printing press",
    "machine translation",
    "ocean currents",
    "bicycle maintenance",
    "jazz harmony",
    "carbon capture",
    "the Roman aqueducts",
)
_FORMS = (
    "short story",
    "poem",
    "blog post",
    "lesson plan",
    "product description",
    "dialogue",
    "news article",
    "tutorial",
    "FAQ",
    "cover letter",
    "speech",
    "recipe",
    "quiz",
    "summary",
    "email",
)
_AUDIENCES = (
    "children aged eight",
    "first-year students",
    "busy executives",
    "retirees",
    "software engineers",
    "tourists",
    "high school teachers",
    "new parents",
    "nurses",
    "hobby gardeners",
    "non-native speakers",
    "investors",
)
_ADJECTIVES = (
    "short",
    "funny",
    "thoughtful",
    "vivid",
    "concise",
    "warm",
    "formal",
    "playful",
    "detailed",
    "suspenseful",
    "gentle",
    "persuasive",
    "technical",
    "upbeat",
    "melancholic",
    "practical",
)
_PLACES = (
    "a foggy harbour",
    "a desert town",
    "an abandoned mall",
    "a research station in Antarctica",
    "a night market",
    "a mountain village",
    "a crowded train",
    "a floating city",
    "a school library",
    "a hospital rooftop",
    "a vineyard",
    "a space elevator",
)
_OBJECTS = (
    "a message in a bottle",
    "a broken compass",
    "an old photograph",
    "a mysterious key",
    "a stolen recipe",
    "a handwritten map",
    "a silent phone",
    "a borrowed umbrella",
    "a locked diary",
    "a cracked violin",
)
_TONES = (
    "hopeful",
    "ironic",
    "calm",
    "urgent",
    "friendly",
    "neutral",
    "dramatic",
    "encouraging",
)
_ENDINGS = (
    "a surprising twist",
    "an open question",
    "a call to action",
    "a short moral",
    "a bulleted checklist",
    "a one-line summary",
    "a memorable quote",
)
_VERBS = (
    "explain",
    "compare",
    "describe",
    "illustrate",
    "question",
    "celebrate",
    "criticise",
    "summarise",
    "connect",
    "imagine",
)
_FILLERS = (
    "really",
    "also",
    "perhaps",
    "carefully",
    "briefly",
    "clearly",
    "always",
    "never",
    "gently",
    "quickly",
    "honestly",
    "simply",
    "the",
    "a",
    "and",
    "with",
    "without",
    "about",
    "for",
    "very",
)

_TEMPLATES = (
    "Write a {adj} {form} about {subject} who finds {obj} in {place}.",
    "Explain {topic} to {audience} using one everyday analogy and no jargon.",
    "The {form} should {verb} how {topic} affects {subject} and their neighbours.",
    "Use a {tone} tone, keep it under {num} words, and end with {ending}.",
    "Include {num2} concrete examples set in {place} and mention {obj} at least once.",
    "Assume the reader knows nothing about {topic} but has met {subject} before.",
    "Avoid clichés, do not use the word {word}, and vary the sentence length.",
    "Start with a question that makes {audience} curious about {topic}.",
    "Add a {adj} title and a one-sentence hook that a {form} editor would accept.",
    "Finally, {verb} the strongest counterargument about {topic} in {tone} language.",
    "Set the scene in {place} at dawn, where {subject} is waiting for news.",
    "Make sure every paragraph connects {topic} back to {obj}.",
)


def _fill(template: str, rng: random.Random) -> str:
    return template.format(
        adj=rng.choice(_ADJECTIVES),
        form=rng.choice(_FORMS),
        subject=rng.choice(_SUBJECTS),
        obj=rng.choice(_OBJECTS),
        place=rng.choice(_PLACES),
        topic=rng.choice(_TOPICS),
        audience=rng.choice(_AUDIENCES),
        verb=rng.choice(_VERBS),
        tone=rng.choice(_TONES),
        ending=rng.choice(_ENDINGS),
        num=rng.choice((80, 120, 150, 200, 250, 300, 400, 500)),
        num2=rng.choice(("two", "three", "four", "five")),
        word=rng.choice(_FILLERS + _ADJECTIVES),
    )


def make_prompt(rng: random.Random, target_words: int = 50) -> str:
    """One prompt of roughly ``target_words`` words, built from random template sentences."""
    sentences: list[str] = []
    words = 0
    for template in rng.sample(_TEMPLATES, len(_TEMPLATES)):
        sentence = _fill(template, rng)
        sentences.append(sentence)
        words += len(sentence.split())
        if words >= target_words:
            break
    return " ".join(sentences)


_EDIT_VOCAB: tuple[str, ...] = tuple(
    sorted(
        {
            w
            for group in (_TOPICS, _SUBJECTS, _PLACES, _OBJECTS, _AUDIENCES, _ADJECTIVES)
            for phrase in group
            for w in phrase.split()
        }
        | set(_FILLERS)
        | set(_VERBS)
        | set(_TONES)
    )
)


def edit_text(text: str, rate: float, rng: random.Random, *, noise: bool = True) -> str:
    """Apply word edits (substitute, delete, insert, swap) at ``rate`` per word, plus
    optional surface noise (case, spacing, full-width letters) that normalisation removes.
    """
    words = text.split()
    out: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        if rng.random() < rate:
            op = rng.random()
            if op < 0.5:
                out.append(rng.choice(_EDIT_VOCAB))
            elif op < 0.7:
                pass  # deletion
            elif op < 0.9:
                out.extend((w, rng.choice(_EDIT_VOCAB)))
            elif i + 1 < len(words):
                out.extend((words[i + 1], w))
                i += 1
            else:
                out.append(w)
        else:
            out.append(w)
        i += 1
    if not out:
        out = [rng.choice(_EDIT_VOCAB)]
    if noise:
        out = [_noisy(w, rng) for w in out]
        seps = [rng.choice(("  ", "\n", "\t")) if rng.random() < 0.05 else " " for _ in out]
        return "".join(w + s for w, s in zip(out, seps, strict=True)).strip()
    return " ".join(out)


def _noisy(word: str, rng: random.Random) -> str:
    r = rng.random()
    if r < 0.03:
        return word.upper()
    if r < 0.08:
        return word.capitalize()
    if r < 0.082 and word.isascii() and word.isalpha():
        # Full-width forms: NFKC maps them back to ASCII.
        return "".join(chr(ord(c) + 0xFEE0) for c in word)
    return word


@dataclass(frozen=True, slots=True)
class Corpus:
    """Texts in stream order; ``sources[i]`` is the index of the text that text ``i``
    was derived from (-1 for an original) and ``edit_rates[i]`` the rate used."""

    texts: list[str]
    sources: list[int]
    edit_rates: list[float]


def make_corpus(
    n: int,
    *,
    seed: int = 0,
    derived_share: float = 0.5,
    max_edit_rate: float = 0.25,
    exact_share: float = 0.1,
    target_words: int = 50,
) -> Corpus:
    """``n`` prompt-like texts; about ``derived_share`` of them are edited copies of an
    earlier text (edit rate uniform in ``[0, max_edit_rate]``, or 0 with probability
    ``exact_share``), so similarities spread across any threshold of interest."""
    rng = random.Random(seed)
    texts: list[str] = []
    sources: list[int] = []
    rates: list[float] = []
    for i in range(n):
        if i > 0 and rng.random() < derived_share:
            src = rng.randrange(i)
            rate = 0.0 if rng.random() < exact_share else rng.uniform(0.0, max_edit_rate)
            texts.append(edit_text(texts[src], rate, rng))
            sources.append(src)
            rates.append(rate)
        else:
            texts.append(make_prompt(rng, target_words))
            sources.append(-1)
            rates.append(0.0)
    return Corpus(texts, sources, rates)


def reference_normalize(text: str) -> str:
    """NFKC + case fold + whitespace collapse, written with the standard library only."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return " ".join(folded.split())


def reference_shingles(text: str, ngram: int = 3) -> frozenset[str]:
    """Word ``ngram`` shingles of the normalised text (one shingle if it is shorter)."""
    words = reference_normalize(text).split()
    if not words:
        return frozenset()
    if len(words) <= ngram:
        return frozenset((" ".join(words),))
    return frozenset(" ".join(words[i : i + ngram]) for i in range(len(words) - ngram + 1))


def jaccard_sets(a: frozenset[str], b: frozenset[str]) -> float:
    """Exact Jaccard similarity, 1.0 for two empty sets."""
    if not a and not b:
        return 1.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)


def exact_pairs(sets: Sequence[frozenset[str]], threshold: float) -> set[tuple[int, int]]:
    """All pairs ``(i, j)``, ``i < j``, with exact Jaccard >= ``threshold``.

    An all-pairs similarity join with prefix and size filtering: exact (every pair
    is confirmed with ``jaccard_sets``) but far cheaper than comparing every pair.
    """
    freq: dict[str, int] = defaultdict(int)
    for s in sets:
        for tok in s:
            freq[tok] += 1
    # Rare tokens first, so prefixes are short lists of rare tokens.
    ordered = [sorted(s, key=lambda t: (freq[t], t)) for s in sets]
    inverted: dict[str, list[int]] = defaultdict(list)
    pairs: set[tuple[int, int]] = set()
    empties: list[int] = []
    for j in sorted(range(len(sets)), key=lambda k: len(sets[k])):
        toks = ordered[j]
        if not toks:
            pairs.update((min(e, j), max(e, j)) for e in empties)
            empties.append(j)
            continue
        need = math.ceil(threshold * len(toks) - 1e-9)
        prefix = toks[: len(toks) - need + 1]
        candidates: set[int] = set()
        for tok in prefix:
            candidates.update(inverted[tok])
        for i in candidates:
            # Processed in size order, so len(sets[i]) <= len(sets[j]).
            if len(sets[i]) >= threshold * len(sets[j]) - 1e-9:
                if jaccard_sets(sets[i], sets[j]) >= threshold:
                    pairs.add((min(i, j), max(i, j)))
        for tok in prefix:
            inverted[tok].append(j)
    return pairs


def precision_recall(
    predicted: Iterable[tuple[int, int]], truth: set[tuple[int, int]]
) -> tuple[float, float]:
    """Pair-level precision and recall (1.0 when the denominator is empty)."""
    pred = {(min(a, b), max(a, b)) for a, b in predicted}
    tp = len(pred & truth)
    precision = tp / len(pred) if pred else 1.0
    recall = tp / len(truth) if truth else 1.0
    return precision, recall
