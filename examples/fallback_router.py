"""Fallback and circuit breakers: a flaky primary and a steady backup.

The primary fails 60% of requests; the router retries, falls back to the backup,
and the primary's breaker opens so traffic stops paying for its failures.
"""

import anyio

from agentic_synth import BreakerConfig, ModelSpec, RetryPolicy, Synth


async def main() -> None:
    models = [
        ModelSpec("sim", "flaky", options={"fault_500": 0.6, "latency": "uniform:0.005,0.02"}),
        ModelSpec("sim", "steady", options={"latency": "uniform:0.01,0.03"}),
    ]
    async with Synth(
        models,
        max_concurrency=64,
        retry=RetryPolicy(max_attempts=2, base=0.01, cap=0.05),
        breaker=BreakerConfig(failure_threshold=5, cooldown=30.0),
    ) as synth:
        results = await synth.generate_batch([f"Question {i}" for i in range(2000)], max_tokens=16)
        m = synth.metrics()
    served: dict[str, int] = {}
    for r in results:
        served[r.model if r.ok else "error"] = served.get(r.model if r.ok else "error", 0) + 1
    print("served by:", served)
    print("breaker of the flaky model:", m.models["sim:flaky"]["breaker"]["state"])
    print(f"retries {m.retries}, fallbacks {m.fallbacks}")
    print(f"requests that skipped the open breaker: {m.breaker_rejections}")


anyio.run(main)
