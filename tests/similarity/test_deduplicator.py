"""The public Deduplicator API."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentic_synth.similarity import Deduplicator, Match, SimilarityIndex

BASE = (
    "Summarise the water cycle for children aged eight in a playful tone and end "
    "with a short quiz of three questions about clouds and rain"
)
NEAR = BASE.replace("rain", "snow")
OTHER = "Draft a formal cover letter for a marine biologist applying to a museum in a foggy harbour"


def test_add_and_add_batch_report_positions() -> None:
    d = Deduplicator()
    assert d.add(BASE) is True
    assert d.add(NEAR) is False
    assert d.seen == 2
    start = d.seen
    assert d.add_batch([OTHER, NEAR, OTHER.upper(), "brand new text about something else"]) == [
        None,
        0,
        start,
        None,
    ]
    assert len(d) == 3
    assert d.insert_if_new(BASE) == 0
    assert d.next_position == d.seen == 7


def test_query_and_jaccard() -> None:
    d = Deduplicator()
    d.add_batch([BASE, OTHER])
    (match,) = d.query(NEAR)
    assert isinstance(match, Match)
    assert match.position == 0
    assert match.similarity == pytest.approx(d.jaccard(BASE, NEAR))
    assert d.query_batch([OTHER, "unrelated words only here"]) == [[Match(1, 1.0)], []]
    assert d.jaccard("a b c d", "a b c d") == 1.0
    assert Deduplicator(shingle="char", ngram=4).jaccard("abcdef", "abcdeg") == pytest.approx(2 / 4)


def test_clusters_group_rejections_under_the_kept_text() -> None:
    d = Deduplicator()
    d.add_batch([BASE, OTHER, NEAR, BASE, OTHER + "!", "unique text number one here"])
    assert d.clusters() == [[0, 2, 3], [1, 4]]
    assert Deduplicator().clusters() == []


@pytest.mark.parametrize("method", ["minhash", "simhash", "exact"])
def test_methods(method: str) -> None:
    d = Deduplicator(method=method)  # type: ignore[arg-type]
    assert d.method == method
    assert d.add(BASE)
    assert not d.add(BASE.upper() + "  ")  # equal after normalisation: every method agrees
    assert d.add(OTHER)


def test_remove() -> None:
    d = Deduplicator()
    d.add_batch([BASE, OTHER])
    assert d.remove(0)
    assert not d.remove(0)
    assert d.add(NEAR)
    assert len(d) == 2


def test_save_and_load(tmp_path: Path) -> None:
    d = Deduplicator(0.7, ngram=2)
    d.add_batch([BASE, OTHER, NEAR])
    path = tmp_path / "dedup.bin"
    d.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["dedup.bin"]  # no temp file left
    back = Deduplicator.load(path)
    assert (back.threshold, back.seen, len(back)) == (0.7, 3, len(d))
    assert back.clusters() == d.clusters()
    assert back.add(NEAR) is False
    assert Deduplicator.from_bytes(d.to_bytes()).query(NEAR) == d.query(NEAR)
    (tmp_path / "bad.bin").write_bytes(b"not an index")
    with pytest.raises(ValueError):
        Deduplicator.load(tmp_path / "bad.bin")


def test_shares_the_compiled_index() -> None:
    ix = SimilarityIndex()
    d = Deduplicator.from_index(ix)
    d.add(BASE)
    assert d.index is ix
    assert ix.insert_if_new(NEAR) == 0
    assert "Deduplicator(method='minhash'" in repr(d)
    assert d.memory_bytes() > 0


async def test_add_batch_async() -> None:
    d = Deduplicator()
    assert await d.add_batch_async(iter([BASE, NEAR, OTHER])) == [None, 0, None]
    with pytest.raises(TypeError):
        await d.add_batch_async(BASE)


def test_generators_are_accepted() -> None:
    d = Deduplicator()
    assert d.add_batch(t for t in [BASE, NEAR]) == [None, 0]
