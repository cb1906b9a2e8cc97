"""Diversity figures against brute-force references written in plain Python.

The near-duplicate reference compares every pair with the standard library's
shingling (agentic_synth.similarity._corpus.reference_shingles: NFKC + case fold +
whitespace split, word 3-grams), so the compiled index, its LSH banding and its
fingerprints are all checked at once. Texts come from a tiny vocabulary so that
near-duplicates, exact repeats, short texts and empty texts are all common.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentic_synth.datasets._diversity import distinct_n, near_duplicate_rate
from agentic_synth.similarity._corpus import jaccard_sets, reference_shingles

WORDS = ["a", "b", "c", "d", "A", "B", "ﬁ", "fi", "e"]  # case and NFKC variants too


def brute_near_duplicate_rate(texts: list[str], threshold: float) -> float:
    sets = [reference_shingles(t) for t in texts]
    dups = sum(
        any(jaccard_sets(sets[j], sets[i]) >= threshold for j in range(i)) for i in range(len(sets))
    )
    return dups / len(texts) if texts else 0.0


def brute_distinct_n(texts: list[str], n: int) -> float:
    grams = []
    for text in texts:
        tokens = text.lower().split()
        grams += [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def _mutate(draw: st.DrawFn, base: str) -> str:
    words = base.split()
    for _ in range(draw(st.integers(0, 2))):
        op = draw(st.sampled_from(["swap", "drop", "add"]))
        if op == "add" or not words:
            words.insert(draw(st.integers(0, len(words))), draw(st.sampled_from(WORDS)))
        elif op == "drop":
            words.pop(draw(st.integers(0, len(words) - 1)))
        else:
            words[draw(st.integers(0, len(words) - 1))] = draw(st.sampled_from(WORDS))
    sep = draw(st.sampled_from([" ", "  ", "\t", "\n "]))
    return sep.join(words)


@st.composite
def corpora(draw: st.DrawFn) -> list[str]:
    texts: list[str] = []
    for _ in range(draw(st.integers(0, 30))):
        near_copy: bool = draw(st.booleans())
        if texts and near_copy:
            texts.append(_mutate(draw, draw(st.sampled_from(texts))))
        else:
            n = draw(st.integers(0, 14))
            texts.append(" ".join(draw(st.lists(st.sampled_from(WORDS), min_size=n, max_size=n))))
    return texts


@settings(max_examples=400, deadline=None, derandomize=True)
@given(corpora(), st.sampled_from([0.3, 0.5, 0.8, 0.9, 1.0]))
def test_near_duplicate_rate_matches_all_pairs(texts: list[str], threshold: float) -> None:
    assert near_duplicate_rate(texts, threshold) == brute_near_duplicate_rate(texts, threshold)


def test_near_duplicate_rate_long_texts_match_all_pairs() -> None:
    """Long texts (hundreds of shingles) make the index's 16-bit fingerprints collide;
    the exact confirmation keeps the figure exact anyway. Edits sweep Jaccard across
    the threshold."""
    rng = random.Random(7)
    vocab = [f"w{i}" for i in range(400)]
    texts: list[str] = []
    for _ in range(120):
        if texts and rng.random() < 0.6:
            words = rng.choice(texts).split()
            for _ in range(rng.randint(0, 12)):
                words[rng.randrange(len(words))] = rng.choice(vocab)
            texts.append(" ".join(words))
        else:
            texts.append(" ".join(rng.choices(vocab, k=rng.randint(150, 300))))
    expected = brute_near_duplicate_rate(texts, 0.8)
    assert 0.1 < expected < 0.6  # the corpus does straddle the threshold
    assert near_duplicate_rate(texts, 0.8) == expected


def test_near_duplicate_rate_chains_count_every_earlier_text() -> None:
    """C is within the threshold of B only, and B of A only: C still counts (its
    earlier near-duplicate B was itself a duplicate), which keep-first filtering
    alone would miss."""
    words = [f"w{i}" for i in range(100)]
    a = " ".join(words)
    for i in (10, 30, 50):  # each changed word changes 3 of the 98 shingles
        words[i] = f"x{i}"
    b = " ".join(words)
    for i in (70, 80, 90):
        words[i] = f"x{i}"
    c = " ".join(words)
    sets = [reference_shingles(t) for t in (a, b, c)]
    assert jaccard_sets(sets[0], sets[1]) >= 0.8
    assert jaccard_sets(sets[1], sets[2]) >= 0.8
    assert jaccard_sets(sets[0], sets[2]) < 0.8
    assert near_duplicate_rate([a, b, c]) == pytest.approx(2 / 3)


def test_near_duplicate_rate_one_big_cluster_is_settled_by_representatives() -> None:
    """20,000 texts, pairwise J = 8/10, the threshold itself (the last of 11 words
    differs): each one but the
    first is a near-duplicate. One query per text would list all the others as hits
    (4e8 tuples); the representative pass settles each with one lookup."""
    texts = [
        f"one long sentence about the same thing that ends with word{i}" for i in range(20_000)
    ]
    sets = [reference_shingles(t) for t in texts[:2]]
    assert jaccard_sets(*sets) == 0.8
    assert near_duplicate_rate(texts) == pytest.approx(19_999 / 20_000)


def test_near_duplicate_rate_edges() -> None:
    assert near_duplicate_rate([]) == 0.0
    assert near_duplicate_rate(["one text"]) == 0.0
    assert near_duplicate_rate(["", "  ", "\n"]) == pytest.approx(2 / 3)  # empties are equal
    assert near_duplicate_rate(["Hello World", "hello   world"]) == 0.5  # normalised
    assert near_duplicate_rate(iter(["x y z", "x y z"])) == 0.5  # any iterable
    with pytest.raises(TypeError):
        near_duplicate_rate("a string is not a list of texts")
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="threshold"):
            near_duplicate_rate(["a"], bad)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    st.lists(st.text(alphabet="abAB \t\n", max_size=25), max_size=20),
    st.integers(min_value=1, max_value=4),
)
def test_distinct_n_matches_reference(texts: list[str], n: int) -> None:
    assert distinct_n(texts, n) == pytest.approx(brute_distinct_n(texts, n))


def test_distinct_n_known_values() -> None:
    texts = ["the cat sat", "the cat ran"]
    assert distinct_n(texts, 1) == pytest.approx(4 / 6)  # the, cat, sat, ran
    assert distinct_n(texts, 2) == pytest.approx(3 / 4)  # (the cat) twice
    assert distinct_n(["The CAT", "the cat"], 1) == 0.5  # lower-cased
    assert distinct_n(["a b", "c d"], 3) == 0.0  # no 3-gram at all
    assert distinct_n([], 1) == 0.0
    with pytest.raises(ValueError):
        distinct_n(["a"], 0)
    with pytest.raises(TypeError):
        distinct_n("abc", 1)
