"""The response cache's storage tiers: memory, SQLite and Redis, each against a baseline.

Memory tier (issue 8: choose on hit latency and hit rate): ``MemoryTier``
against cachetools' ``TTLCache`` (byte-weighted with ``getsizeof=len``), a plain
OrderedDict TTL+LRU with the same semantics as ours (the baseline), and theine
(W-TinyLFU, Rust core, count-bounded). ns per get (hit and miss) and per put of
a new key into a full cache; hit rate (%) of the cache-aside loop (get, put on
a miss) with 1,000 entries on (a) Zipf(1.0)-repeated keys from 100,000 and (b)
write-once streams of new keys where 10% of requests go to a hot set of 100 or
500 keys, or 5% to one of 800 (each re-read every ~1,000, ~5,000, ~16,000
requests). Each ceiling (an unbounded cache) is printed with them.

SQLite tier: writes/s of 1.5 KB values from 1, 16 and 256 concurrent writers,
group commit (the default) against commit-per-write (``batch_size=1``) and
against a 50 ms linger, with raw ``sqlite3`` (256 per commit, no tier) as the
ceiling; reads/s on the event loop against ``anyio.to_thread``; reopening a
1,000,000-entry store against ``SELECT count(*)`` on it (what a scan on open
would cost).

Redis tier: ``RedisTier`` get/put latency on loopback against raw redis-py
``GET`` / ``SET NX PX`` on the same server (started here from ``redis-server``;
skipped if the binary is missing).

    python benchmarks/bench_cache_tiers.py            # ~2-3 minutes
    python benchmarks/bench_cache_tiers.py --quick    # seconds; 100k-entry reopen
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import os
import random
import shutil
import socket
import sqlite3
import statistics
import subprocess
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from _report import save, table

from agentic_synth.caching._memory import MemoryTier
from agentic_synth.caching._redis import RedisTier
from agentic_synth.caching._sqlite import SQLiteTier

KEY = 16
CAPACITY = 1000


# -- memory tier ------------------------------------------------------------------


class PlainLRU:
    """The baseline: TTL + LRU weighted by bytes on one OrderedDict, first write
    wins (what the memory tier does, minus admission)."""

    def __init__(self, max_entries: int, max_bytes: int, ttl: float) -> None:
        self.max_entries, self.max_bytes, self.ttl = max_entries, max_bytes, ttl
        self.data: OrderedDict[bytes, tuple[bytes, float]] = OrderedDict()
        self.size = 0
        self.clock = time.monotonic

    def get(self, key: bytes) -> bytes | None:
        entry = self.data.get(key)
        if entry is None:
            return None
        if entry[1] <= self.clock():
            del self.data[key]
            self.size -= len(key) + len(entry[0])
            return None
        self.data.move_to_end(key)
        return entry[0]

    def put(self, key: bytes, value: bytes) -> None:
        if key in self.data:
            return
        self.data[key] = (value, self.clock() + self.ttl)
        self.size += len(key) + len(value)
        while len(self.data) > self.max_entries or self.size > self.max_bytes:
            k, (v, _) = self.data.popitem(last=False)
            self.size -= len(k) + len(v)


Ops = tuple[Callable[[bytes], Any], Callable[[bytes, bytes], Any]]


def ours() -> Ops:
    tier = MemoryTier(max_entries=CAPACITY, ttl=3600.0)
    return tier.get_nowait, tier.put_nowait


def ours_no_ghost() -> Ops:
    tier = MemoryTier(max_entries=CAPACITY, ttl=3600.0, ghost_entries=0)
    return tier.get_nowait, tier.put_nowait


def plain_lru() -> Ops:
    cache = PlainLRU(CAPACITY, 256 * 2**20, 3600.0)
    return cache.get, cache.put


def cachetools_ttl() -> Ops:
    import cachetools

    cache: Any = cachetools.TTLCache(maxsize=CAPACITY * (KEY + 1024), ttl=3600, getsizeof=len)
    return cache.get, cache.__setitem__


def theine_tlfu() -> Ops:
    import theine

    cache: Any = theine.Cache(CAPACITY)
    hour = timedelta(hours=1)

    def get(key: bytes) -> Any:
        value, ok = cache.get(key)
        return value if ok else None

    return get, lambda k, v: cache.set(k, v, hour)


#: name -> a fresh 1,000-entry cache with a 1 h TTL, as (get, put).
CANDIDATES: dict[str, Callable[[], Ops]] = {
    "MemoryTier (ours)": ours,
    "MemoryTier, no ghost (SLRU only)": ours_no_ghost,
    "OrderedDict LRU (baseline)": plain_lru,
    "cachetools TTLCache(getsizeof=len)": cachetools_ttl,
    "theine Cache (W-TinyLFU)": theine_tlfu,
}


def zipf_stream(n: int, universe: int, s: float, rng: random.Random) -> list[bytes]:
    keys = [rng.randbytes(KEY) for _ in range(universe)]
    cum = list(itertools.accumulate(1.0 / (i + 1) ** s for i in range(universe)))
    top = cum[-1]
    return [keys[bisect.bisect_left(cum, rng.random() * top)] for _ in range(n)]


def write_once_stream(n: int, hot: int, share: float, rng: random.Random) -> list[bytes]:
    hot_keys = [rng.randbytes(KEY) for _ in range(hot)]
    return [rng.choice(hot_keys) if rng.random() < share else rng.randbytes(KEY) for _ in range(n)]


def hit_pct(
    get: Callable[[bytes], Any], put: Callable[[bytes, bytes], Any], stream: list[bytes]
) -> float:
    value = bytes(1024)
    hits = 0
    for key in stream:
        if get(key) is None:
            put(key, value)
        else:
            hits += 1
    return 100 * hits / len(stream)


def ns_per_call(fn: Callable[[bytes], Any], keys: list[bytes]) -> float:
    t0 = time.perf_counter_ns()
    for key in keys:
        fn(key)
    return (time.perf_counter_ns() - t0) / len(keys)


def memory_tier(n: int, seed: int) -> tuple[list[dict[str, Any]], dict[str, float]]:
    rng = random.Random(seed)
    zipf = zipf_stream(n, 100_000, 1.0, rng)
    # 10% of requests to a hot set of 100 keys (re-read every ~1,000 requests: about
    # the cache's size) or of 500 (every ~5,000: five times it); the rest new keys.
    hot100 = write_once_stream(n, 100, 0.10, rng)
    hot500 = write_once_stream(n, 500, 0.10, rng)
    # Sparser: 5% to 800 keys, each re-read every ~16,000 requests.
    hot800 = write_once_stream(n, 800, 0.05, rng)
    present = [rng.randbytes(KEY) for _ in range(CAPACITY)]
    # Hits on a hot half of the entries, and spread over all of them (in a
    # segmented LRU a fifth of those move between segments).
    lookups = [rng.choice(present[: CAPACITY // 2]) for _ in range(n)]
    spread = [rng.choice(present) for _ in range(n)]
    absent = [rng.randbytes(KEY) for _ in range(n)]
    fresh = [rng.randbytes(KEY) for _ in range(n)]
    value = bytes(1024)
    baseline = {
        "empty_loop_ns": ns_per_call(lambda k: None, lookups),
        "dict_get_ns": ns_per_call({k: value for k in present}.get, lookups),
    }
    rows = []
    for name, make in CANDIDATES.items():
        try:
            get, put = make()
        except ImportError:
            print(f"{name}: not installed, skipped")
            continue
        for key in present:
            put(key, value)
        for key in present:  # read once: the whole set counts as re-read
            get(key)
        hit_ns = min(ns_per_call(get, lookups) for _ in range(3))
        spread_ns = min(ns_per_call(get, spread) for _ in range(3))
        miss_ns = min(ns_per_call(get, absent) for _ in range(3))
        t0 = time.perf_counter_ns()
        for key in fresh:
            put(key, value)
        put_ns = (time.perf_counter_ns() - t0) / len(fresh)
        rows.append(
            {
                "cache": name,
                "get_hit_ns": hit_ns,
                "get_hit_all_ns": spread_ns,
                "get_miss_ns": miss_ns,
                "put_new_ns": put_ns,
                "zipf_hit_%": hit_pct(*make(), zipf),
                "hot100_hit_%": hit_pct(*make(), hot100),
                "hot500_hit_%": hit_pct(*make(), hot500),
                "hot800_5pct_hit_%": hit_pct(*make(), hot800),
            }
        )
    ceiling = {  # an unbounded cache misses each distinct key once
        f"{name}_best_possible_%": 100 * (1 - len(set(stream)) / len(stream))
        for name, stream in (
            ("zipf", zipf),
            ("hot100", hot100),
            ("hot500", hot500),
            ("hot800_5pct", hot800),
        )
    }
    return rows, {**baseline, **ceiling}


# -- SQLite tier ------------------------------------------------------------------


async def tier_writes(path: Path, n: int, writers: int, **options: Any) -> dict[str, Any]:
    rng = random.Random(n * 31 + writers)
    keys = iter([rng.randbytes(KEY) for _ in range(n)])
    value = rng.randbytes(1500)
    tier = SQLiteTier(path, **options)

    async def writer() -> None:
        for key in keys:
            await tier.put(key, value)

    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(writers):
            tg.start_soon(writer)
    wall = time.perf_counter() - t0
    stats = tier.stats()
    await tier.aclose()
    return {"writes": n, "writes_per_s": n / wall, "commits": stats.extra["commits"]}


def remove_store(path: Path) -> None:
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        name.unlink(missing_ok=True)
    os.sync()


def raw_writes(path: Path, n: int) -> float:
    """Raw sqlite3, same schema and pragmas, 256 rows per commit, no tier."""
    rng = random.Random(7)
    rows = [(rng.randbytes(KEY), rng.randbytes(1500)) for _ in range(n)]
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(
        "CREATE TABLE entries (id INTEGER PRIMARY KEY, key BLOB NOT NULL UNIQUE,"
        " value BLOB NOT NULL, expires REAL)"
    )
    t0 = time.perf_counter()
    for i in range(0, n, 256):
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT OR IGNORE INTO entries (key, value) VALUES (?, ?)", rows[i : i + 256]
        )
        conn.execute("COMMIT")
    wall = time.perf_counter() - t0
    conn.close()
    remove_store(path)
    return n / wall


async def fill(path: Path, n: int, value_size: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    keys = [rng.randbytes(KEY) for _ in range(n)]
    value = rng.randbytes(value_size)
    tier = SQLiteTier(path)
    it = iter(keys)

    async def writer() -> None:
        for key in it:
            await tier.put(key, value)

    async with anyio.create_task_group() as tg:
        for _ in range(256):
            tg.start_soon(writer)
    await tier.aclose()
    return keys


async def reads(path: Path, keys: list[bytes], n: int) -> dict[str, Any]:
    rng = random.Random(3)
    sample = [rng.choice(keys) for _ in range(n)]
    tier = SQLiteTier(path)
    each = []
    t0 = time.perf_counter()
    for key in sample:
        s = time.perf_counter_ns()
        await tier.get(key)
        each.append(time.perf_counter_ns() - s)
    on_loop = n / (time.perf_counter() - t0)
    conn = sqlite3.connect(path, check_same_thread=False)

    def read(key: bytes) -> Any:
        return conn.execute("SELECT value, expires FROM entries WHERE key = ?", (key,)).fetchone()

    t0 = time.perf_counter()
    for key in sample:
        await anyio.to_thread.run_sync(read, key)
    in_thread = n / (time.perf_counter() - t0)
    conn.close()
    await tier.aclose()
    each.sort()
    return {
        "reads_per_s_on_loop": on_loop,
        "reads_per_s_to_thread": in_thread,
        "loop_read_p50_us": each[len(each) // 2] / 1e3,
        "loop_read_p99_us": each[int(len(each) * 0.99)] / 1e3,
        "loop_read_max_us": each[-1] / 1e3,
    }


def file_mib(path: Path) -> float:
    return os.path.getsize(path) / 2**20


async def reopen(path: Path, keys: list[bytes]) -> dict[str, float]:
    times = []
    for key in keys[:3]:
        t0 = time.perf_counter()
        tier = SQLiteTier(path)
        assert await tier.get(key) is not None
        entries = tier.stats().entries
        times.append(time.perf_counter() - t0)
        await tier.aclose()
    assert entries == len(keys), (entries, len(keys))
    conn = sqlite3.connect(path)
    t0 = time.perf_counter()
    (count,) = conn.execute("SELECT count(*) FROM entries").fetchone()
    scan = time.perf_counter() - t0
    conn.close()
    return {
        "entries": count,
        "file_mib": file_mib(path),
        "reopen_ms": statistics.median(times) * 1e3,
        "count_star_ms": scan * 1e3,
    }


async def sqlite_tier(quick: bool, workdir: Path) -> dict[str, Any]:
    n = 20_000 if quick else 100_000
    # Each run writes the same count into a fresh file (a larger file is slower),
    # except the 50 ms linger under few writers: it commits at most 20 batches/s.
    runs: list[tuple[int, str, dict[str, Any], int]] = []
    for writers in (1, 16, 256):
        same = n // 4 if writers == 1 else n
        runs += [
            (writers, "commit per write (baseline)", {"batch_size": 1}, same),
            (writers, "group commit (default)", {}, same),
            (writers, "group commit, 50 ms linger", {"linger": 0.05}, 40 * writers),
            (writers, "group commit, durability=full", {"durability": "full"}, same),
        ]
    runs[-2] = (*runs[-2][:3], n)  # 256 writers fill a batch before the linger ends
    # Twice, the second time in reverse order, best of the two: the kernel writing
    # back one run's pages slows the next, whichever that is.
    best: dict[int, dict[str, Any]] = {}
    for repeat in range(2):
        order = list(enumerate(runs)) if repeat == 0 else list(enumerate(runs))[::-1]
        for i, (writers, _, options, count) in order:
            path = workdir / f"writes-{i}.db"
            result = await tier_writes(path, count, writers, **options)
            remove_store(path)
            if i not in best or result["writes_per_s"] > best[i]["writes_per_s"]:
                best[i] = result
    rows = [{"writers": w, "mode": label, **best[i]} for i, (w, label, _, _) in enumerate(runs)]
    for i, row in enumerate(rows):
        row["vs_commit_per_write"] = row["writes_per_s"] / rows[i - i % 4]["writes_per_s"]
    raw = max(raw_writes(workdir / f"raw-{i}.db", n) for i in range(2))
    rows.append(
        {
            "writers": 1,
            "mode": "raw sqlite3, 256 per commit (no tier)",
            "writes": n,
            "writes_per_s": raw,
        }
    )
    print(
        table(rows, ["writers", "mode", "writes", "writes_per_s", "commits", "vs_commit_per_write"])
    )

    size = 100_000 if quick else 1_000_000
    big = workdir / "big.db"
    t0 = time.perf_counter()
    keys = await fill(big, size, 1000, seed=11)
    built = time.perf_counter() - t0
    read = await reads(big, keys, 20_000 if quick else 100_000)
    opened = await reopen(big, keys)
    print()
    print(table([read], list(read)))
    print()
    print(table([{**opened, "build_s": built}], [*opened, "build_s"]))
    return {"writes": rows, "reads": read, "reopen": {**opened, "build_s": built}}


# -- Redis tier -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], int] | None:
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.02)
    proc.kill()
    raise RuntimeError("redis-server did not start")


async def timed_calls(fn: Callable[[bytes], Any], keys: list[bytes]) -> float:
    t0 = time.perf_counter()
    for key in keys:
        await fn(key)
    return (time.perf_counter() - t0) / len(keys) * 1e6


async def redis_tier(quick: bool, workdir: Path) -> list[dict[str, Any]] | None:
    import redis.asyncio as aioredis

    started = start_redis(workdir)
    if started is None:
        print("redis-server not found: Redis tier skipped")
        return None
    proc, port = started
    n = 2_000 if quick else 20_000
    rng = random.Random(5)
    value = rng.randbytes(1500)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        raw = aioredis.Redis.from_url(url)
        tier = RedisTier(url, ttl=3600)
        # Alternating rounds, median of each (loopback latency drifts with load).
        times: dict[str, list[float]] = {
            "raw put": [],
            "tier put": [],
            "raw get": [],
            "tier get": [],
        }
        for round_ in range(6):
            a = [rng.randbytes(KEY) for _ in range(n // 5)]
            b = [rng.randbytes(KEY) for _ in range(n // 5)]
            raw_put = await timed_calls(lambda k: raw.set(k, value, nx=True, px=3_600_000), a)
            tier_put = await timed_calls(lambda k: tier.put(k, value), b)
            raw_get = await timed_calls(raw.get, a)
            tier_get = await timed_calls(tier.get, b)
            if round_:  # the first warms connections up
                for name, t in zip(times, (raw_put, tier_put, raw_get, tier_get), strict=True):
                    times[name].append(t)
        med = {name: statistics.median(t) for name, t in times.items()}
        rows = [
            {
                "op": op,
                "raw_redis_py_us": med[f"raw {op[:3]}"],
                "tier_us": med[f"tier {op[:3]}"],
                "ratio": med[f"tier {op[:3]}"] / med[f"raw {op[:3]}"],
            }
            for op in ("put", "get (hit)")
        ]
        await raw.aclose()
        await tier.aclose()
    finally:
        proc.kill()
        proc.wait()
    print(table(rows, ["op", "raw_redis_py_us", "tier_us", "ratio"]))
    return rows


# -- main -------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="small run (seconds)")
    ap.add_argument("--only", choices=["memory", "sqlite", "redis"], action="append")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    only = set(args.only or ["memory", "sqlite", "redis"])
    figures: dict[str, Any] = {"args": vars(args), "cores": os.cpu_count()}
    if "memory" in only:
        rows, extra = memory_tier(100_000 if args.quick else 1_000_000, args.seed)
        print(f"memory tier, {CAPACITY} entries, 1 KB values")
        print(
            table(
                rows,
                [
                    "cache",
                    "get_hit_ns",
                    "get_hit_all_ns",
                    "get_miss_ns",
                    "put_new_ns",
                    "zipf_hit_%",
                    "hot100_hit_%",
                    "hot500_hit_%",
                    "hot800_5pct_hit_%",
                ],
            )
        )
        print(", ".join(f"{k}={v:.3g}" for k, v in extra.items()))
        figures["memory"] = {"rows": rows, **extra}
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
        if "sqlite" in only:
            print("\nsqlite tier, 1.5 KB values")
            figures["sqlite"] = asyncio.run(sqlite_tier(args.quick, Path(tmp)))
        if "redis" in only:
            print("\nredis tier on loopback, 1.5 KB values, sequential calls")
            figures["redis"] = asyncio.run(redis_tier(args.quick, Path(tmp)))
    path = save("cache_tiers", figures)
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
