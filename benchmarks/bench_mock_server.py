"""Mock server throughput and CPU per request, driven by a raw aiohttp client.

The server runs in a child process (``spawn_mock_server``, uvloop when
installed) so its CPU is measured apart from the client's (the server reports
its own ``process_time`` at ``GET /_sim/stats``). Scenarios, each over keep-alive connections:

* ``latency``: 256 connections, 100 ms latency. Ideal = concurrency / latency;
  the figure is the share of ideal reached.
* ``zero``: 256 connections, no latency: the client is the bottleneck, so the
  server's single-core capacity is reported as 1 / (server CPU per request),
  the target being >= 4,000 req/s.
* ``stream``: as ``latency`` but SSE streams (~64 words in 4-word deltas).

It also times the in-process ``sim`` provider: CPU per awaited ``complete`` /
full ``stream`` at zero latency (~64 output words), against an empty awaited
coroutine as the baseline (budget: well under 15 us per ``complete``).

    python benchmarks/bench_mock_server.py [--n 10000] [--concurrency 256] [--latency 0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from _report import save, table, timed

from agentic_synth._types import Request
from agentic_synth.providers.sim import SimProvider
from agentic_synth.simulator import STATS_PATH, SimConfig, fixed, spawn_mock_server


async def server_cpu(url: str) -> float:
    """CPU seconds the server process has used, from its own stats endpoint."""
    async with aiohttp.ClientSession() as session, session.get(url + STATS_PATH) as response:
        stats = await response.json()
    return float(stats["cpu_seconds"])


async def pool(n: int, concurrency: int, one: Callable[[int], Awaitable[None]]) -> None:
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            await one(i)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def run_client(url: str, n: int, concurrency: int, *, stream: bool, path: str) -> None:
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int) -> None:
            body: dict[str, Any] = {
                "model": "mock",
                "max_tokens": 128,
                "messages": [{"role": "user", "content": f"Say something about {i}."}],
            }
            if stream:
                body["stream"] = True
            async with session.post(url + path, json=body) as response:
                assert response.status == 200, response.status
                if stream:
                    async for _ in response.content:
                        pass
                else:
                    await response.read()

        await pool(n, concurrency, one)


async def measure(
    name: str, url: str, n: int, concurrency: int, latency: float, **kw: Any
) -> dict[str, Any]:
    await run_client(url, min(n // 10, 1000), concurrency, **kw)  # warm-up, open connections
    gc.collect()
    s0 = await server_cpu(url)
    with timed() as t:
        await run_client(url, n, concurrency, **kw)
    cpu = await server_cpu(url) - s0
    ideal = concurrency / latency if latency > 0 else float("nan")
    server_us = cpu / n * 1e6
    return {
        "scenario": name,
        "req_s": n / t.wall,
        "ideal_req_s": ideal,
        "pct_ideal": 100 * n / t.wall / ideal if latency > 0 else float("nan"),
        "server_cpu_us": server_us,
        "server_1core_req_s": 1e6 / server_us if server_us > 0 else float("inf"),
        "client_cpu_us": t.cpu / n * 1e6,
    }


async def provider_cpu(n: int) -> list[dict[str, Any]]:
    """CPU microseconds per sequential call of the in-process provider."""
    provider = SimProvider(SimConfig(output_tokens=64))
    requests = [
        Request(messages=[{"role": "user", "content": f"Tell me about item {i}."}], max_tokens=256)
        for i in range(n)
    ]

    async def nothing(model: str, request: Request) -> None:
        return None

    async def consume(model: str, request: Request) -> None:
        async for _ in provider.stream(model, request):
            pass

    rows = []
    for name, call in (
        ("baseline (empty await)", nothing),
        ("sim complete", provider.complete),
        ("sim stream", consume),
    ):
        best = float("inf")
        for _ in range(3):
            gc.collect()
            start = time.process_time()
            for request in requests:
                await call("sim-1", request)
            best = min(best, time.process_time() - start)
        rows.append({"call": name, "cpu_us": best / n * 1e6})
    return rows


async def main(n: int, concurrency: int, latency: float) -> None:
    provider_rows = await provider_cpu(20_000)
    print(table(provider_rows, ["call", "cpu_us"]))
    print()
    scenarios = [
        ("latency", latency, False, "/v1/messages"),
        ("latency-openai", latency, False, "/v1/chat/completions"),
        ("zero", 0.0, False, "/v1/messages"),
        ("stream", latency, True, "/v1/messages"),
    ]
    rows = []
    for name, lat, stream, path in scenarios:
        with spawn_mock_server(SimConfig(latency=fixed(lat), output_tokens=64)) as url:
            rows.append(await measure(name, url, n, concurrency, lat, stream=stream, path=path))
    columns = [
        "scenario",
        "req_s",
        "ideal_req_s",
        "pct_ideal",
        "server_cpu_us",
        "server_1core_req_s",
        "client_cpu_us",
    ]
    print(table(rows, columns))
    path = save(
        "mock_server",
        {
            "n": n,
            "concurrency": concurrency,
            "latency": latency,
            "rows": rows,
            "provider": provider_rows,
        },
    )
    print(f"saved {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--latency", type=float, default=0.1)
    args = parser.parse_args()
    asyncio.run(main(args.n, args.concurrency, args.latency))
