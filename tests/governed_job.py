"""A job with 1 GB of cacheable answers, run in its own process by test_governor_e2e.

Usage: python governed_job.py LIMIT_MB|none  -> prints the peak RSS in MB.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import anyio.lowlevel

import agentic_synth._synth as synth_module
from agentic_synth import ModelSpec, Synth
from agentic_synth._types import ProviderResponse, Request, Usage
from agentic_synth.caching._cache import Cache

ANSWER = 400_000  # bytes per answer; 2,500 answers = 1 GB


class Big:
    """Answers of 400 KB each, cheap to make, distinct per request."""

    name = "sim"

    async def complete(self, model: str, request: Request) -> ProviderResponse:
        await anyio.lowlevel.checkpoint()
        tag = request.messages[0]["content"]
        return ProviderResponse(tag + "x" * ANSWER, "end_turn", Usage(10, ANSWER // 4))

    async def aclose(self) -> None:
        return None


def peak_rss_mb() -> float:
    """This process's peak RSS (``VmHWM``). Not ``ru_maxrss``: after fork and exec
    that also reports the parent's peak at the fork (the pytest process's, here)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


async def main(limit: str) -> None:
    synth_module.create_provider = lambda spec, **kw: Big()  # type: ignore[assignment]
    cache = Cache(("memory",), memory_entries=10**6, memory_bytes=4 * 2**30, memory_ttl=None)
    async with Synth(
        [ModelSpec("sim", "big")],
        max_concurrency=8,
        cache=cache,
        memory_limit=None if limit == "none" else f"{limit}MiB",
    ) as synth:
        async with synth.iter_batch(f"answer {i}:" for i in range(2500)) as results:
            async for _ in results:
                pass
        memory = synth.metrics().memory
    print(f"{peak_rss_mb():.1f}")
    if memory is not None:
        print(
            f"evictions={memory['evictions']} backpressure={memory['backpressure_seconds']:.2f}",
            file=sys.stderr,
        )


if __name__ == "__main__":
    anyio.run(main, sys.argv[1])
