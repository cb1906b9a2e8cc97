"""No input may crash the process or raise anything but a Python exception:
arbitrary Unicode, lone surrogates, NUL bytes, empty and 10 MB strings."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentic_synth.similarity import (
    SimilarityIndex,
    jaccard,
    minhash,
    normalize,
    shingles,
    simhash,
    simhash_many,
)

any_text = st.text(max_size=200)
NASTY = [
    "",
    " ",
    "\x00",
    "a\x00b\x00\x00c",
    "\ud800",
    "x\udfff y \ud83d",
    "\U0010ffff" * 10,
    "\u0301\u0301 e\u0301",
    "ﷺ ﷻ",  # NFKC expands these into long sequences
    "İ ß ẞ ﬀ ǅ",
    "\u202e\u200b\ufeff",
    "\x1c\x1d\x1e\x1f",
    "🧑🏽‍🚀 " * 50,
]


@given(any_text, any_text)
@settings(max_examples=150, deadline=None)
def test_functions_accept_any_text(a: str, b: str) -> None:
    assert 0.0 <= jaccard(a, b) <= 1.0
    assert 0.0 <= jaccard(a, b, 4, "char") <= 1.0
    assert len(minhash(a, 32)) == 32
    assert 0 <= simhash(a) < 2**64
    norm = normalize(a)
    assert normalize(norm) == norm  # idempotent
    assert "  " not in norm and norm == norm.strip(" ")
    assert all(s for s in shingles(b))


@given(st.lists(any_text, max_size=30))
@settings(max_examples=60, deadline=None)
def test_every_method_accepts_any_text(batch: list[str]) -> None:
    for ix in (SimilarityIndex(), SimilarityIndex("simhash"), SimilarityIndex("exact")):
        decisions = ix.insert_if_new_many(batch)
        assert len(decisions) == len(batch)
        assert all(d is None or 0 <= d < i for i, d in enumerate(decisions))
        for text in batch:
            assert ix.query(text), "a stored or rejected text always finds a match"


@pytest.mark.parametrize("text", NASTY)
def test_nasty_strings(text: str) -> None:
    for ix in (
        SimilarityIndex(),
        SimilarityIndex(shingle="char", ngram=2),
        SimilarityIndex("simhash"),
    ):
        assert ix.insert_if_new(text) is None
        assert ix.insert_if_new(text) == 0
        assert ix.query(text)[0][0] == 0
    assert jaccard(text, text) == 1.0
    assert isinstance(normalize(text), str)


def test_lone_surrogates_become_replacement_characters() -> None:
    assert "\ufffd" in normalize("a\ud800b")
    assert jaccard("a \ud800 b", "a \udc00 b") == 1.0  # both become U+FFFD


def test_ten_megabyte_strings() -> None:
    big = ("lorem ipsum dolor sit amet " * 400_000)[:10_000_000]
    unicode_big = "ǅ€\x00 " * 1_430_000  # ~10 MB of UTF-8 that NFKC and folding rewrite
    assert len(big) == 10_000_000 and len(unicode_big.encode()) > 10_000_000
    ix = SimilarityIndex()
    assert ix.insert_if_new(big) is None
    assert ix.insert_if_new(big + " tail") == 0
    char_ix = SimilarityIndex(shingle="char", ngram=5, num_perm=16)
    assert char_ix.insert_many([big, unicode_big]) == [0, 1]
    assert char_ix.query(unicode_big)[0] == (1, 1.0)
    assert len(simhash_many([big])) == 1
    assert len(minhash(big, 16)) == 16
    assert jaccard(big, big) == 1.0


def test_non_string_inputs_raise_type_error() -> None:
    ix = SimilarityIndex()
    for bad in (None, 1, b"bytes", ["list"]):
        with pytest.raises(TypeError):
            ix.insert_if_new(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        jaccard(b"a", "b")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        simhash_many([None])  # type: ignore[list-item]
    with pytest.raises((TypeError, OverflowError)):
        ix.remove(-1)
