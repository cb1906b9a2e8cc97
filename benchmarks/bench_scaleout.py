"""Scale-out on Ray Data: 1, 2 and 4 actors under one shared rpm limit, and without.

A local Ray cluster (``ray.init(num_cpus=...)``, logical CPUs declared: see
docs/scale-out.md), the mock server in its own process (Anthropic wire, instant
answers) and a redis-server of this run for the shared limits. For each actor
count, ``generate_ray`` over ``--rows`` rows:

* ``limit``: every actor's Synth takes its rpm from one ``SharedLimits`` (one
  namespace per run, bursts of ``--burst-seconds``); the figures are the rate
  reached (rows after the burst over the time from the first to the last arrival
  at the server), the busiest second, and the calls the server counted.
* ``none``: no limit; what the actors reach on this machine (the mock server,
  Redis and the actors share its cores).

The mock server's advertised limits (rate-limit headers, which the router
honours) are set far above the shared one, so the shared limit is what binds.

The server's request count is sampled every 20 ms on a thread; arrival times come
from those samples.

    python benchmarks/bench_scaleout.py
    python benchmarks/bench_scaleout.py --rpm 6000 --rows 600 --unlimited-rows 4000
    python benchmarks/bench_scaleout.py --quick
"""

from __future__ import annotations

import argparse
import functools
import time
import uuid
from typing import Any

import ray
import ray.data
from _report import redis_url, save, table

from agentic_synth import ModelSpec, Synth
from agentic_synth.routing._shared_limits import SharedLimits
from agentic_synth.scaleout import generate_ray
from agentic_synth.simulator import ArrivalSampler, SimConfig, spawn_mock_server

#: The mock server advertises limits in its headers (4000 rpm by default) and the
#: router honours them: set them far above the shared limit measured here.
SERVER = SimConfig(
    seed=1,
    requests_per_minute=10**7,
    input_tokens_per_minute=10**10,
    output_tokens_per_minute=10**10,
)


def limited(url: str, redis: str, namespace: str, rpm: int, burst: float, conc: int) -> Synth:
    """One actor's Synth: the mock model under the job's shared rpm limit."""
    limits = SharedLimits(redis, namespace=namespace, burst_seconds=burst)
    model = ModelSpec("anthropic", "mock", base_url=url, api_key="sk-ant-bench", rpm=rpm)
    return Synth([model], max_concurrency=conc, shared_limits=limits, monitor=False)


def unlimited(url: str, conc: int) -> Synth:
    model = ModelSpec("anthropic", "mock", base_url=url, api_key="sk-ant-bench")
    return Synth([model], max_concurrency=conc, monitor=False)


class Arrivals(ArrivalSampler):
    """The mock server's request count over a job, and what it shows."""

    def figures(self, rows: int, burst: float) -> dict[str, float]:
        base = self.samples[0][1]
        points = [(t, c - base) for t, c in self.samples]
        start = max(t for t, c in points if c == 0)
        end = min((t for t, c in points if c >= rows), default=points[-1][0])
        busiest = 0
        for i, (t0, c0) in enumerate(points):
            for t1, c1 in points[i:]:
                if t1 - t0 <= 1.0:
                    busiest = max(busiest, c1 - c0)
        return {
            "rate": (rows - burst) / (end - start),
            "busiest_second": busiest,
            "calls": points[-1][1],
        }


def run(url: str, rows: int, actors: int, factory: Any, burst: float, batch: int) -> dict[str, Any]:
    ds = ray.data.from_items([{"topic": f"topic {i}"} for i in range(rows)])
    job = generate_ray(
        ds,
        prompt="Write about {topic}.",
        make_synth=factory,
        concurrency=actors,
        batch_size=batch,
        num_cpus=0.5,
        max_tokens=16,
    )
    started = time.perf_counter()
    with Arrivals(url) as arrivals:
        done = job.take_all()
        time.sleep(0.05)
    wall = time.perf_counter() - started
    assert len(done) == rows, (len(done), rows)
    return {"ok": sum(r["ok"] for r in done), "wall_s": wall, **arrivals.figures(rows, burst)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=600, help="rows per limited job")
    parser.add_argument("--rpm", type=int, default=6000, help="the shared limit")
    parser.add_argument("--burst-seconds", type=float, default=0.2)
    parser.add_argument("--unlimited-rows", type=int, default=4000)
    parser.add_argument("--per-actor", type=int, default=32, help="requests in flight per actor")
    parser.add_argument("--num-cpus", type=int, default=8, help="logical CPUs of the cluster")
    parser.add_argument("--actors", default="1,2,4")
    parser.add_argument("--quick", action="store_true", help="fewer rows")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.unlimited_rows = 200, 1000
    counts = [int(a) for a in args.actors.split(",")]
    ray.init(
        num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False,
        configure_logging=False,
    )  # fmt: skip
    ray.data.DataContext.get_current().enable_progress_bars = False
    results: list[dict[str, Any]] = []
    burst = args.rpm / 60 * args.burst_seconds
    try:
        with redis_url() as redis, spawn_mock_server(SERVER) as url:
            for actors in counts:
                factory = functools.partial(
                    limited, url, redis, uuid.uuid4().hex, args.rpm, args.burst_seconds,
                    args.per_actor,
                )  # fmt: skip
                figures = run(url, args.rows, actors, factory, burst, 2 * args.per_actor)
                results.append({"limit_rpm": args.rpm, "actors": actors, **figures})
                print(results[-1], flush=True)
            for actors in counts:
                factory = functools.partial(unlimited, url, args.per_actor)
                figures = run(url, args.unlimited_rows, actors, factory, 0.0, 2 * args.per_actor)
                results.append({"limit_rpm": "none", "actors": actors, **figures})
                print(results[-1], flush=True)
    finally:
        ray.shutdown()
    for row in results:
        row["rate_req_s"] = round(row.pop("rate"), 1)
        row["wall_s"] = round(row["wall_s"], 2)
    columns = ["limit_rpm", "actors", "rate_req_s", "busiest_second", "calls", "ok", "wall_s"]
    print(table(results, columns))
    save("scaleout", {"args": vars(args), "results": results})


if __name__ == "__main__":
    main()
