"""The in-memory tier: first write wins, TTL on a fake clock, byte and entry bounds,
scan resistance (write-once keys never push out re-read ones), governor eviction."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from agentic_synth.caching import CacheTier
from agentic_synth.caching._memory import MemoryTier


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def key(i: int) -> bytes:
    return i.to_bytes(16, "big")


def test_get_put_and_first_write_wins() -> None:
    tier = MemoryTier()
    assert tier.get_nowait(key(1)) is None
    tier.put_nowait(key(1), b"first")
    tier.put_nowait(key(1), b"second")
    assert tier.get_nowait(key(1)) == b"first"
    stats = tier.stats()
    assert (stats.hits, stats.misses, stats.writes, stats.entries) == (1, 1, 1, 1)
    assert stats.bytes == tier.bytes == 16 + 5
    assert stats.hit_rate == 0.5


async def test_async_methods_are_the_sync_ones() -> None:
    tier = MemoryTier()
    assert isinstance(tier, CacheTier)
    await tier.put(key(1), b"v")
    assert await tier.get(key(1)) == b"v"
    await tier.delete(key(1))
    assert await tier.get(key(1)) is None
    await tier.put(key(2), b"v")
    await tier.put(key(3), b"v")
    assert await tier.clear() == 2
    assert tier.entries == tier.bytes == 0
    await tier.aclose()


def test_ttl_on_the_clock_and_a_put_can_only_shorten_it() -> None:
    clock = Clock()
    tier = MemoryTier(ttl=60.0, clock=clock)
    tier.put_nowait(key(1), b"default")
    tier.put_nowait(key(2), b"short", ttl=10.0)
    tier.put_nowait(key(3), b"long", ttl=600.0)  # capped at the tier's 60 s
    clock.now += 9.9
    assert tier.get_nowait(key(2)) == b"short"
    clock.now += 0.1
    assert tier.get_nowait(key(2)) is None
    assert tier.get_nowait(key(1)) == b"default"
    clock.now += 50.0
    assert tier.get_nowait(key(1)) is None
    assert tier.get_nowait(key(3)) is None
    assert tier.entries == 0 and tier.bytes == 0
    assert tier.stats().extra["expired"] == 3


def test_no_tier_ttl_means_entries_live_until_evicted() -> None:
    clock = Clock()
    tier = MemoryTier(ttl=None, clock=clock)
    tier.put_nowait(key(1), b"forever")
    tier.put_nowait(key(2), b"soon", ttl=5.0)
    clock.now += 1e9
    assert tier.get_nowait(key(1)) == b"forever"
    assert tier.get_nowait(key(2)) is None


def test_an_expired_entry_is_absent_so_a_put_replaces_it() -> None:
    clock = Clock()
    tier = MemoryTier(ttl=10.0, clock=clock)
    tier.put_nowait(key(1), b"old")
    clock.now += 10.0
    tier.put_nowait(key(1), b"new")
    assert tier.get_nowait(key(1)) == b"new"
    assert tier.entries == 1 and tier.bytes == 16 + 3


def test_entry_bound() -> None:
    tier = MemoryTier(max_entries=10)
    for i in range(100):
        tier.put_nowait(key(i), b"v")
    assert tier.entries == 10
    assert tier.stats().evictions == 90
    # The newest survive.
    assert all(tier.get_nowait(key(i)) == b"v" for i in range(90, 100))


def test_byte_bound_and_an_oversized_value_flushes_nothing() -> None:
    tier = MemoryTier(max_entries=1000, max_bytes=16 * 100 + 1000)
    for i in range(50):
        tier.put_nowait(key(i), bytes(84))  # 100 bytes with the key
    assert tier.bytes <= tier.max_bytes
    assert tier.entries == 26
    tier.put_nowait(key(999), bytes(tier.max_bytes))
    assert tier.get_nowait(key(999)) is None
    assert tier.entries == 26


def test_write_once_keys_do_not_push_out_the_re_read_set() -> None:
    """Plain LRU with 100 entries would lose every hot key to 1,000 new ones."""
    tier = MemoryTier(max_entries=100)
    hot = [key(i) for i in range(50)]
    for k in hot:
        tier.put_nowait(k, b"hot")
        assert tier.get_nowait(k) == b"hot"  # read again: protected
    for i in range(1000, 2000):
        tier.put_nowait(key(i), b"once")
    assert all(tier.get_nowait(k) == b"hot" for k in hot)
    assert tier.entries == 100


def test_a_key_written_again_after_eviction_is_admitted_to_protected() -> None:
    tier = MemoryTier(max_entries=10)
    tier.put_nowait(key(0), b"v")
    for i in range(1, 11):
        tier.put_nowait(key(i), b"once")  # key 0 falls out of probation
    assert tier.get_nowait(key(0)) is None
    assert tier.stats().extra["ghost"] == 1
    tier.put_nowait(key(0), b"v")  # wanted twice: protected
    for i in range(100, 200):
        tier.put_nowait(key(i), b"once")
    assert tier.get_nowait(key(0)) == b"v"


def test_without_a_ghost_list_it_is_a_segmented_lru() -> None:
    tier = MemoryTier(max_entries=10, ghost_entries=0)
    tier.put_nowait(key(0), b"v")
    for i in range(1, 11):
        tier.put_nowait(key(i), b"once")
    tier.put_nowait(key(0), b"v")
    for i in range(100, 200):
        tier.put_nowait(key(i), b"once")
    assert tier.get_nowait(key(0)) is None
    assert tier.stats().extra["ghost"] == 0


def test_a_new_entry_survives_its_own_put_when_protected_fills_the_budget() -> None:
    tier = MemoryTier(max_entries=1)
    tier.put_nowait(key(1), b"v")
    assert tier.get_nowait(key(1)) == b"v"  # protected, the whole budget
    tier.put_nowait(key(2), b"w")
    assert tier.get_nowait(key(2)) == b"w"
    assert tier.get_nowait(key(1)) is None
    big = MemoryTier(max_bytes=16 * 2 + 100)  # protected may hold 105 bytes
    big.put_nowait(key(1), bytes(80))
    big.get_nowait(key(1))
    big.put_nowait(key(2), bytes(40))  # 152 > 132: key 1 goes, not the new one
    assert big.get_nowait(key(2)) == bytes(40)
    assert big.entries == 1


def test_protected_overflow_is_demoted_not_dropped() -> None:
    tier = MemoryTier(max_entries=10)  # protected holds 8
    for i in range(10):
        tier.put_nowait(key(i), b"v")
    for i in range(10):
        assert tier.get_nowait(key(i)) == b"v"
    assert tier.stats().extra["protected"] == 8
    assert tier.entries == 10
    assert all(tier.get_nowait(key(i)) == b"v" for i in range(10))


def test_evict_fraction_takes_the_least_valuable_first() -> None:
    clock = Clock()
    tier = MemoryTier(max_entries=100, ttl=100.0, clock=clock)
    for i in range(10):  # protected: read again
        tier.put_nowait(key(i), bytes(84))
        tier.get_nowait(key(i))
    tier.put_nowait(key(50), bytes(84), ttl=1.0)  # expires first
    for i in range(10, 20):
        tier.put_nowait(key(i), bytes(84))
    clock.now += 2.0
    freed = tier.evict_fraction(0.5)  # the expired entry, then 10 of the 20 left
    assert freed == 11 * 100
    assert tier.entries == 10
    assert all(tier.get_nowait(key(i)) is not None for i in range(10))
    assert tier.evict_fraction(1.0) == 10 * 100
    assert tier.entries == tier.bytes == 0


def test_purge_expired_returns_the_bytes_freed() -> None:
    clock = Clock()
    tier = MemoryTier(ttl=100.0, clock=clock)
    tier.put_nowait(key(1), bytes(84), ttl=1.0)
    tier.put_nowait(key(2), bytes(84))
    tier.get_nowait(key(2))
    tier.put_nowait(key(3), bytes(184), ttl=5.0)
    tier.get_nowait(key(3))
    clock.now += 10.0
    assert tier.purge_expired() == 100 + 200
    assert tier.entries == 1 and tier.bytes == 100
    assert tier.purge_expired() == 0


@settings(max_examples=500, deadline=None, derandomize=True)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["get", "put", "tick", "evict", "delete"]),
            st.integers(0, 30),
            st.integers(0, 200),
        ),
        max_size=300,
    ),
    st.integers(1, 12),
    st.integers(100, 2000),
)
def test_never_a_wrong_value_and_always_within_bounds(
    ops: list[tuple[str, int, int]], max_entries: int, max_bytes: int
) -> None:
    """A get answers exactly what the tier holds, live; a put never replaces a live
    entry and otherwise stores its value; the counters match the contents."""
    clock = Clock()
    tier = MemoryTier(max_entries=max_entries, max_bytes=max_bytes, ttl=50.0, clock=clock)

    def held(k: bytes) -> tuple[bytes, float] | None:
        return tier._protected.get(k) or tier._probation.get(k)

    for op, i, n in ops:
        k = key(i)
        before = held(k)
        live = before is not None and before[1] > clock.now
        if op == "get":
            got = tier.get_nowait(k)
            assert got == (before[0] if live and before else None)
        elif op == "put":
            value = random.Random(n).randbytes(n)
            ttl = float(n % 60 + 1)
            tier.put_nowait(k, value, ttl=ttl)
            after = held(k)
            if live:
                assert after == before
            elif len(k) + n <= max_bytes:
                assert after == (value, clock.now + min(ttl, 50.0))
        elif op == "tick":
            clock.now += n / 10
        elif op == "evict":
            tier.evict_fraction(n / 200)
        else:
            tier._remove(k)
            assert held(k) is None
        items = list(tier._probation.items()) + list(tier._protected.items())
        assert tier.entries == len(items) <= max_entries
        assert tier.bytes == sum(len(k) + len(v) for k, (v, _) in items) <= max_bytes
        protected = tier._protected.items()
        assert tier._protected_bytes == sum(len(k) + len(v) for k, (v, _) in protected)
