"""Plausible English filler text, built once from a small built-in vocabulary.

Generating words one by one per request would cost more CPU than the whole
engine may spend, so a fixed corpus of grammatical sentences is built on first
use (seeded, identical on every run and platform) and a request's text is a
slice of it: starting at a sentence start its hash picks, and ending at a
sentence end (natural stop) or at ``max_tokens`` (cut). One word is one token.
"""

from __future__ import annotations

import random
from bisect import bisect_left
from functools import cache

__all__ = ["Corpus", "corpus"]

_DETERMINERS = "the a this that every each one another some no".split()
_ADJECTIVES = """
    small large quick slow bright dark quiet loud early late simple complex new old
    young ancient careful curious gentle brave calm busy clever fresh warm cold heavy
    light narrow wide deep shallow strong weak rare common clear hidden open steady
    sudden gradual local distant modern practical useful strange familiar honest
    patient silent golden green blue red white gray wooden stone digital remote
    """.split()
_NOUNS = """
    river city garden teacher student engineer doctor farmer village market window
    door table letter story question answer idea plan system model network signal
    machine engine bridge road mountain forest ocean island cloud storm morning evening
    winter summer season kitchen library museum station harbor factory office school
    report message picture camera record song poem book chapter journey problem method
    result pattern measure value number record process project team leader neighbor
    friend family child parent traveler painter writer scientist worker captain pilot
    """.split()
_VERBS = """
    found built opened closed carried followed watched measured changed described
    noticed explained improved repaired visited reached crossed planned tested shared
    studied collected painted wrote read answered asked moved lifted held checked
    finished started kept left joined remembered forgot discovered counted compared
    """.split()
_ADVERBS = """
    slowly quickly carefully quietly suddenly finally already often rarely always
    usually soon later again nearly clearly simply gently easily eventually
    """.split()
_PREPOSITIONS = "near behind under over across through beside beyond around inside".split()
_CONNECTORS = ["and", "but", "because", "while", "so", "although", "before", "after"]

#: Words in the corpus; enough that slices rarely repeat at a glance.
_CORPUS_WORDS = 1 << 16
_CORPUS_SEED = 0x5EED_7E47


def _noun_phrase(rng: random.Random, out: list[str]) -> None:
    out.append(rng.choice(_DETERMINERS))
    if rng.random() < 0.55:
        out.append(rng.choice(_ADJECTIVES))
    out.append(rng.choice(_NOUNS))


def _clause(rng: random.Random, out: list[str]) -> None:
    _noun_phrase(rng, out)
    if rng.random() < 0.25:
        out.append(rng.choice(_ADVERBS))
    out.append(rng.choice(_VERBS))
    _noun_phrase(rng, out)
    if rng.random() < 0.45:
        out.append(rng.choice(_PREPOSITIONS))
        _noun_phrase(rng, out)


def _sentence(rng: random.Random) -> list[str]:
    words: list[str] = []
    _clause(rng, words)
    if rng.random() < 0.4:
        words[-1] += ","
        words.append(rng.choice(_CONNECTORS))
        _clause(rng, words)
    words[0] = words[0].capitalize()
    words[-1] += "?" if rng.random() < 0.06 else "."
    return words


class Corpus:
    """Space-prefixed word tokens plus where each sentence ends."""

    __slots__ = ("_end_after", "sentence_starts", "tokens")

    def __init__(self, n_words: int = _CORPUS_WORDS, seed: int = _CORPUS_SEED) -> None:
        rng = random.Random(seed)
        tokens: list[str] = []
        starts: list[int] = []
        ends: list[int] = []
        while len(tokens) < n_words:
            starts.append(len(tokens))
            tokens.extend(" " + w for w in _sentence(rng))
            ends.append(len(tokens))
        #: ``tokens[i]`` is one word with its leading space (the first one needs stripping).
        self.tokens = tokens
        #: Index of the first token of every sentence.
        self.sentence_starts = starts
        self._end_after = ends

    def __len__(self) -> int:
        return len(self.tokens)

    def sentence_end(self, index: int) -> int:
        """Exclusive end of the sentence containing token ``index`` (may exceed ``len``)."""
        size = len(self.tokens)
        laps, index = divmod(index, size)
        return laps * size + self._end_after[bisect_left(self._end_after, index + 1)]

    def slice(self, start: int, end: int) -> list[str]:
        """Tokens ``start..end``, wrapping around the corpus end when needed."""
        tokens = self.tokens
        size = len(tokens)
        if end <= size:
            return tokens[start:end]
        out = tokens[start:]
        remaining = end - size
        while remaining > 0:
            out.extend(tokens[: min(remaining, size)])
            remaining -= size
        return out


@cache
def corpus() -> Corpus:
    """The shared corpus, built on first use (~50 ms)."""
    return Corpus()
