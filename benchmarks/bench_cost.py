"""Cost features: what a budget check costs per request, and a provider batch job end
to end on the mock server against the same work sent online.

1. The budget check, alone: the worst case of a request (``worst_case_input_tokens``
   and ``Prices.worst_case``), ``BudgetAccount.try_reserve`` and ``settle``, per
   request, in memory and on a SQLite ledger. Baseline in the same run: pricing the
   call's usage (``Prices.cost``), which every call pays anyway.
2. The engine: ``generate_batch`` of N prompts on the zero-latency simulator with and
   without ``Synth(budget=...)``, CPU per request (best of 3).
3. Batch mode over the wire: N prompts through the official ``anthropic`` SDK to the
   mock server (its own process), ``mode="batch"`` against online ``generate_batch``
   of the same prompts: wall time, provider calls, and the cost of each (the batch
   discount: the batch job's cost over the online one's).

    python benchmarks/bench_cost.py            # ~30 s
    python benchmarks/bench_cost.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _report import save, table, timed

from agentic_synth import ModelSpec, Synth, Usage
from agentic_synth._budget import Budget, BudgetAccount
from agentic_synth._pricing import prices_for, worst_case_input_tokens
from agentic_synth._request import GenerationParams, build_request


def per_call_us(n: int, ledger: Path | None) -> dict[str, float]:
    spec = ModelSpec("anthropic:claude-haiku-4-5", api_key="x")
    prices = prices_for(spec)
    assert prices is not None
    request = build_request(
        {"prompt": "Write a realistic product review of item 1234.", "system": "Be concise."},
        GenerationParams(max_tokens=512),
    )
    usage = Usage(40, 300)

    async def main() -> dict[str, float]:
        account = BudgetAccount(Budget(limit_usd=1e9, alerts=(0.5, 0.8, 0.9), path=ledger))
        with timed() as base:
            for _ in range(n):
                prices.cost(usage)
        with timed() as check:
            for _ in range(n):
                amount = prices.worst_case(worst_case_input_tokens(request), request.max_tokens)
                hold = account.try_reserve(amount) or await account.reserve(amount)
                account.settle(hold, prices.cost(usage))
        account.close()
        return {"baseline_cost_us": base.cpu / n * 1e6, "budget_check_us": check.cpu / n * 1e6}

    return asyncio.run(main())


def engine_cpu(n: int, budget: bool) -> float:
    async def main() -> float:
        async with Synth(
            ["sim:sim-1"], max_concurrency=64, max_tokens=64, budget=1e9 if budget else None
        ) as synth:
            with timed() as t:
                results = await synth.generate_batch([f"prompt {i}" for i in range(n)])
            assert all(r.ok for r in results)
        return t.cpu / n * 1e6

    return min(asyncio.run(main()) for _ in range(3))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def batch_over_the_wire(n: int) -> list[dict[str, Any]]:
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agentic_synth.cli",
            "mock-server",
            "--port",
            str(port),
            "--batch-processing-time",
            "1.0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        spec = ModelSpec(
            "anthropic:claude-haiku-4-5", base_url=f"http://127.0.0.1:{port}", api_key="sk-bench"
        )
        prompts = [f"Write a short question about topic {i}." for i in range(n)]

        async def run(mode: str) -> dict[str, Any]:
            with tempfile.TemporaryDirectory() as tmp:
                async with Synth([spec], max_concurrency=64, max_tokens=64) as synth:
                    t0 = time.perf_counter()
                    kwargs: dict[str, Any] = {}
                    if mode == "batch":
                        kwargs = {"batch_state": Path(tmp) / "s.sqlite", "batch_poll_interval": 0.2}
                    results = await synth.generate_batch(prompts, mode=mode, **kwargs)
                    wall = time.perf_counter() - t0
                ok = [r for r in results if r.ok]
                return {
                    "mode": mode,
                    "inputs": n,
                    "answered": len(ok),
                    "wall_s": wall,
                    "cost_usd": sum(r.cost or 0.0 for r in ok),  # type: ignore[union-attr]
                }

        online = asyncio.run(run("online"))
        batch = asyncio.run(run("batch"))
        batch["cost_vs_online"] = batch["cost_usd"] / online["cost_usd"]
        return [online, batch]
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 20_000 if args.quick else 100_000
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for where, ledger in (("memory", None), ("sqlite ledger", Path(tmp) / "b.sqlite")):
            figures = per_call_us(n, ledger)
            rows.append({"budget": where, **figures})
    print("budget check per request (CPU µs), baseline: pricing the usage")
    print(table(rows, ["budget", "baseline_cost_us", "budget_check_us"]))
    engine_n = 5_000 if args.quick else 20_000
    off, on = engine_cpu(engine_n, False), engine_cpu(engine_n, True)
    engine = [
        {"engine": "generate_batch, no budget (baseline)", "cpu_us_per_request": off},
        {"engine": "generate_batch, Synth(budget=...)", "cpu_us_per_request": on},
    ]
    print("\nengine CPU per request, zero-latency simulator, best of 3")
    print(table(engine, ["engine", "cpu_us_per_request"]))
    print(f"budget overhead: {on - off:+.2f} µs per request ({on / off:.3f}x)")
    wire = batch_over_the_wire(500 if args.quick else 2_000)
    print("\nbatch mode vs online, anthropic SDK -> mock server (batch processing time 1 s)")
    print(table(wire, ["mode", "inputs", "answered", "wall_s", "cost_usd", "cost_vs_online"]))
    path = save(
        "cost",
        {
            "budget_check": rows,
            "engine": engine,
            "batch_over_the_wire": wire,
            "cpus": os.cpu_count(),
        },
    )
    print(f"\nsaved {path}")


if __name__ == "__main__":
    main()
