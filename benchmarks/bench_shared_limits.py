"""Shared rate limits: the cost of one acquire, against the same run's baselines.

Per call, p50 and p99, sequential on one event loop (asyncio, redis.asyncio,
loopback): a bare Redis ``PING`` round trip (the floor of any Redis-backed
limiter), ``SharedRateLimiter.try_acquire_async`` and ``acquire`` (one script
call covering the requests, input-token and output-token lanes; limits far
above the load, so nothing waits), ``acquire`` followed by ``reconcile`` (the
settlement rides on the next call), and the local ``ModelRateLimiter.try_acquire``
(no I/O). Rounds alternate and the first is warm-up.

    python benchmarks/bench_shared_limits.py              # starts its own redis-server
    python benchmarks/bench_shared_limits.py --url redis://127.0.0.1:6379/0
    python benchmarks/bench_shared_limits.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from _report import redis_url, save, table

from agentic_synth import ModelSpec
from agentic_synth.routing._ratelimit import ModelRateLimiter
from agentic_synth.routing._shared_limits import SharedLimits

LIMITS = {"rpm": 1e9, "input_tpm": 1e12, "output_tpm": 1e12}


async def timed_async(fn: Callable[[], Awaitable[Any]], n: int) -> list[float]:
    out = []
    clock = time.perf_counter_ns
    for _ in range(n):
        t0 = clock()
        await fn()
        out.append((clock() - t0) / 1e3)
    return out


def timed_sync(fn: Callable[[], Any], n: int) -> list[float]:
    out = []
    clock = time.perf_counter_ns
    for _ in range(n):
        t0 = clock()
        fn()
        out.append((clock() - t0) / 1e3)
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(url: str, n: int, rounds: int) -> list[dict[str, Any]]:
    import redis.asyncio as aioredis

    raw = aioredis.Redis.from_url(url)
    limits = SharedLimits(url, namespace=f"bench-{uuid.uuid4().hex[:8]}")
    await limits.open()
    spec = ModelSpec("openai:bench", base_url="http://bench.test", **LIMITS)  # type: ignore[arg-type]
    shared = limits.limiter(spec)
    local = ModelRateLimiter(spec.rpm, spec.input_tpm, spec.output_tpm)

    async def acquire_reconcile() -> None:
        r = await shared.acquire(500, 200)
        shared.reconcile(r, 150, actual_input_tokens=480)

    samples: dict[str, list[float]] = {
        "redis PING (baseline)": [],
        "shared try_acquire_async": [],
        "shared acquire": [],
        "shared acquire + reconcile": [],
        "local try_acquire (baseline)": [],
    }
    for round_ in range(rounds + 1):
        got = {
            "redis PING (baseline)": await timed_async(raw.ping, n),
            "shared try_acquire_async": await timed_async(
                lambda: shared.try_acquire_async(500, 200), n
            ),
            "shared acquire": await timed_async(lambda: shared.acquire(500, 200), n),
            "shared acquire + reconcile": await timed_async(acquire_reconcile, n),
            "local try_acquire (baseline)": timed_sync(lambda: local.try_acquire(500, 200), n),
        }
        if round_:  # the first warms connections and the script cache
            for name, values in got.items():
                samples[name] += values
    await limits.aclose()
    await raw.aclose()
    ping50 = statistics.median(samples["redis PING (baseline)"])
    rows = []
    for name, values in samples.items():
        p50 = statistics.median(values)
        rows.append(
            {
                "op": name,
                "p50_us": p50,
                "p99_us": pct(values, 0.99),
                "p50_vs_ping": p50 / ping50,
                "calls": len(values),
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--url", help="a Redis to use (default: start one here)")
    ap.add_argument("--quick", action="store_true", help="small run (about a second)")
    args = ap.parse_args()
    n, rounds = (500, 2) if args.quick else (5_000, 4)
    with redis_url(args.url) as url:
        rows = asyncio.run(run(url, n, rounds))
    print("acquire latency, sequential, loopback (microseconds)")
    print(table(rows, ["op", "p50_us", "p99_us", "p50_vs_ping", "calls"]))
    path = save(
        "shared_limits", {"args": {"quick": args.quick, "own_server": not args.url}, "rows": rows}
    )
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
