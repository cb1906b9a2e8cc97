"""Failover: the primary model's server dies mid-run; how fast does traffic move?

Two loopback mock servers (separate processes) serve the same OpenAI-compatible
API; the router prefers the primary. After ``--kill-after`` seconds the primary
is killed (SIGKILL: in-flight connections reset, new ones refused). Reported:
errors (target: none, every input ends with one result), the failover time
(kill -> first completion on the backup; kill -> the rolling 500 ms completion
rate back to >= 80% of the pre-kill rate), and the latency of requests caught in
flight. Baseline in the same run: the pre-kill completion rate.

    python benchmarks/bench_failover.py [--n 20000] [--concurrency 128] [--latency 0.05]
"""

from __future__ import annotations

import argparse
import signal
import time
from collections import Counter

import anyio
from _report import save, table
from bench_transport import start_server

from agentic_synth import BreakerConfig, ModelSpec, Synth


async def main(n: int, concurrency: int, latency: float, kill_after: float) -> None:
    primary, url_a = start_server(latency)
    backup, url_b = start_server(latency)
    specs = [
        ModelSpec("openai", "primary", base_url=f"{url_a}/v1", api_key="k", timeout=5.0),
        ModelSpec("openai", "backup", base_url=f"{url_b}/v1", api_key="k", timeout=5.0),
    ]
    done: list[tuple[float, str, float]] = []  # (finished at, model, latency)
    errors: Counter[str] = Counter()
    killed_at = 0.0
    try:
        async with Synth(specs, max_concurrency=concurrency, breaker=BreakerConfig()) as synth:
            start = time.monotonic()

            async def killer() -> None:
                nonlocal killed_at
                await anyio.sleep(kill_after)
                primary.send_signal(signal.SIGKILL)
                killed_at = time.monotonic() - start

            async with anyio.create_task_group() as tg:
                tg.start_soon(killer)
                prompts = (f"Say something about {i}." for i in range(n))
                async for _, r in synth.iter_batch(prompts, max_tokens=16):
                    if r.ok:
                        done.append((time.monotonic() - start, r.model, r.latency))
                    else:
                        errors[r.error_type] += 1
            m = synth.metrics()
    finally:
        for p in (primary, backup):
            if p.poll() is None:
                p.terminate()
                p.wait(10)

    window = 0.1
    buckets: Counter[int] = Counter(int(t / window) for t, _, _ in done)
    last = max(buckets)
    kill_bucket = int(killed_at / window)
    pre = [buckets[b] for b in range(int(0.5 / window), kill_bucket)]
    pre_rate = sum(pre) / max(1, len(pre))
    # recovered: the rolling 500 ms average is back to >= 80% of the pre-kill rate
    recovered_at = None
    for b in range(kill_bucket, last - 4):
        if sum(buckets[b + k] for k in range(5)) / 5 >= 0.8 * pre_rate:
            recovered_at = b * window
            break
    post = [buckets[b] for b in range(kill_bucket + 10, last - 5)]
    post_rate = sum(post) / max(1, len(post))
    first_backup = min(
        (t for t, model, _ in done if model == "openai:backup" and t >= killed_at), default=None
    )
    caught = [lat for t, model, lat in done if model == "openai:backup" and t - lat < killed_at]
    by_model = Counter(model for _, model, _ in done)
    series = [buckets[b] for b in range(last + 1)]
    rows = [
        {
            "requests": n,
            "ok": len(done),
            "errors": sum(errors.values()),
            "first_backup_s": None if first_backup is None else first_backup - killed_at,
            "recovered_s": None if recovered_at is None else max(0.0, recovered_at - killed_at),
            "post_vs_pre_rate": post_rate / pre_rate if pre_rate else None,
            "caught_in_flight": len(caught),
            "caught_max_latency_s": max(caught, default=0.0),
            "retries": m.retries,
            "fallbacks": m.fallbacks,
        }
    ]
    print(
        f"primary killed at {killed_at:.2f}s; {concurrency} concurrent, "
        f"server latency {latency * 1000:.0f} ms\n"
    )
    print(table(rows, list(rows[0])))
    print(f"\nserved by: {dict(by_model)}; errors: {dict(errors)}")
    print(f"breaker of the primary: {m.models['openai:primary']['breaker']['state']}")
    print(
        "results:",
        save(
            "failover",
            {"rows": rows, "served_by": dict(by_model), "series": series, "killed_at": killed_at},
        ),
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--concurrency", type=int, default=128)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--kill-after", type=float, default=2.0)
    a = ap.parse_args()
    anyio.run(main, a.n, a.concurrency, a.latency, a.kill_after)
