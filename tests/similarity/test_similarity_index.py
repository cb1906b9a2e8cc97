"""SimilarityIndex through the binding: semantics, batches, persistence, threads."""

from __future__ import annotations

import pickle
import random
import threading

import pytest

from agentic_synth.similarity import SimilarityIndex
from agentic_synth.similarity._corpus import make_corpus

BASE = (
    "Write a short story about a lighthouse keeper who finds a message in a bottle "
    "and decides to sail across the northern sea to return it before winter"
)
OTHER = "Explain compound interest to retirees using one everyday analogy and no jargon at all"

METHODS = [
    {"method": "minhash", "verify": "exact"},
    {"method": "minhash", "verify": "signature"},
    {"method": "minhash", "verify": "none"},
    {"method": "minhash", "verify": "exact", "shingle": "char", "ngram": 5},
    {"method": "simhash", "max_distance": 3},
    {"method": "exact"},
]


def make(**kw: object) -> SimilarityIndex:
    return SimilarityIndex(**kw)  # type: ignore[arg-type]


def test_streaming_dedup_primitive() -> None:
    ix = SimilarityIndex()
    assert ix.insert_if_new(BASE) is None
    assert ix.insert_if_new(BASE.replace("winter", "spring")) == 0
    assert ix.insert_if_new(BASE.upper()) == 0
    assert ix.insert_if_new(OTHER) is None
    assert len(ix) == 2
    assert ix.next_position == 4
    assert ix.duplicates() == [(1, 0), (2, 0)]
    hits = ix.query(BASE.replace("winter", "spring"))
    assert [p for p, _ in hits] == [0]
    assert 0.8 <= hits[0][1] < 1.0
    assert ix.query("nothing like the others at all, really not") == []


def test_settings_are_resolved_and_exposed() -> None:
    ix = SimilarityIndex()
    assert (ix.method, ix.threshold, ix.ngram, ix.shingle, ix.num_perm) == (
        "minhash",
        0.8,
        3,
        "word",
        128,
    )
    assert (ix.bands, ix.rows, ix.verify) == (16, 8, "exact")
    assert SimilarityIndex(verify="none").bands == 9
    assert SimilarityIndex(bands=20).rows == 6
    assert SimilarityIndex("simhash").bands is None
    assert "bands=16" in repr(ix)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"threshold": 0.0},
        {"threshold": 1.5},
        {"threshold": float("nan")},
        {"num_perm": 0},
        {"bands": 20, "rows": 7},
        {"ngram": 0},
        {"method": "lsh"},
        {"verify": "maybe"},
        {"shingle": "token"},
        {"method": "simhash", "max_distance": 4},
    ],
)
def test_invalid_settings_raise_value_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        make(**kwargs)


@pytest.mark.parametrize("kwargs", METHODS)
def test_batch_equals_one_by_one(kwargs: dict[str, object]) -> None:
    corpus = make_corpus(600, seed=11).texts
    one = make(**kwargs)
    expected = [one.insert_if_new(t) for t in corpus]
    many = make(**kwargs)
    got = many.insert_if_new_many(corpus[:250]) + many.insert_if_new_many(iter(corpus[250:]))
    assert got == expected
    assert many.duplicates() == one.duplicates()
    assert many.to_bytes() == one.to_bytes()


def test_batch_equals_one_by_one_across_chunk_seams() -> None:
    # More texts than one internal chunk (16,384), duplicates spread across chunks.
    rng = random.Random(5)
    pool = make_corpus(3000, seed=12).texts
    texts = [rng.choice(pool) for _ in range(20_000)]
    one = SimilarityIndex()
    expected = [one.insert_if_new(t) for t in texts]
    many = SimilarityIndex()
    assert many.insert_if_new_many(texts) == expected
    assert len(many) == len(one)


@pytest.mark.parametrize("kwargs", METHODS)
def test_insert_many_query_many_and_remove(kwargs: dict[str, object]) -> None:
    texts = [BASE, OTHER, BASE.replace("bottle", "jar")]
    ix = make(**kwargs)
    assert ix.insert_many(texts) == [0, 1, 2]
    results = ix.query_many(texts)
    assert [p for p, _ in results[1]] == [1]
    assert results[0][0][0] == 0
    assert results[0][0][1] == pytest.approx(1.0)
    assert ix.remove(0)
    assert not ix.remove(0)
    assert not ix.remove(99)
    assert all(p != 0 for p, _ in ix.query(BASE))
    assert len(ix) == 2
    assert ix.insert(BASE) == 3


@pytest.mark.parametrize("kwargs", METHODS)
def test_save_load_round_trip(kwargs: dict[str, object]) -> None:
    corpus = make_corpus(300, seed=13).texts
    ix = make(**kwargs)
    ix.insert_if_new_many(corpus[:200])
    ix.remove(3)
    back = SimilarityIndex.from_bytes(ix.to_bytes())
    assert (back.method, len(back), back.next_position) == (ix.method, len(ix), ix.next_position)
    assert back.duplicates() == ix.duplicates()
    assert back.query_many(corpus) == ix.query_many(corpus)
    assert back.insert_if_new_many(corpus[200:]) == ix.insert_if_new_many(corpus[200:])
    clone = pickle.loads(pickle.dumps(ix))
    assert clone.query_many(corpus[:20]) == ix.query_many(corpus[:20])


def test_corrupt_or_foreign_bytes_raise_value_error() -> None:
    ix = SimilarityIndex()
    ix.insert_many([BASE, OTHER])
    data = ix.to_bytes()
    for bad in (b"", b"junk", data[:-1], data[:20], bytes([data[0] ^ 1]) + data[1:]):
        with pytest.raises(ValueError):
            SimilarityIndex.from_bytes(bad)
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    with pytest.raises(ValueError):
        SimilarityIndex.from_bytes(bytes(flipped))


def test_batch_arguments_are_checked() -> None:
    ix = SimilarityIndex()
    with pytest.raises(TypeError):
        ix.insert_if_new_many("a single string")
    with pytest.raises(TypeError):
        ix.insert_many([BASE, 3])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        ix.query_many(5)  # type: ignore[arg-type]
    assert ix.next_position == 0


def test_concurrent_use_from_threads_is_serialised() -> None:
    ix = SimilarityIndex()
    corpus = make_corpus(400, seed=14).texts
    results: list[list[int | None]] = [[] for _ in range(4)]

    def work(k: int) -> None:
        for t in corpus[k::4]:
            results[k].append(ix.insert_if_new(t))
        results[k].extend(ix.insert_if_new_many(corpus[k::4]))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = sum(len(r) for r in results)
    assert total == 800 == ix.next_position
    # Every text of the second round repeats one of the first: all are rejected.
    assert all(r is not None for res in results for r in res[100:])
    assert len(ix) + len(ix.duplicates()) == 800


def test_claim_returns_the_position_taken_and_the_earlier_match_atomically() -> None:
    import threading

    from agentic_synth.similarity import Deduplicator

    d = Deduplicator(0.8)
    assert d.claim(BASE) == (0, None)
    assert d.claim(BASE.upper()) == (1, 0)  # a near-duplicate still takes a position
    texts = [f"{BASE} {i} {i * 31} {i * 97} unique tail {i * 7}" for i in range(2000)]
    claimed: list[tuple[int, int | None]] = []
    lock = threading.Lock()

    def worker(chunk: list[str]) -> None:
        for text in chunk:
            got = d.claim(text)
            with lock:
                claimed.append(got)

    threads = [threading.Thread(target=worker, args=(texts[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    positions = sorted(p for p, _ in claimed)
    assert positions == list(range(2, 2002))  # every caller saw its own position, no repeats
