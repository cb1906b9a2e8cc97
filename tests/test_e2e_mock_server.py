"""End to end: Synth -> router -> the official anthropic SDK / the openai provider ->
real sockets -> the loopback mock server, with injected faults.

For every fault: every input ends with exactly one result or one error record,
fallback carries the load, and breakers do what they should.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import anyio
import pytest

from agentic_synth import (
    BreakerConfig,
    ConfigurationError,
    ModelSpec,
    RetryPolicy,
    StreamCompleted,
    Synth,
    TextDelta,
)
from agentic_synth.simulator import MockServer, SimConfig

FAST_RETRY = RetryPolicy(max_attempts=4, base=0.005, cap=0.02)


@asynccontextmanager
async def servers(*configs: SimConfig) -> AsyncIterator[list[MockServer]]:
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(MockServer(c)) for c in configs]


def anthropic(server: MockServer, name: str = "mock", **kw: object) -> ModelSpec:
    return ModelSpec("anthropic", name, base_url=server.url, api_key="sk-ant-test-key", **kw)  # type: ignore[arg-type]


def openai(server: MockServer, name: str = "mock", **kw: object) -> ModelSpec:
    return ModelSpec("openai", name, base_url=server.openai_url, api_key="sk-test", **kw)  # type: ignore[arg-type]


def check_one_each(results: list[object], n: int) -> None:
    assert len(results) == n
    assert [r.index for r in results] == list(range(n))  # type: ignore[attr-defined]


@pytest.mark.parametrize("make", [anthropic, openai], ids=["anthropic-sdk", "openai"])
async def test_generate_batch_and_stream_over_the_wire(make: object) -> None:
    async with servers(SimConfig(seed=1, tokens_per_s=5000)) as (srv,):
        async with Synth([make(srv)], max_concurrency=32) as synth:  # type: ignore[operator]
            one = await synth.generate("Say hello.", max_tokens=12)
            batch = await synth.generate_batch([f"q{i}" for i in range(100)], max_tokens=8)
            events = [e async for e in synth.generate_stream("A story.", max_tokens=30)]
    assert one.ok and one.text and one.usage.output_tokens <= 12 and one.request_id
    check_one_each(batch, 100)
    assert all(r.ok for r in batch)
    done = events[-1]
    assert isinstance(done, StreamCompleted)
    assert done.completion.text == "".join(e.text for e in events if isinstance(e, TextDelta))
    assert done.completion.ttft is not None and done.completion.usage.output_tokens > 0
    assert srv.stats.streams_completed == 1


@pytest.mark.parametrize("make", [anthropic, openai], ids=["anthropic-sdk", "openai"])
async def test_breaking_out_of_a_stream_closes_the_connection(make: object) -> None:
    async with servers(SimConfig(tokens_per_s=200)) as (srv,):
        async with Synth([make(srv)]) as synth:  # type: ignore[operator]
            async with synth.generate_stream("A long story.", max_tokens=500) as stream:
                async for event in stream:
                    if isinstance(event, TextDelta):
                        break
            with anyio.fail_after(5):
                while srv.stats.streams_aborted < 1:  # noqa: ASYNC110 (a server counter)
                    await anyio.sleep(0.01)
            assert synth.metrics().in_flight == 0


FAULTS = {
    "30% 500s": SimConfig(fault_500=0.3, seed=2),
    "529 overloaded": SimConfig(fault_529=0.2, retry_after=0.0, seed=3),
    "429 with retry-after": SimConfig(fault_429=0.2, retry_after=0.05, seed=4),
    "connection resets": SimConfig(fault_reset=0.2, seed=5),
    "malformed JSON": SimConfig(fault_malformed=0.2, seed=6),
    "truncated bodies": SimConfig(fault_truncate=0.2, seed=7),
    "slower than the timeout": SimConfig(fault_timeout=0.1, hang=5.0, seed=8),
}


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("make", [anthropic, openai], ids=["anthropic-sdk", "openai"])
async def test_faults_are_retried_and_nothing_is_lost(fault: str, make: object) -> None:
    n = 120
    async with servers(FAULTS[fault]) as (srv,):
        spec = make(srv, timeout=0.5)  # type: ignore[operator]
        async with Synth(
            [spec],
            max_concurrency=32,
            retry=FAST_RETRY,
            breaker=BreakerConfig(failure_threshold=1000, failure_rate=1.0),
        ) as synth:
            results = await synth.generate_batch([f"item {i}" for i in range(n)], max_tokens=8)
            m = synth.metrics()
    check_one_each(results, n)
    assert sum(srv.stats.faults.values()) > 0  # faults really happened
    assert m.retries > 0
    # 4 attempts per input: an input fails only if all 4 hit a fault
    # (p = 0.3^4 ~ 0.8% at the 30% rate, 0.2^4 = 0.16% at 20%, less below)
    assert sum(not r.ok for r in results) <= 4
    if fault == "429 with retry-after":
        assert m.models[spec.name]["errors"].get("RateLimitedError", 0) > 0


@pytest.mark.parametrize("fault", ["truncated streams", "error event in a 200 stream"])
async def test_stream_faults_before_and_after_first_token(fault: str) -> None:
    config = (
        SimConfig(fault_truncate=1.0, tokens_per_s=2000)
        if fault == "truncated streams"
        else SimConfig(fault_stream_error=1.0, tokens_per_s=2000)
    )
    async with servers(config, SimConfig(tokens_per_s=2000)) as (bad, good):
        async with Synth([anthropic(bad, "bad"), openai(good, "good")], retry=FAST_RETRY) as synth:
            got: list[str] = []
            with pytest.raises(Exception) as info:
                async for e in synth.generate_stream("A story.", max_tokens=40):
                    if isinstance(e, TextDelta):
                        got.append(e.text)
            # text was delivered before the failure: surfaced, not silently restarted
            assert got and info.type.__name__ in ("APIConnectionError", "OverloadedError")
            assert synth.metrics().failed == 1


async def test_primary_dead_for_the_whole_run_fallback_carries_the_load() -> None:
    async with servers(SimConfig(fault_500=1.0), SimConfig()) as (dead, alive):
        async with Synth(
            [anthropic(dead, "primary"), openai(alive, "backup")],
            max_concurrency=16,
            retry=FAST_RETRY,
            breaker=BreakerConfig(failure_threshold=5, cooldown=60.0),
        ) as synth:
            results = await synth.generate_batch([f"q{i}" for i in range(300)], max_tokens=8)
            m = synth.metrics()
    check_one_each(results, 300)
    assert all(r.ok and r.model == "openai:backup" for r in results)  # type: ignore[union-attr]
    assert m.models["anthropic:primary"]["breaker"]["state"] == "open"
    # the breaker stopped the bleeding: the dead server saw few requests
    assert dead.stats.requests["/v1/messages"] < 60
    # before the breaker opened, requests tried the primary and fell back; after, they
    # skipped it at once
    assert m.fallbacks >= 5 and m.fallbacks + m.breaker_rejections >= 300


async def test_wrong_key_everywhere_stops_the_batch_with_a_clear_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    async with MockServer(SimConfig(), api_key="the-right-key") as srv:
        async with Synth([anthropic(srv), openai(srv)], max_concurrency=8) as synth:
            with pytest.raises(ConfigurationError, match="API key was rejected") as info:
                await synth.generate_batch([f"q{i}" for i in range(10_000)], max_tokens=8)
            snapshot = repr(synth.metrics())
    assert caplog.records  # the disabled models were logged...
    for text in (str(info.value), repr(info.value), caplog.text, snapshot, repr(synth)):
        assert "sk-ant-test-key" not in text and "sk-test" not in text  # ...without keys
    assert sum(srv.stats.requests.values()) < 100  # stopped, not a million 401s


async def test_waits_for_a_pooled_connection_are_their_own_stage() -> None:
    """More concurrent generate() calls than connections (max_concurrency=2 sizes the
    pool): the queueing shows as ``pool`` time, not as the provider's."""
    async with servers(SimConfig(latency=0.05)) as (server,):
        async with Synth([openai(server)], max_concurrency=2) as synth:
            async with anyio.create_task_group() as tg:
                for i in range(8):
                    tg.start_soon(synth.generate, f"question {i}")
            waits = synth.metrics().waits
    # 8 calls over 2 connections of 50 ms each: 4 waves, the later ones queued
    assert waits["pool"] >= 0.2
    assert waits["provider"] == pytest.approx(8 * 0.05, rel=0.5)
