"""The response cache through the engine: hit path, hit rate, memory, persistent cost.

Figures, each against a baseline measured in the same run (issue 8's targets):

1. hit path: CPU of ``generate()`` answered from the memory tier, p50 per call,
   against the simulator call alone (target <= 20 us);
2. hit rate in shared mode on Zipf-repeated prompts (target > 50%), against the
   best any cache of that size could do (every repeat of a prompt seen before);
3. process RSS with a full 1000-entry memory tier (target <= 100 MB), against the
   same process before filling it;
4. the persistent (SQLite) tier's cost in the 256-concurrent transport benchmark:
   throughput with ``cache="<file>"`` against no cache (target <= 10% slower).

    python benchmarks/bench_cache.py [--quick]
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import anyio
from _report import save, table, timed
from bench_transport import start_server

from agentic_synth import ModelSpec, Synth
from agentic_synth._governor import read_rss
from agentic_synth._request import GenerationParams, build_request
from agentic_synth.caching._cache import Cache
from agentic_synth.providers import create_provider


async def hit_path(n: int) -> dict[str, float]:
    """p50 CPU per generate() hit, and per bare simulator call."""
    provider = create_provider(ModelSpec("sim", "a"), max_connections=1)
    request = build_request("What is the capital of France?", GenerationParams(max_tokens=64))
    bare: list[int] = []
    for _ in range(n):
        t0 = time.thread_time_ns()
        await provider.complete("a", request)
        bare.append(time.thread_time_ns() - t0)
    hits: list[int] = []
    async with Synth(["sim:a"], cache=Cache(("memory",), mode="shared")) as synth:
        await synth.generate("What is the capital of France?", max_tokens=64)  # the one miss
        for _ in range(n):
            t0 = time.thread_time_ns()
            done = await synth.generate("What is the capital of France?", max_tokens=64)
            hits.append(time.thread_time_ns() - t0)
        assert done.cached
    return {
        "hit_p50_us": statistics.median(hits) / 1000,
        "sim_call_p50_us": statistics.median(bare) / 1000,
    }


async def zipf_hit_rate(n: int, distinct: int, seed: int = 7) -> dict[str, float]:
    rng = random.Random(seed)
    weights = [1.0 / (k**1.1) for k in range(1, distinct + 1)]
    picks = rng.choices(range(distinct), weights=weights, k=n)
    seen: set[int] = set()
    possible = 0
    for p in picks:
        possible += p in seen
        seen.add(p)
    async with Synth(["sim:a"], cache=Cache(("memory",), mode="shared")) as synth:
        for p in picks:  # one at a time: the cache alone decides, not single-flight
            await synth.generate(f"Label the sentiment of review number {p}.", max_tokens=8)
        stats = synth.metrics().cache
    assert stats is not None
    return {"hit_rate_pct": 100 * stats["hit_rate"], "best_possible_pct": 100 * possible / n}


async def memory_rss(entries: int = 1000, answer_bytes: int = 4000) -> dict[str, float]:
    gc.collect()
    before = read_rss() or 0
    async with Synth(
        [ModelSpec("sim", "a", options={"output_tokens": answer_bytes // 5})],
        cache=Cache(("memory",), memory_entries=entries),
    ) as synth:
        await synth.generate_batch(
            [f"Write a paragraph about topic {i}." for i in range(entries)],
            max_tokens=answer_bytes,
        )
        stats = synth.metrics().cache
        gc.collect()
        after = read_rss() or 0
    assert stats is not None
    return {
        "rss_before_mb": before / 2**20,
        "rss_full_mb": after / 2**20,
        "tier_entries": stats["tiers"]["memory"]["entries"],
        "tier_mb": stats["tiers"]["memory"]["bytes"] / 2**20,
    }


async def persistent_cost(n: int, concurrency: int, latency: float) -> dict[str, float]:
    proc, url = start_server(latency)
    spec = ModelSpec("openai", "mock", base_url=f"{url}/v1", api_key="k")
    prompts = [f"Say something about {i}." for i in range(n)]
    best: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for round_ in range(2):  # interleaved rounds, best of each
                for name, cache in (
                    ("no cache (baseline)", None),
                    ("sqlite cache", str(Path(tmp) / f"c{round_}.db")),
                ):
                    async with Synth([spec], max_concurrency=concurrency, cache=cache) as synth:
                        with timed() as t:
                            results = await synth.generate_batch(prompts, max_tokens=16)
                    assert all(r.ok for r in results)
                    best[name] = max(best.get(name, 0.0), n / t.wall)
    finally:
        proc.terminate()
        proc.wait(10)
    base, cached = best["no cache (baseline)"], best["sqlite cache"]
    return {"req_s_no_cache": base, "req_s_sqlite": cached, "slower_pct": 100 * (1 - cached / base)}


async def main(quick: bool) -> None:
    hits = await hit_path(2000 if quick else 20000)
    zipf = await zipf_hit_rate(5000 if quick else 20000, 5000)
    rss = await memory_rss()
    cost = await persistent_cost(1000 if quick else 5000, 256, 0.1)
    rows = [
        {
            "figure": "hit p50 CPU us (target <= 20)",
            "value": hits["hit_p50_us"],
            "baseline": hits["sim_call_p50_us"],
            "baseline_is": "simulator call p50 CPU us",
        },
        {
            "figure": "Zipf shared hit rate % (target > 50)",
            "value": zipf["hit_rate_pct"],
            "baseline": zipf["best_possible_pct"],
            "baseline_is": "best possible %",
        },
        {
            "figure": "RSS MB, 1000 x 4 KB in memory (target <= 100)",
            "value": rss["rss_full_mb"],
            "baseline": rss["rss_before_mb"],
            "baseline_is": "RSS MB before filling",
        },
        {
            "figure": "req/s with SQLite cache, 256 concurrent",
            "value": cost["req_s_sqlite"],
            "baseline": cost["req_s_no_cache"],
            "baseline_is": "req/s without cache",
        },
    ]
    print(table(rows, ["figure", "value", "baseline", "baseline_is"]))
    print(f"\npersistent tier cost: {cost['slower_pct']:.1f}% slower (target <= 10)")
    figures = {"hit_path": hits, "zipf": zipf, "memory": rss, "persistent": cost}
    print("results:", save("cache", figures))
    print(json.dumps(figures))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller runs")
    args = ap.parse_args()
    anyio.run(main, args.quick)
