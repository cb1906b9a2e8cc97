"""A checkpointed Ray job, run as its own driver process (the test kills it) or
resumed by the test's own driver.

Reads inputs that carry their ids (with_ids), generates against the mock server
with a shared Redis cache, writes Parquet with Ray's checkpointing on.

    python _driver.py ADDRESS SERVER_URL REDIS_URL INPUTS OUT CHECKPOINT
"""

from __future__ import annotations

import functools
import sys

import ray
import ray.data

from agentic_synth import ModelSpec, RetryPolicy, Synth
from agentic_synth.caching import Cache
from agentic_synth.scaleout import checkpoint_config, generate_ray, write_results

#: Actors and requests in flight per actor: at most ACTORS * PER_ACTOR calls are
#: lost in flight when the job is killed.
ACTORS, PER_ACTOR = 2, 4


def make_synth(server_url: str, redis_url: str) -> Synth:
    model = ModelSpec("anthropic", "mock", base_url=server_url, api_key="sk-ant-test-key")
    # short leases: a row whose call died with a killed actor is made again 2 s later
    cache = Cache(("memory", redis_url), namespace="resume", lease_seconds=2.0)
    return Synth(
        [model],
        max_concurrency=PER_ACTOR,
        cache=cache,
        retry=RetryPolicy(max_attempts=2, base=0.01, cap=0.05),
        monitor=False,
    )


def job(server_url: str, redis_url: str, inputs: str, out: str, ckpt: str) -> None:
    """The checkpointed job, in whichever driver calls it."""
    ctx = ray.data.DataContext.get_current()
    ctx.checkpoint_config = checkpoint_config(ckpt)
    try:
        ds = ray.data.read_parquet(inputs)
        results = generate_ray(
            ds,
            prompt="Write about {topic}.",
            make_synth=functools.partial(make_synth, server_url, redis_url),
            concurrency=ACTORS,
            batch_size=8,
            num_cpus=0.5,
            max_tokens=8,
        )
        write_results(results, out)
    finally:
        ctx.checkpoint_config = None


def main(address: str, server_url: str, redis_url: str, inputs: str, out: str, ckpt: str) -> None:
    ray.init(address=address, log_to_driver=False)
    job(server_url, redis_url, inputs, out, ckpt)
    print("done", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
