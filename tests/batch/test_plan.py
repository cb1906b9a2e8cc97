"""Planning: custom ids map back to inputs, job ids are stable, batches fit the limits."""

from __future__ import annotations

import re

import pytest

from agentic_synth._types import Request
from agentic_synth.batch import custom_id, index_of, job_id
from agentic_synth.batch._plan import split
from agentic_synth.providers._batch import BatchItem, BatchLimits

ALLOWED = re.compile(r"[A-Za-z0-9_-]{1,64}")


def item(i: int, text: str = "x") -> BatchItem:
    return BatchItem(custom_id(i), "m", Request([{"role": "user", "content": text}], 8))


@pytest.mark.parametrize("index", [0, 1, 9, 10, 12345, 10**18 - 1, 2**63 - 1])
def test_custom_id_round_trip(index: int) -> None:
    cid = custom_id(index)
    assert ALLOWED.fullmatch(cid)
    assert index_of(cid) == index


@pytest.mark.parametrize("value", ["", "i", "i-1", "i01", "x1", "i1 ", "I1", "i1a", "i" + "9" * 20])
def test_ids_that_are_not_ours_map_to_nothing(value: str) -> None:
    assert index_of(value) is None


def test_custom_id_refuses_a_negative_index() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        custom_id(-1)


def test_job_id_depends_on_models_and_digests_in_order() -> None:
    a, b = b"a" * 16, b"b" * 16
    base = job_id(["sim:sim-1"], [a, b])
    assert base == job_id(["sim:sim-1"], iter([a, b]))  # any iterable
    assert base.startswith("job-") and ALLOWED.fullmatch(base)
    assert base != job_id(["sim:sim-1"], [b, a])
    assert base != job_id(["sim:sim-2"], [a, b])
    assert base != job_id(["sim:sim-1", "sim:sim-2"], [a, b])
    assert base != job_id(["sim:sim-1"], [a, b, b])


def test_split_by_count() -> None:
    out = split([item(i) for i in range(10)], BatchLimits(4, 10**9), lambda _: 10)
    assert [[index_of(i.custom_id) for i in b] for b in out.batches] == [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [8, 9],
    ]
    assert out.oversized == []


def test_split_by_bytes_and_oversized_items_apart() -> None:
    sizes = {0: 40, 1: 40, 2: 30, 3: 101, 4: 100, 5: 1}
    out = split(
        [item(i) for i in sizes],
        BatchLimits(1000, 100),
        lambda it: sizes[index_of(it.custom_id) or 0],
    )
    assert [[index_of(i.custom_id) for i in b] for b in out.batches] == [[0, 1], [2], [4], [5]]
    assert [(index_of(i.custom_id), n) for i, n in out.oversized] == [(3, 101)]
    for batch in out.batches:
        assert sum(sizes[index_of(i.custom_id) or 0] for i in batch) <= 100


def test_split_refuses_impossible_limits() -> None:
    with pytest.raises(ValueError):
        split([item(0)], BatchLimits(0, 100), lambda _: 1)
