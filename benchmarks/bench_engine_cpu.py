"""CPU cost of the engine and of the router per request, on the in-process simulator.

Targets (issue 2 and 3): the whole engine on the simulator path <= 50 us CPU per
request; the router <= 20 us on top of that. Baselines measured in the same
run: the bare ``SimProvider.complete`` loop (what the simulator itself costs).
The cost of watching (issue 10): the engine with its monitoring (stage timings,
windows, the loop probe) against ``Synth(monitor=False)`` in the same run.

    python benchmarks/bench_engine_cpu.py [--n 20000]
"""

from __future__ import annotations

import argparse
import gc
import statistics

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


async def engine(n: int, concurrency: int, monitor: bool = True) -> tuple[float, float]:
    async with Synth(
        [ModelSpec("sim", "a")], max_concurrency=concurrency, monitor=monitor
    ) as synth:
        inputs = prompts(n)
        with timed() as t:
            results = await synth.generate_batch(inputs, max_tokens=64)
    assert all(r.ok for r in results)
    return t.cpu / n * 1e6, n / t.wall


async def main(n: int, repeat: int) -> None:
    one = [ModelSpec("sim", "a")]
    limited = [
        ModelSpec("sim", "a", rpm=1e9, input_tpm=1e12, output_tpm=1e12),
        ModelSpec("sim", "b"),
        ModelSpec("sim", "c"),
    ]
    runs: dict[str, list[float]] = {}
    rates: dict[str, list[float]] = {}
    for _ in range(repeat):  # interleaved, so drift in machine load hits every row alike
        gc.collect()
        runs.setdefault("provider", []).append(await bare_provider(n))
        runs.setdefault("router", []).append(await bare_router(n, one, "priority"))
        runs.setdefault("router_limited", []).append(await bare_router(n, limited, "least_latency"))
        for c in (1, 64, 256):
            cpu_us, rate = await engine(n, c)
            runs.setdefault(f"engine_{c}", []).append(cpu_us)
            rates.setdefault(f"engine_{c}", []).append(rate)
            if c != 1:
                cpu_us, rate = await engine(n, c, monitor=False)
                runs.setdefault(f"engine_{c}_off", []).append(cpu_us)
                rates.setdefault(f"engine_{c}_off", []).append(rate)
    med = {k: statistics.median(v) for k, v in runs.items()}
    provider_us = med["provider"]
    rows: list[dict[str, object]] = [
        {"path": "baseline: SimProvider.complete alone", "cpu_us": provider_us},
        {
            "path": "Router.complete, 1 model",
            "cpu_us": med["router"],
            "router_us": med["router"] - provider_us,
        },
        {
            "path": "Router.complete, 3 models, rpm+tpm limits, least_latency",
            "cpu_us": med["router_limited"],
            "router_us": med["router_limited"] - provider_us,
        },
    ]
    for c in (1, 64, 256):
        rows.append(
            {
                "path": f"Synth.generate_batch, concurrency {c}",
                "cpu_us": med[f"engine_{c}"],
                "engine_us": med[f"engine_{c}"] - provider_us,
                "req_s": statistics.median(rates[f"engine_{c}"]),
            }
        )
    for c in (64, 256):
        rows.append(
            {
                "path": f"Synth.generate_batch, concurrency {c}, monitor=False",
                "cpu_us": med[f"engine_{c}_off"],
                "engine_us": med[f"engine_{c}_off"] - provider_us,
                "req_s": statistics.median(rates[f"engine_{c}_off"]),
            }
        )
    print(
        f"{n} requests per row, 64 output tokens, zero simulated latency, "
        f"median of {repeat} interleaved runs\n"
    )
    print(table(rows, ["path", "cpu_us", "router_us", "engine_us", "req_s"]))
    worst = max(med[f"engine_{c}"] for c in (1, 64, 256))
    print(f"\nengine total, worst concurrency: {worst:.1f} us/request (target <= 50)")
    print(
        f"router overhead: {med['router'] - provider_us:.1f} us plain, "
        f"{med['router_limited'] - provider_us:.1f} us with limits (target <= 20)"
    )
    for c in (64, 256):
        watch = med[f"engine_{c}"] - med[f"engine_{c}_off"]
        print(f"cost of watching at concurrency {c}: {watch:+.1f} us/request")
    print("results:", save("engine_cpu", {"n": n, "repeat": repeat, "rows": rows, "runs": runs}))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    anyio.run(main, a.n, a.repeat)
