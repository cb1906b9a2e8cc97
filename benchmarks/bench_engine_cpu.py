"""CPU cost of the engine and of the router per request, on the in-process simulator.

Targets (issue 2 and 3): the whole engine on the simulator path <= 50 us CPU per
request; the router <= 20 us on top of that. Baselines measured in the same
run: the bare ``SimProvider.complete`` loop (what the simulator itself costs).

    python benchmarks/bench_engine_cpu.py [--n 20000]
"""

from __future__ import annotations

import argparse
import gc

import anyio
from _report import save, table, timed

from agentic_synth import ModelSpec, Synth
from agentic_synth._request import GenerationParams, build_request
from agentic_synth.monitor import Metrics
from agentic_synth.providers import create_provider
from agentic_synth.routing import Router

PARAMS = GenerationParams(max_tokens=64)


def prompts(n: int) -> list[str]:
    return [f"Write one sentence about topic number {i}." for i in range(n)]


async def bare_provider(n: int) -> float:
    provider = create_provider(ModelSpec("sim", "a"), max_connections=1)
    requests = [build_request(p, PARAMS) for p in prompts(n)]
    with timed() as t:
        for r in requests:
            await provider.complete("a", r)
    return t.cpu / n * 1e6


async def bare_router(n: int, specs: list[ModelSpec], strategy: str) -> float:
    pairs = [(s, create_provider(s, max_connections=1)) for s in specs]
    router = Router(pairs, metrics=Metrics(), strategy=strategy)
    requests = [build_request(p, PARAMS) for p in prompts(n)]
    with timed() as t:
        for r in requests:
            await router.complete(r)
    return t.cpu / n * 1e6


async def engine(n: int, concurrency: int) -> tuple[float, float]:
    async with Synth([ModelSpec("sim", "a")], max_concurrency=concurrency) as synth:
        inputs = prompts(n)
        with timed() as t:
            results = await synth.generate_batch(inputs, max_tokens=64)
    assert all(r.ok for r in results)
    return t.cpu / n * 1e6, n / t.wall


async def main(n: int) -> None:
    gc.collect()
    provider_us = await bare_provider(n)
    one = [ModelSpec("sim", "a")]
    limited = [
        ModelSpec("sim", "a", rpm=1e9, input_tpm=1e12, output_tpm=1e12),
        ModelSpec("sim", "b"),
        ModelSpec("sim", "c"),
    ]
    router_us = await bare_router(n, one, "priority")
    router_limited_us = await bare_router(n, limited, "least_latency")
    rows = []
    for concurrency in (1, 64, 256):
        cpu_us, rate = await engine(n, concurrency)
        rows.append(
            {
                "path": f"Synth.generate_batch, concurrency {concurrency}",
                "cpu_us": cpu_us,
                "engine_us": cpu_us - provider_us,
                "req_s": rate,
            }
        )
    rows[:0] = [
        {"path": "baseline: SimProvider.complete alone", "cpu_us": provider_us},
        {
            "path": "Router.complete, 1 model",
            "cpu_us": router_us,
            "router_us": router_us - provider_us,
        },
        {
            "path": "Router.complete, 3 models, rpm+tpm limits, least_latency",
            "cpu_us": router_limited_us,
            "router_us": router_limited_us - provider_us,
        },
    ]
    print(f"{n} requests per row, 64 output tokens, zero simulated latency\n")
    print(table(rows, ["path", "cpu_us", "router_us", "engine_us", "req_s"]))
    worst = max(r["cpu_us"] for r in rows if r["path"].startswith("Synth"))
    print(f"\nengine total, worst concurrency: {worst:.1f} us/request (target <= 50)")
    print(
        f"router overhead: {router_us - provider_us:.1f} us plain, "
        f"{router_limited_us - provider_us:.1f} us with limits (target <= 20)"
    )
    print("results:", save("engine_cpu", {"n": n, "rows": rows}))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    anyio.run(main, ap.parse_args().n)
