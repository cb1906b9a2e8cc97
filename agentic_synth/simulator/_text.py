"""Plausible English filler text, built once from a small built-in vocabulary.

Generating words one by one per request would cost more CPU than the whole
engine may spend, so a fixed corpus of grammatical sentences is built on first
use (seeded, identical on every run and platform) and a request's text is a
run of its sentences: starting where the request's hash points, and ending at
a sentence end (natural stop) or at ``max_tokens`` (cut). One word is one token.
"""

from __future__ import annotations

import random
from bisect import bisect_right
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
    """Pre-built sentences and running word counts, so a slice is a few joins."""

    __slots__ = ("_cumulative", "sentences", "words")

    def __init__(self, n_words: int = _CORPUS_WORDS, seed: int = _CORPUS_SEED) -> None:
        rng = random.Random(seed)
        sentences: list[str] = []
        cumulative = [0]
        while cumulative[-1] < n_words:
            words = _sentence(rng)
            sentences.append(" ".join(words))
            cumulative.append(cumulative[-1] + len(words))
        #: Sentences, each without leading or trailing space.
        self.sentences = sentences
        #: Words in the whole corpus.
        self.words = cumulative[-1]
        self._cumulative = cumulative

    def __len__(self) -> int:
        return len(self.sentences)

    def text(self, first: int, target: int, limit: int) -> tuple[str, int, bool]:
        """Text from sentence ``first`` (taken modulo the corpus) on.

        It runs to the end of the sentence holding word number ``target`` (1-based)
        unless that passes ``limit`` words, where it is cut mid-sentence. Returns the
        text, its word count and whether it was cut.
        """
        sentences = self.sentences
        cumulative = self._cumulative
        n = len(sentences)
        first %= n
        base = cumulative[first]
        # Absolute (unwrapped) index of the sentence holding word ``min(target, limit)``;
        # when the text is cut, that sentence also holds word ``limit``.
        laps, offset = divmod(base + min(target, limit) - 1, self.words)
        last = laps * n + bisect_right(cumulative, offset) - 1
        count = laps * self.words + cumulative[last - laps * n + 1] - base
        cut = count > limit or target > limit
        if last < n:
            whole = sentences[first:last] if cut else sentences[first : last + 1]
        else:
            whole = [sentences[i % n] for i in range(first, last if cut else last + 1)]
        if not cut:
            return " ".join(whole), count, False
        tail_words = sentences[last % n].split(" ")
        keep = len(tail_words) - (count - limit)
        whole.append(" ".join(tail_words[:keep]))
        return " ".join(whole), limit, True


@cache
def corpus() -> Corpus:
    """The shared corpus, built on first use (~50 ms)."""
    return Corpus()
