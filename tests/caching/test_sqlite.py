"""The SQLite tier on real files: first write wins, acknowledged means committed,
group commit, TTL on a fake clock, a bounded WAL, maintenance, and SIGKILL at
seeded random points (every acknowledged entry survives, the file stays sound,
a torn WAL tail costs exactly the transaction it tore)."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from agentic_synth.caching import CacheTier
from agentic_synth.caching._sqlite import SQLiteTier

WRITER = Path(__file__).with_name("_sqlite_writer.py")


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def key(i: int) -> bytes:
    return i.to_bytes(16, "big")


def value_of(k: bytes) -> bytes:
    return hashlib.sha256(k).digest() * 40


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def wal_size(path: Path) -> int:
    try:
        return os.path.getsize(f"{path}-wal")
    except FileNotFoundError:
        return 0


def consistent(path: Path) -> tuple[int, int]:
    """(entries, bytes) after checking the file and that ``meta`` matches the rows."""
    conn = raw(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        counted = conn.execute("SELECT count(*), coalesce(sum(length(value)), 0) FROM entries")
        meta = conn.execute("SELECT entries, bytes FROM meta")
        rows = counted.fetchone()
        assert meta.fetchone() == rows
        return rows  # type: ignore[no-any-return]
    finally:
        conn.close()


async def test_put_get_first_write_wins_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    tier = SQLiteTier(path)
    assert isinstance(tier, CacheTier)
    assert await tier.get(key(1)) is None
    await tier.put(key(1), b"first")
    await tier.put(key(1), b"second")
    assert await tier.get(key(1)) == b"first"
    stats = tier.stats()
    assert (stats.entries, stats.bytes, stats.hits, stats.misses, stats.writes) == (1, 5, 1, 1, 1)
    assert stats.extra["ignored"] == 1
    await tier.aclose()
    await tier.aclose()  # idempotent
    assert wal_size(path) == 0

    again = SQLiteTier(path)
    assert await again.get(key(1)) == b"first"
    assert again.stats().entries == 1
    await again.aclose()
    assert consistent(path) == (1, 5)


async def test_an_acknowledged_put_is_committed(tmp_path: Path) -> None:
    """Another connection sees each entry as soon as its put returns."""
    path = tmp_path / "cache.db"
    tier = SQLiteTier(path)
    other = raw(path)
    for i in range(20):
        await tier.put(key(i), value_of(key(i)))
        row = other.execute("SELECT value FROM entries WHERE key = ?", (key(i),)).fetchone()
        assert row == (value_of(key(i)),)
    other.close()
    await tier.aclose()


async def test_group_commit_takes_up_to_batch_size_per_transaction(tmp_path: Path) -> None:
    tier = SQLiteTier(tmp_path / "cache.db", batch_size=256)
    gate = threading.Event()
    blocked = tier._submit(lambda conn: gate.wait())  # the writer waits on this
    async with anyio.create_task_group() as tg:
        for i in range(600):
            tg.start_soon(tier.put, key(i), b"v")
        await wait_all_tasks_blocked()  # all 600 queued behind the gate
        gate.set()
    await blocked
    stats = tier.stats()
    assert stats.extra["commits"] == 3  # 256 + 256 + 88
    assert stats.entries == stats.writes == 600
    await tier.aclose()
    assert consistent(tmp_path / "cache.db") == (600, 600)


async def test_linger_waits_for_more_puts_but_not_past_a_full_batch(tmp_path: Path) -> None:
    tier = SQLiteTier(tmp_path / "cache.db", batch_size=4, linger=3600.0)
    async with anyio.create_task_group() as tg:  # returns at once: the batch filled up
        for i in range(4):
            tg.start_soon(tier.put, key(i), b"v")
    assert tier.stats().extra["commits"] == 1
    await tier.aclose()


async def test_commit_per_write_when_batch_size_is_one(tmp_path: Path) -> None:
    tier = SQLiteTier(tmp_path / "cache.db", batch_size=1)
    async with anyio.create_task_group() as tg:
        for i in range(50):
            tg.start_soon(tier.put, key(i), b"v")
    assert tier.stats().extra["commits"] == 50
    await tier.aclose()


async def test_ttl_on_the_clock_and_an_expired_entry_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    clock = Clock()
    tier = SQLiteTier(path, ttl=100.0, clock=clock)
    await tier.put(key(1), b"default")
    await tier.put(key(2), b"short", ttl=10.0)
    await tier.put(key(3), b"capped", ttl=1000.0)
    clock.now += 10.0
    assert await tier.get(key(2)) is None
    assert await tier.get(key(1)) == b"default"
    clock.now += 90.0
    assert await tier.get(key(1)) is None
    assert await tier.get(key(3)) is None
    await tier.put(key(1), b"replaced!")  # the expired entry counts as absent
    assert await tier.get(key(1)) == b"replaced!"
    assert tier.stats().entries == 3
    assert tier.stats().bytes == len(b"replaced!") + len(b"short") + len(b"capped")
    await tier.aclose()
    assert consistent(path) == (3, 20)

    reopened = SQLiteTier(path, clock=clock)  # expiry is stored with the entry
    assert await reopened.get(key(1)) == b"replaced!"
    assert await reopened.get(key(2)) is None
    assert sorted(k for k, _ in reopened.items()) == [key(1).hex()]
    assert await reopened.purge_expired() == 2
    assert reopened.stats().entries == 1
    await reopened.aclose()
    assert consistent(path) == (1, 9)


async def test_no_ttl_means_for_ever(tmp_path: Path) -> None:
    clock = Clock()
    tier = SQLiteTier(tmp_path / "cache.db", clock=clock)
    await tier.put(key(1), b"v")
    await tier.put(key(2), b"v", ttl=1.0)
    clock.now += 1e9
    assert await tier.get(key(1)) == b"v"
    assert await tier.get(key(2)) is None
    await tier.aclose()


async def test_opening_reads_the_kept_count_instead_of_counting(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    tier = SQLiteTier(path)
    for i in range(3):
        await tier.put(key(i), b"abc")
    await tier.aclose()
    conn = raw(path)
    conn.execute("UPDATE meta SET entries = 1000000, bytes = 7")
    conn.close()
    tier = SQLiteTier(path)
    assert (tier.stats().entries, tier.stats().bytes) == (1_000_000, 7)
    await tier.aclose()


async def test_delete_clear_items_checkpoint_vacuum(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    tier = SQLiteTier(path)
    async with anyio.create_task_group() as tg:
        for i in range(2500):  # more than one page of items()
            tg.start_soon(tier.put, key(i), value_of(key(i)))
    await tier.delete(key(7))
    await tier.delete(key(7))  # absent: nothing to do
    assert await tier.get(key(7)) is None
    exported = dict(tier.items())
    assert len(exported) == 2499
    assert exported[key(8).hex()] == value_of(key(8))
    assert wal_size(path) > 0
    assert await tier.checkpoint() > 0
    assert wal_size(path) == 0
    assert await tier.clear() == 2499
    assert await tier.get(key(8)) is None
    assert list(tier.items()) == []
    await tier.vacuum()
    stats = tier.stats()
    assert (stats.entries, stats.bytes) == (0, 0)
    await tier.aclose()
    assert consistent(path) == (0, 0)


async def test_the_wal_stays_bounded(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    limit = 1024 * 1024
    tier = SQLiteTier(path, checkpoint_bytes=limit)
    rng = random.Random(3)
    largest = 0
    for _ in range(40):  # 40 x 128 x 5 KB = 25 MB
        async with anyio.create_task_group() as tg:
            for _ in range(128):
                tg.start_soon(tier.put, rng.randbytes(16), rng.randbytes(5000))
        largest = max(largest, wal_size(path))
    assert tier.stats().extra["checkpoints"] >= 10
    # A checkpoint every 1 MiB plus the batch that crossed it, trimmed on reuse.
    assert largest < 4 * limit, largest
    await tier.aclose()


async def test_durability_setting_reaches_the_writer(tmp_path: Path) -> None:
    for durability, level in (("normal", 1), ("full", 2)):
        tier = SQLiteTier(tmp_path / f"{durability}.db", durability=durability)  # type: ignore[arg-type]
        assert await tier._submit(lambda c: c.execute("PRAGMA synchronous").fetchone()[0]) == level
        journal = await tier._submit(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0])
        assert journal == "wal"
        await tier.aclose()


async def test_a_cancelled_put_is_still_written_and_others_are_answered(tmp_path: Path) -> None:
    tier = SQLiteTier(tmp_path / "cache.db")
    gate = threading.Event()
    blocked = tier._submit(lambda conn: gate.wait())
    async with anyio.create_task_group() as tg:
        tg.start_soon(tier.put, key(1), b"v")
        await wait_all_tasks_blocked()
        tg.cancel_scope.cancel()
    gate.set()
    await blocked
    await tier.put(key(2), b"v")
    assert await tier.get(key(1)) == b"v"
    await tier.aclose()


async def test_a_failed_commit_reaches_its_waiters_and_the_writer_goes_on(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cache.db"
    SQLiteTier(path).close()
    conn = raw(path)
    conn.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON entries WHEN new.value = x'bad0'"
        " BEGIN SELECT RAISE(ABORT, 'refused'); END"
    )
    conn.close()
    tier = SQLiteTier(path)
    with pytest.raises(sqlite3.IntegrityError, match="refused"):
        await tier.put(key(1), b"\xba\xd0")
    await tier.put(key(2), b"fine")
    assert await tier.get(key(1)) is None
    assert await tier.get(key(2)) == b"fine"
    assert tier.stats().errors == 1
    await tier.aclose()
    assert consistent(path) == (1, 4)


async def test_closed_tier_and_bad_arguments(tmp_path: Path) -> None:
    tier = SQLiteTier(tmp_path / "cache.db")
    with pytest.raises(TypeError):
        await tier.put("not bytes", b"v")  # type: ignore[arg-type]
    await tier.aclose()
    with pytest.raises(anyio.ClosedResourceError):
        await tier.get(key(1))
    with pytest.raises(anyio.ClosedResourceError):
        await tier.put(key(1), b"v")
    with pytest.raises(anyio.ClosedResourceError):
        await tier.clear()
    with pytest.raises(ValueError):
        SQLiteTier(tmp_path / "x.db", durability="fast")  # type: ignore[arg-type]


def test_sync_close_without_an_event_loop(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "job" / "cache.db"  # directories made as needed

    async def write() -> SQLiteTier:
        tier = SQLiteTier(path)
        await tier.put(key(1), b"v")
        return tier

    tier = anyio.run(write)
    assert list(tier.items()) == [(key(1).hex(), b"v")]
    tier.close()
    tier.close()
    assert consistent(path) == (1, 1)
    assert list(tier.items()) == [(key(1).hex(), b"v")]  # export from a closed store


def test_refuses_another_format_and_non_databases(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    conn = raw(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(ValueError, match="format 99"):
        SQLiteTier(path)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(sqlite3.DatabaseError):
        SQLiteTier(junk)


# -- crashes ----------------------------------------------------------------------


def run_and_kill(path: Path, seed: int, acks: int, checkpoint_bytes: int) -> set[bytes]:
    """Start the writer, SIGKILL it after ``acks`` acknowledged puts; every key it
    acknowledged (read to the end of its output)."""
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(path), str(seed), str(checkpoint_bytes)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    acked: set[bytes] = set()
    try:
        while len(acked) < acks:
            line = proc.stdout.readline()
            assert line, "the writer stopped by itself"
            acked.add(bytes.fromhex(line.strip()))
    finally:
        proc.send_signal(signal.SIGKILL)
        rest = proc.stdout.read()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # Lines written before the kill were acknowledged too (a torn last line was not).
    acked.update(bytes.fromhex(line) for line in rest.split("\n") if len(line) == 32)
    return acked


async def test_sigkill_at_random_points_loses_nothing_acknowledged(tmp_path: Path) -> None:
    path = tmp_path / "cache.db"
    rng = random.Random(20240601)
    acked: set[bytes] = set()
    points = [0, 1, *(rng.randint(2, 5000) for _ in range(8))]
    rng.shuffle(points)
    for round_, acks in enumerate(points):
        # Small checkpoint interval: some kills land mid-checkpoint.
        acked |= run_and_kill(path, round_, acks, 256 * 1024)
        entries, _ = consistent(path)
        assert entries >= len(acked)
        tier = SQLiteTier(path)
        for k in acked:
            assert await tier.get(k) == value_of(k)
        assert tier.stats().entries == entries
        await tier.aclose()
    assert len(acked) > 1000


async def test_a_torn_wal_tail_loses_exactly_the_torn_transaction(tmp_path: Path) -> None:
    """A crash copy (the files of an open store, as SIGKILL leaves them), then the
    last WAL frame cut short or corrupted as a torn write would: the transaction
    it belonged to is gone whole, everything before it is intact."""
    path = tmp_path / "cache.db"
    tier = SQLiteTier(path)
    first = [key(i) for i in range(100)]
    async with anyio.create_task_group() as tg:
        for k in first:
            tg.start_soon(tier.put, k, value_of(k))
    await tier.put(key(1000), value_of(key(1000)))  # the last transaction, alone
    crash = tmp_path / "crash"
    crash.mkdir()
    shutil.copy(path, crash / "cache.db")
    shutil.copy(f"{path}-wal", crash / "cache.db-wal")
    await tier.aclose()
    wal = (crash / "cache.db-wal").read_bytes()
    frame = 24 + 4096
    assert (len(wal) - 32) % frame == 0

    cases = {
        "intact": (wal, True),
        "garbage after the tail": (wal + random.Random(1).randbytes(3000), True),
        "last frame cut short": (wal[:-100], False),
        "last frame corrupted": (wal[:-50] + bytes(b ^ 0xFF for b in wal[-50:]), False),
    }
    for name, (content, last_survives) in cases.items():
        case = tmp_path / name.replace(" ", "-")
        case.mkdir()
        shutil.copy(crash / "cache.db", case / "cache.db")
        (case / "cache.db-wal").write_bytes(content)
        entries, _ = consistent(case / "cache.db")
        assert entries == 100 + last_survives, name
        reopened = SQLiteTier(case / "cache.db")
        for k in first:
            assert await reopened.get(k) == value_of(k), name
        assert (await reopened.get(key(1000)) is not None) == last_survives, name
        await reopened.put(key(2000), b"after")  # and it keeps working
        await reopened.aclose()
        consistent(case / "cache.db")
