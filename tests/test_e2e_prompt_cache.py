"""End to end: provider prompt caching through Synth, the router, the official anthropic
SDK / the openai provider / the in-process sim, and the mock server's prompt cache.

A batch whose inputs share one of two long system prompts: exactly one cache write
per prompt, every other request a read, ``Completion.usage`` split as the provider
billed it, and ``metrics().cost_usd`` at the cached prices.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from agentic_synth import ModelSpec, StreamCompleted, Synth
from agentic_synth._types import Completion
from agentic_synth.simulator import MockServer, SimConfig

#: ~3,000 estimated tokens each, different from the first word on.
SYSTEMS = {
    group: f"You label {group} records. " + " ".join(f"{group}-rule-{i}" for i in range(1200))
    for group in ("alpha", "beta")
}
PER_GROUP = 30
#: Claude Sonnet 4.5 list prices, USD per token (input, output); cache writes and reads
#: default to 1.25x and 0.1x input.
SONNET = {"input_price": 3e-6, "output_price": 15e-6}
#: gpt-4o-mini: cached input is half price on OpenAI.
MINI = {"input_price": 0.15e-6, "output_price": 0.6e-6, "cache_read_price": 0.075e-6}


def inputs() -> list[dict[str, Any]]:
    """Interleaved: the two groups warm up side by side."""
    return [
        {"prompt": f"record {i}: value {i * 7}", "system": SYSTEMS[group]}
        for i in range(PER_GROUP)
        for group in SYSTEMS
    ]


def by_group(results: list[Any]) -> dict[str, list[Completion]]:
    assert all(r.ok for r in results), [r for r in results if not r.ok][:3]
    return {
        group: [r for j, r in enumerate(results) if j % 2 == k] for k, group in enumerate(SYSTEMS)
    }


def cost(
    r: Completion, *, input_price: float, output_price: float, write: float, read: float
) -> float:
    u = r.usage
    uncached = u.input_tokens - u.cache_creation_input_tokens - u.cache_read_input_tokens
    return (
        uncached * input_price
        + u.cache_creation_input_tokens * write
        + u.cache_read_input_tokens * read
        + u.output_tokens * output_price
    )


@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
async def test_anthropic_sdk_one_write_per_prompt_then_reads(streamed: bool) -> None:
    async with MockServer(SimConfig(seed=11, latency="uniform:0.01,0.04")) as server:
        spec = ModelSpec(
            "anthropic", "claude-sonnet-4-5", base_url=server.url, api_key="sk-ant-test", **SONNET
        )
        async with Synth([spec], max_concurrency=24) as synth:
            if streamed:
                results: list[Any] = [None] * 12

                async def one(j: int, item: dict[str, Any]) -> None:
                    async with synth.generate_stream(
                        item["prompt"], system=item["system"], max_tokens=24
                    ) as stream:
                        async for event in stream:
                            if isinstance(event, StreamCompleted):
                                results[j] = event.completion

                async with anyio.create_task_group() as tg:
                    for j, item in enumerate(inputs()[:12]):
                        tg.start_soon(one, j, item)
            else:
                results = await synth.generate_batch(inputs(), max_tokens=24)
            metrics = synth.metrics()
    groups = by_group(results)
    for group, rows in groups.items():
        writes = [r for r in rows if r.usage.cache_creation_input_tokens]
        reads = [r for r in rows if r.usage.cache_read_input_tokens]
        assert len(writes) == 1, group
        assert len(reads) == len(rows) - 1, group
        prefix = writes[0].usage.cache_creation_input_tokens
        assert prefix >= 2900
        assert all(r.usage.cache_read_input_tokens == prefix for r in reads)
        # input_tokens is the whole prompt: the cached prefix plus this input's own text.
        assert all(prefix < r.usage.input_tokens < prefix + 20 for r in rows)
    assert (server.stats.cache_writes, server.stats.cache_reads) == (2, len(results) - 2)
    expected = sum(cost(r, **SONNET, write=3e-6 * 1.25, read=3e-6 * 0.1) for r in results)
    assert metrics.cost_usd == pytest.approx(expected, rel=1e-9)
    uncached = sum(r.usage.input_tokens * 3e-6 + r.usage.output_tokens * 15e-6 for r in results)
    assert metrics.cost_usd < 0.35 * uncached  # most of the bill was the shared prompt


async def test_openai_provider_one_miss_per_prompt_then_cached_tokens() -> None:
    async with MockServer(SimConfig(seed=12, latency="uniform:0.01,0.04")) as server:
        spec = ModelSpec(
            "openai", "gpt-4o-mini", base_url=server.openai_url, api_key="sk-test", **MINI
        )
        async with Synth([spec], max_concurrency=24) as synth:
            results = await synth.generate_batch(inputs(), max_tokens=24)
            metrics = synth.metrics()
    for group, rows in by_group(results).items():
        cached = [r.usage.cache_read_input_tokens for r in rows]
        assert cached.count(0) == 1, group
        assert all(c >= 1024 and (c - 1024) % 128 == 0 for c in cached if c), group
        assert all(r.usage.cache_creation_input_tokens == 0 for r in rows)
    assert (server.stats.cache_writes, server.stats.cache_reads) == (2, len(results) - 2)
    expected = sum(
        cost(
            r,
            input_price=MINI["input_price"],
            output_price=MINI["output_price"],
            write=0.0,
            read=MINI["cache_read_price"],
        )
        for r in results
    )
    assert metrics.cost_usd == pytest.approx(expected, rel=1e-9)


async def test_prompt_cache_off_pays_full_price() -> None:
    async with MockServer(SimConfig(seed=13)) as server:
        spec = ModelSpec(
            "anthropic",
            "claude-sonnet-4-5",
            base_url=server.url,
            api_key="sk-ant-test",
            options={"prompt_cache": False},
            **SONNET,
        )
        async with Synth([spec], max_concurrency=8) as synth:
            results = await synth.generate_batch(inputs()[:10], max_tokens=24)
            metrics = synth.metrics()
    assert all(r.ok and r.usage.cache_read_input_tokens == 0 for r in results)
    assert server.stats.cache_writes == 0
    full = sum(r.usage.input_tokens * 3e-6 + r.usage.output_tokens * 15e-6 for r in results)
    assert metrics.cost_usd == pytest.approx(full, rel=1e-9)


async def test_in_process_sim_bills_like_the_mock_server() -> None:
    items = inputs()
    spec = ModelSpec("sim", "claude-sonnet-4-5", options={"seed": 11, "latency": 0.01}, **SONNET)
    async with Synth([spec], max_concurrency=24) as synth:
        results = await synth.generate_batch(items, max_tokens=24)
    for rows in by_group(results).values():
        assert sum(1 for r in rows if r.usage.cache_creation_input_tokens) == 1
        assert sum(1 for r in rows if r.usage.cache_read_input_tokens) == len(rows) - 1


@pytest.mark.parametrize("streamed", [False, True], ids=["complete", "stream"])
async def test_one_hour_writes_are_reported_and_priced_at_twice_the_input(
    streamed: bool,
) -> None:
    async with MockServer(SimConfig(seed=5)) as server:
        spec = ModelSpec(
            "anthropic:claude-sonnet-4-5",
            base_url=server.url,
            api_key="sk-ant-test",
            options={"prompt_cache": "1h"},
            **SONNET,
        )
        async with Synth([spec]) as synth:
            if streamed:
                stream = synth.generate_stream("record 1", system=SYSTEMS["alpha"], max_tokens=8)
                events = [e async for e in stream]
                first = events[-1].completion  # type: ignore[union-attr]
            else:
                first = await synth.generate("record 1", system=SYSTEMS["alpha"], max_tokens=8)
            m = synth.metrics()
    u = first.usage
    assert u.cache_creation_input_tokens > 0
    assert u.cache_creation_1h_input_tokens == u.cache_creation_input_tokens
    uncached = u.input_tokens - u.cache_creation_input_tokens
    expected = uncached * 3e-6 + u.cache_creation_input_tokens * 6e-6 + u.output_tokens * 15e-6
    assert m.cost_usd == pytest.approx(expected)
