"""Diversity figures of a dataset: near-duplicate rate and distinct-n.

``near_duplicate_rate`` answers "what share of the texts has a near-duplicate
(word 3-gram Jaccard >= threshold) somewhere before it?". The compiled index
proposes pairs; each is confirmed with the exact Jaccard of the full shingle sets,
so a pair below the threshold never counts. A pair at or above it is missed only
if LSH never proposes it (banding chosen for a miss rate below 1e-6 at the
threshold, where the library's balanced choice misses ~60%), or if it lies within
about ``(1 - threshold) / shingles`` above the threshold and two of its shared
shingles collide in the index's 16-bit fingerprints (which then underrate it).

Why the index is asked at the threshold itself and not a little below (which
would absorb that fingerprint error): a query returns *every* stored text at or
above the index's threshold, so 20,000 template texts sitting pairwise just below
the threshold would each return all the others, 4e8 hits to confirm one by one.

Why two passes instead of one query per text: the same blow-up, for texts above
the threshold. The first pass keeps only representatives (texts with no earlier
representative near them), so the common case "a near-duplicate of an earlier
representative" is settled by one lookup; only representatives (and the rare text
whose best match the exact Jaccard rejects) are then checked against the rest,
and each of their hit lists is bounded by the size of one cluster.
"""

from __future__ import annotations

from collections.abc import Iterable

from .._core import SimilarityIndex, jaccard

__all__ = ["distinct_n", "near_duplicate_rate"]

#: Word shingles of this many words, as everywhere else in agentic-synth.
_NGRAM = 3
_NUM_PERM = 128
#: Highest acceptable chance that LSH never proposes a pair sitting exactly at the
#: threshold (pairs above it are missed even less often).
_MISS = 1e-6


def _lsh_rows(threshold: float) -> int:
    """Most rows per band (fewest false candidates) whose miss rate at ``threshold``
    stays under ``_MISS``; the library's balanced choice misses ~60% of pairs at 0.8,
    which is right for filtering but wrong for measuring."""
    best = 1
    for rows in range(1, _NUM_PERM + 1):
        bands = _NUM_PERM // rows
        if (1.0 - threshold**rows) ** bands <= _MISS:
            best = rows
    return best


def near_duplicate_rate(texts: Iterable[str], threshold: float = 0.8) -> float:
    """Share of ``texts`` that are near-duplicates of an earlier text: Jaccard
    similarity >= ``threshold`` over word 3-gram shingles of the normalised text
    (NFKC, case folded, whitespace collapsed; a text shorter than three words is
    one shingle; two empty texts are identical). 0.0 for no texts.

    Linear in practice: one compiled pass proposes candidates, exact Jaccard confirms
    them (see the module doc for the two tiny ways a pair can be missed).
    """
    if isinstance(texts, str):
        raise TypeError("expected an iterable of str, got a single str")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    total = 0
    repeats = 0
    seen: set[str] = set()
    distinct: list[str] = []
    for text in texts:
        total += 1
        if text in seen:
            repeats += 1  # an exact repeat is a near-duplicate at any threshold
        else:
            seen.add(text)
            distinct.append(text)
    if total == 0:
        return 0.0
    return (repeats + _near_duplicates(distinct, threshold)) / total


def _near_duplicates(texts: list[str], threshold: float) -> int:
    """How many of ``texts`` (all different strings) have an earlier near-duplicate."""
    rows = _lsh_rows(threshold)
    index = SimilarityIndex(
        "minhash",
        threshold,
        ngram=_NGRAM,
        shingle="word",
        num_perm=_NUM_PERM,
        bands=_NUM_PERM // rows,
        rows=rows,
        verify="exact",
    )
    n = len(texts)
    found = 0
    check: list[int] = []  # representatives, and texts their best match did not settle
    others: list[int] = []  # texts not stored by the first pass
    for k, best in enumerate(index.insert_if_new_many(texts)):
        if best is None:
            check.append(k)
            continue
        others.append(k)
        if jaccard(texts[best], texts[k], _NGRAM, "word") >= threshold:
            found += 1
        else:
            check.append(k)
    if not others:
        # every text is a representative: none has a candidate before it
        return found
    index.insert_many([texts[k] for k in others])  # they take positions n, n + 1, ...

    def original(position: int) -> int:
        return position if position < n else others[position - n]

    for k, hits in zip(check, index.query_many([texts[k] for k in check]), strict=True):
        text = texts[k]
        for position, _ in hits:  # most similar first: usually the first one settles it
            j = original(position)
            if j < k and jaccard(texts[j], text, _NGRAM, "word") >= threshold:
                found += 1
                break
    return found


def distinct_n(texts: Iterable[str], n: int) -> float:
    """Distinct ``n``-grams over all ``n``-grams of ``texts`` (distinct-1 and
    distinct-2 of Li et al. 2016, "A Diversity-Promoting Objective Function for Neural
    Conversation Models"): tokens are the whitespace-separated words of each
    lower-cased text, n-grams never span two texts. 0.0 when there is no n-gram."""
    if isinstance(texts, str):
        raise TypeError("expected an iterable of str, got a single str")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    total = 0
    if n == 1:
        words: set[str] = set()
        for text in texts:
            tokens = text.lower().split()
            total += len(tokens)
            words.update(tokens)
        return len(words) / total if total else 0.0
    grams: set[tuple[str, ...]] = set()
    for text in texts:
        tokens = text.lower().split()
        if len(tokens) >= n:
            total += len(tokens) - n + 1
            grams.update(zip(*(tokens[i:] for i in range(n)), strict=False))
    return len(grams) / total if total else 0.0
