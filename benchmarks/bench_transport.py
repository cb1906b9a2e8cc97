"""Transport throughput and CPU: the whole engine against the loopback mock server.

Issue 2's requirement: the ``openai`` provider through the whole engine, 5,000
requests at 256 concurrent against a server answering after 100 ms, reaches
>= 85% of ideal throughput (concurrency / latency) with CPU per request <= 2x
raw aiohttp's, both measured in this run against the same server. The
Anthropic provider (official SDK, aiohttp transport) is measured for reference.
The mock server runs in its own process (``synth mock-server``) so it does not
share this process's CPU; its own CPU per request is reported too. Issue 10's cost
of watching: the openai row again with ``Synth(monitor=False)`` (no stage timings,
windows or loop probe); monitoring may cost at most 3% of its throughput.

    python benchmarks/bench_transport.py [--n 5000] [--concurrency 256] [--latency 0.1]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp
import anyio
from _report import save, table, timed

from agentic_synth import ModelSpec, Synth


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(latency: float) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agentic_synth.simulator",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--latency",
            str(latency),
        ],
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("mock server did not start")


def server_cpu(proc: subprocess.Popen[bytes]) -> float:
    with open(f"/proc/{proc.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def pool(n: int, concurrency: int, one: Callable[[int], Awaitable[None]]) -> None:
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            await one(i)

    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)


async def raw_aiohttp(url: str, n: int, concurrency: int) -> None:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int) -> None:
            body = {
                "model": "mock",
                "max_tokens": 16,
                "messages": [{"role": "user", "content": f"Say something about {i}."}],
            }
            async with session.post(
                f"{url}/v1/chat/completions", json=body, headers={"Authorization": "Bearer k"}
            ) as r:
                data = await r.json()
                assert data["choices"][0]["message"]["content"]

        await pool(n, concurrency, one)


async def engine(spec: ModelSpec, n: int, concurrency: int, monitor: bool = True) -> None:
    async with Synth([spec], max_concurrency=concurrency, monitor=monitor) as synth:
        prompts = (f"Say something about {i}." for i in range(n))
        results = await synth.generate_batch(prompts, max_tokens=16)
    failed = [r for r in results if not r.ok]
    assert not failed, failed[:3]


async def measure(
    name: str,
    make: Callable[[], Awaitable[None]],
    n: int,
    concurrency: int,
    latency: float,
    proc: subprocess.Popen[bytes],
) -> dict[str, object]:
    gc.collect()
    s0 = server_cpu(proc)
    with timed() as t:
        await make()
    s1 = server_cpu(proc)
    ideal = concurrency / latency
    return {
        "client": name,
        "req_s": n / t.wall,
        "pct_ideal": 100 * n / t.wall / ideal,
        "cpu_us": t.cpu / n * 1e6,
        "server_cpu_us": (s1 - s0) / n * 1e6,
    }


async def main(n: int, concurrency: int, latency: float, rounds: int) -> None:
    proc, url = start_server(latency)
    try:
        openai = ModelSpec("openai", "mock", base_url=f"{url}/v1", api_key="k")
        anthropic = ModelSpec("anthropic", "mock", base_url=url, api_key="k")
        clients: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("raw aiohttp (baseline)", lambda: raw_aiohttp(url, n, concurrency)),
            ("engine + openai provider", lambda: engine(openai, n, concurrency)),
            ("engine + anthropic SDK (aiohttp)", lambda: engine(anthropic, n, concurrency)),
            (
                "engine + openai provider, monitor=False",
                lambda: engine(openai, n, concurrency, monitor=False),
            ),
        ]
        await raw_aiohttp(url, min(n, 1000), concurrency)  # warm up both processes
        best: dict[str, dict[str, object]] = {}
        for _ in range(rounds):  # interleaved rounds; keep each client's best (least noisy)
            for name, make in clients:
                row = await measure(name, make, n, concurrency, latency, proc)
                if name not in best or row["cpu_us"] < best[name]["cpu_us"]:  # type: ignore[operator]
                    best[name] = row
    finally:
        proc.terminate()
        proc.wait(10)
    rows = list(best.values())
    base = rows[0]["cpu_us"]
    for row in rows:
        row["cpu_vs_raw"] = row["cpu_us"] / base  # type: ignore[operator]
    print(
        f"{n} requests, {concurrency} concurrent, server latency {latency * 1000:.0f} ms, "
        f"ideal {concurrency / latency:,.0f} req/s, best of {rounds} rounds\n"
    )
    print(table(rows, ["client", "req_s", "pct_ideal", "cpu_us", "cpu_vs_raw", "server_cpu_us"]))
    eng = rows[1]
    print(
        f"\nopenai provider through the engine: {eng['pct_ideal']:.1f}% of ideal (target >= 85), "
        f"CPU {eng['cpu_vs_raw']:.2f}x raw aiohttp (target <= 2)"
    )
    print(
        "results:",
        save("transport", {"n": n, "concurrency": concurrency, "latency": latency, "rows": rows}),
    )
    off = rows[3]
    watch = 1 - eng["req_s"] / off["req_s"]  # type: ignore[operator]
    print(
        f"cost of watching: {watch:+.1%} of throughput (target <= 3%), "
        f"{eng['cpu_us'] - off['cpu_us']:+.1f} us CPU per request"  # type: ignore[operator]
    )
    print(json.dumps({"pct_ideal": eng["pct_ideal"], "cpu_vs_raw": eng["cpu_vs_raw"]}))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--latency", type=float, default=0.1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--loop",
        choices=["asyncio", "uvloop"],
        default="uvloop",
        help="event loop for every client alike (uvloop: what `synth` uses)",
    )
    a = ap.parse_args()
    print(f"event loop: {a.loop}")
    anyio.run(
        main,
        a.n,
        a.concurrency,
        a.latency,
        a.rounds,
        backend_options={"use_uvloop": a.loop == "uvloop"},
    )
