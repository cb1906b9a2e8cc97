"""The public facade on the embedded simulator: batches, streams, cancellation, errors."""

from __future__ import annotations

import gc
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

import agentic_synth
from agentic_synth import (
    Completion,
    ConfigurationError,
    Failure,
    InvalidRequestError,
    ModelSpec,
    RetryPolicy,
    StreamCompleted,
    Synth,
    SynthError,
    TextDelta,
)
from agentic_synth.routing import BreakerConfig


def sim(name: str = "s", **options: object) -> ModelSpec:
    return ModelSpec("sim", name, options=options)


async def test_generate_returns_a_full_completion() -> None:
    async with Synth([sim()]) as synth:
        c = await synth.generate("Write a haiku about rain.", max_tokens=20)
    assert isinstance(c, Completion) and c.ok
    assert c.text and c.model == "sim:s" and c.attempts == 1 and not c.cached
    assert 0 < c.usage.output_tokens <= 20 and c.usage.input_tokens > 0
    assert c.latency >= 0 and c.finish_reason in ("stop", "length")
    assert c.request_id and c.request_id.startswith("req_sim_")


async def test_batch_is_in_input_order_with_one_entry_each_and_errors_are_records() -> None:
    inputs: list[object] = [f"prompt {i}" for i in range(200)]
    inputs[7] = ""  # invalid: becomes an error record, the batch goes on
    inputs[9] = {"prompt": "x", "max_tokens": -1}
    async with Synth([sim()], max_concurrency=16) as synth:
        results = await synth.generate_batch(inputs, max_tokens=8)  # type: ignore[arg-type]
    assert len(results) == 200
    assert [r.index for r in results] == list(range(200))
    assert isinstance(results[7], Failure) and "empty" in results[7].message
    assert isinstance(results[9], Failure) and "max_tokens" in results[9].message
    assert sum(r.ok for r in results) == 198
    again = Synth([sim()])
    async with again:
        same = await again.generate_batch([f"prompt {i}" for i in range(3)], max_tokens=8)
    assert [r.text for r in same] == [r.text for r in results[:3]]  # deterministic  # type: ignore[union-attr]


async def test_raise_on_error_raises_the_first_error() -> None:
    async with Synth([sim()]) as synth:
        with pytest.raises(InvalidRequestError, match="empty"):
            await synth.generate_batch(["ok", "", "ok"], raise_on_error=True)


async def test_iter_batch_consumes_a_million_item_generator_lazily() -> None:
    pulled = 0

    def prompts() -> Iterator[str]:
        nonlocal pulled
        for i in range(1_000_000):
            pulled += 1
            yield f"question {i}"

    got = 0
    async with Synth([sim()], max_concurrency=8) as synth:
        async with synth.iter_batch(prompts(), max_tokens=4) as results:
            async for index, result in results:
                assert result.ok and result.index == index
                got += 1
                if got == 500:
                    break
        await anyio.wait_all_tasks_blocked()
        stopped_at = pulled
        for _ in range(50):
            await anyio.lowlevel.checkpoint()
        assert pulled == stopped_at  # the batch really stopped
    # pulled = consumed + what was in flight or buffered: proportional to concurrency
    assert 500 <= pulled <= 500 + 8 * 3


async def test_iter_batch_dropped_in_plain_for_stops_workers() -> None:
    async with Synth([sim()], max_concurrency=4) as synth:
        async for _, _ in synth.iter_batch(f"p{i}" for i in range(100_000)):
            break
        gc.collect()
        await anyio.wait_all_tasks_blocked()
        before = synth.metrics().requests
        for _ in range(50):
            await anyio.lowlevel.checkpoint()
        assert synth.metrics().requests == before < 50


async def test_async_iterable_input_and_completion_order() -> None:
    async def agen() -> AsyncIterator[str]:
        for i in range(50):
            yield f"p{i}"

    async with Synth([sim(latency="uniform:0,0.01")], max_concurrency=10) as synth:
        seen = [i async for i, r in synth.iter_batch(agen(), max_tokens=4)]
        batch = await synth.generate_batch(agen(), max_tokens=4)
    assert sorted(seen) == list(range(50))
    assert len(batch) == 50


async def test_input_iterator_failure_surfaces() -> None:
    def broken() -> Iterator[str]:
        yield "a"
        raise OSError("disk gone")

    async with Synth([sim()]) as synth:
        with pytest.raises(OSError, match="disk gone"):
            await synth.generate_batch(broken())
        with pytest.raises(OSError, match="disk gone"):
            async for _ in synth.iter_batch(broken()):
                pass


async def test_stream_yields_deltas_then_completion_with_ttft() -> None:
    async with Synth([sim(tokens_per_s=2000)]) as synth:
        stream = synth.generate_stream("Tell me a story.", max_tokens=30)
        events = [e async for e in stream]
        m = synth.metrics()
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert deltas and isinstance(events[-1], StreamCompleted)
    done = events[-1].completion
    assert done.text == "".join(d.text for d in deltas)
    assert done.ttft is not None and done.ttft <= done.latency
    assert done.usage.output_tokens == len(done.text.split())
    assert stream.completion is done
    assert m.ttft_p50 is not None and m.succeeded == 1


async def test_stream_closed_early_is_not_an_error() -> None:
    async with Synth([sim(tokens_per_s=1000)]) as synth:
        async with synth.generate_stream("story", max_tokens=200) as stream:
            async for event in stream:
                assert isinstance(event, TextDelta)
                break
        m = synth.metrics()
    assert (m.in_flight, m.failed, m.cancelled) == (0, 0, 1)


async def test_cancellation_stops_promptly_and_keeps_completed() -> None:
    kept: list[int] = []
    async with Synth([sim(latency=0.05)], max_concurrency=8) as synth:
        with anyio.move_on_after(0.3) as scope:
            async with synth.iter_batch(f"p{i}" for i in range(10_000)) as results:
                async for index, _ in results:
                    kept.append(index)
        assert scope.cancelled_caught
        for _ in range(5):
            await anyio.lowlevel.checkpoint()
        m = synth.metrics()
    assert 8 <= len(kept) < 200
    assert m.in_flight == 0 and m.cancelled > 0 and m.failed == 0


async def test_cancelled_generate_batch_propagates_cancellation() -> None:
    async with Synth([sim(latency=1.0)], max_concurrency=4) as synth:
        with anyio.move_on_after(0.05) as scope:
            await synth.generate_batch([f"p{i}" for i in range(100)])
        assert scope.cancelled_caught
        assert synth.metrics().in_flight == 0 and synth.metrics().cancelled == 4


async def test_transient_faults_are_retried_to_under_a_tenth_of_a_percent() -> None:
    # 10% transient faults, default retries (RetryPolicy(): 4 attempts, 0.5 s base,
    # full jitter) and default breakers: fewer than 0.1% of 10,000 inputs fail.
    spec = sim(fault_500=0.04, fault_529=0.03, fault_429=0.03, retry_after=0.05, seed=3)
    retry = RetryPolicy(rng=random.Random(11).random)  # the defaults, with a seeded jitter
    async with Synth([spec], max_concurrency=256, retry=retry) as synth:
        results = await synth.generate_batch([f"item {i}" for i in range(10_000)], max_tokens=4)
        m = synth.metrics()
    failed = [r for r in results if not r.ok]
    assert len(results) == 10_000
    assert [r.index for r in results] == list(range(10_000))
    assert len(failed) < 10  # < 0.1 %
    assert m.retries > 500  # ~10 % of first attempts failed and were retried


async def test_primary_dead_fallback_carries_the_load() -> None:
    dead = sim("dead", fault_500=1.0)
    async with Synth(
        [dead, sim("backup")],
        max_concurrency=32,
        retry=RetryPolicy(max_attempts=2, base=0.001, cap=0.002),
        breaker=BreakerConfig(failure_threshold=5, cooldown=60.0),
    ) as synth:
        results = await synth.generate_batch([f"q{i}" for i in range(1000)], max_tokens=4)
        m = synth.metrics()
    assert all(r.ok and r.model == "sim:backup" for r in results)  # type: ignore[union-attr]
    assert m.models["sim:dead"]["breaker"]["state"] == "open"
    # once the breaker opened, the dead model stopped being tried
    assert m.models["sim:dead"]["attempts"] < 100


def test_configuration_errors_name_the_fix() -> None:
    with pytest.raises(ConfigurationError, match="unknown provider"):
        Synth(["gpt:4"])
    with pytest.raises(ConfigurationError, match="provider:model"):
        Synth(["claude"])
    with pytest.raises(ConfigurationError, match="ANTHROPIC_API_KEY"):
        Synth(["anthropic:claude-haiku-4-5"])
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        Synth(["openai:gpt-4o-mini"])
    with pytest.raises(ConfigurationError, match="max_concurrency"):
        Synth(max_concurrency=0)
    with pytest.raises(ConfigurationError, match="models is empty"):
        Synth([])
    with pytest.raises(ConfigurationError, match="strategy"):
        Synth(strategy="fastest")
    with pytest.raises(InvalidRequestError, match="max_tokens"):
        Synth(max_tokens=0)
    with pytest.raises(ConfigurationError, match="rpm"):
        ModelSpec("sim", "x", rpm=-1)
    with pytest.raises(ConfigurationError, match="fault"):
        Synth([sim(fault_500=2.0)])


async def test_call_time_errors() -> None:
    synth = Synth([sim()])
    with pytest.raises(SynthError, match="async with"):
        await synth.generate("x")
    async with synth:
        with pytest.raises(InvalidRequestError, match="max_tokens"):
            await synth.generate("x", max_tokens=0)
        with pytest.raises(InvalidRequestError, match="messages is empty"):
            await synth.generate([])
        with pytest.raises(TypeError, match="single string"):
            await synth.generate_batch("just one prompt")  # type: ignore[arg-type]


def test_keys_never_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-ant-SECRET-do-not-print-1234567890"
    spec = ModelSpec("anthropic", "claude-x", api_key=secret)
    assert secret not in repr(spec) and secret not in repr(spec.resolved())
    monkeypatch.setenv("ANTHROPIC_API_KEY", secret)
    s = Synth(["anthropic:claude-x"])
    assert secret not in repr(s)


async def test_keys_never_in_errors_logs_or_metrics_even_when_a_server_echoes_them(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """A key read from a mounted secret (trailing newline) goes out stripped, and a
    server that quotes it back (raw, JSON-escaped, in part) never gets it into an
    error record, a log line, a traceback or the metrics."""
    import json
    import traceback

    from aiohttp import web
    from aiohttp.test_utils import TestServer

    secret = "sk-proj-Zq8Lw2Rt9Pv4Mn7BxYc3Hd6Kf1Gs5Jt"
    mounted = tmp_path / "openai-key"
    mounted.write_text(secret + "\n")
    seen: list[str] = []

    async def echo(request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        seen.append(auth)
        key = auth.removeprefix("Bearer ")
        body = {
            "error": {
                "message": f"bad key {key} / {json.dumps(key)} / {key[:12]}...{key[-8:]}",
                "type": "invalid_request_error",
            }
        }
        return web.json_response(body, status=400)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", echo)
    caplog.set_level("DEBUG")
    async with TestServer(app) as server:
        spec = ModelSpec(
            "openai:gpt-x",
            base_url=str(server.make_url("/v1")),
            api_key=mounted.read_text(),
        )
        async with Synth([spec], max_concurrency=4) as synth:
            results = await synth.generate_batch([f"q{i}" for i in range(8)], max_tokens=4)
            with pytest.raises(agentic_synth.BadRequestError) as info:
                await synth.generate("one more")
            snapshot = repr(synth.metrics())
    assert seen and all(h == f"Bearer {secret}" for h in seen)  # stripped, one header line
    assert all(isinstance(r, Failure) for r in results)
    texts = [snapshot, caplog.text, str(info.value), repr(info.value)]
    texts.append("".join(traceback.format_exception(info.value)))
    for r in results:
        assert isinstance(r, Failure)
        texts += [r.message, repr(r), repr(r.error.args)]
    for text in texts:
        for piece in (secret, secret[:12], secret[-8:], json.dumps(secret)):
            assert piece not in text


def test_sync_helpers_work_in_and_out_of_a_loop() -> None:
    c = agentic_synth.generate("hi", models="sim:s", max_tokens=5)
    assert c.ok and c.usage.output_tokens <= 5
    rs = agentic_synth.generate_batch(["a", "b", ""], models="sim:s", max_tokens=5)
    assert [r.ok for r in rs] == [True, True, False]

    async def inside_loop() -> Completion:
        return agentic_synth.generate("hi", models="sim:s", max_tokens=5)

    assert anyio.run(inside_loop).ok


async def test_default_model_is_the_simulator_without_keys() -> None:
    synth = Synth()
    assert synth.models == ["sim:sim-1"]
    async with synth:
        assert (await synth.generate("hello")).model == "sim:sim-1"


async def test_errors_raised_in_the_block_come_out_unwrapped() -> None:
    with pytest.raises(ValueError, match="user error"):
        async with Synth([sim()]):
            raise ValueError("user error")
    with pytest.raises(KeyError):
        async with Synth([sim()]) as synth:
            async for _ in synth.iter_batch(["a", "b"]):
                raise KeyError("in the loop")


async def test_iter_batch_in_input_order_keeps_a_bounded_lookahead() -> None:
    pulled = 0

    def prompts() -> Iterator[str]:
        nonlocal pulled
        for i in range(400):
            pulled += 1
            yield f"question {i}"

    seen: list[int] = []
    ahead = 0
    async with Synth([sim(latency="uniform:0,0.004", seed=3)], max_concurrency=8) as synth:
        async with synth.iter_batch(prompts(), ordered=True, max_tokens=4) as results:
            async for index, result in results:
                assert result.index == index
                seen.append(index)
                ahead = max(ahead, pulled - len(seen))
    assert seen == list(range(400))
    assert ahead <= 4 * 8 + 8  # the re-order window plus what is in flight


async def test_ordered_batch_stopped_early_hands_back_what_finished() -> None:
    async with Synth([sim()], max_concurrency=4) as synth:
        stream = synth.iter_batch((f"p{i}" for i in range(50)), ordered=True, max_tokens=4)
        async with stream:
            async for index, _ in stream:
                if index == 3:
                    break
        leftovers = stream.leftovers()
    assert [i for i, _ in leftovers] == sorted(i for i, _ in leftovers)
    assert all(i > 3 for i, _ in leftovers)


async def test_iter_batch_read_after_its_synth_closed_raises() -> None:
    synth = Synth([sim(latency=0.001)], max_concurrency=4)
    async with synth:
        stream = synth.iter_batch([f"p{i}" for i in range(1000)], max_tokens=4)
    got = 0
    with pytest.raises(SynthError, match="Synth was closed"):
        async for _ in stream:
            got += 1
    assert got < 1000  # ended short, and said so


async def test_a_failing_enter_leaves_nothing_open(monkeypatch: pytest.MonkeyPatch) -> None:
    import agentic_synth._synth as synth_module

    closed: list[str] = []

    class Recording:
        name = "sim"

        async def aclose(self) -> None:
            closed.append("closed")

    def broken_router(*args: object, **kwargs: object) -> None:
        raise ConfigurationError("router cannot be built")

    monkeypatch.setattr(synth_module, "create_provider", lambda spec, **kw: Recording())
    monkeypatch.setattr(synth_module, "Router", broken_router)
    synth = Synth([sim("a"), sim("b")])
    with pytest.raises(ConfigurationError, match="router cannot be built"):
        async with synth:
            pass
    assert closed == ["closed", "closed"]  # every provider built was closed again
    assert synth._tg is None and synth._router is None
    with pytest.raises(SynthError, match="not open"):
        await synth.generate("x")


def test_bad_routing_settings_fail_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="half_open_probes"):
        BreakerConfig(half_open_probes=0)
    with pytest.raises(ConfigurationError, match="cooldown"):
        BreakerConfig(cooldown=-1)
    with pytest.raises(ConfigurationError, match="max_in_flight"):
        ModelSpec("sim", "a", max_in_flight=2.5)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="BreakerConfig"):
        Synth([sim()], breaker={"cooldown": 1})  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="RetryPolicy"):
        Synth([sim()], retry=3)  # type: ignore[arg-type]


async def test_results_buffered_when_a_batch_stops_are_kept_as_leftovers() -> None:
    async with Synth([sim()], max_concurrency=8) as synth:
        stream = synth.iter_batch((f"p{i}" for i in range(100)), max_tokens=4)
        async with stream:
            async for _ in stream:
                # a slow consumer: results pile up in the buffer until the workers block
                await anyio.wait_all_tasks_blocked()
                break
        leftovers = stream.leftovers()
    assert leftovers, "finished results waiting in the buffer were dropped"
    assert all(r.ok and r.index == i for i, r in leftovers)


async def test_finish_reasons_are_the_same_for_every_provider() -> None:
    async with Synth([sim(output_tokens=200)]) as synth:
        cut = await synth.generate("Tell me everything.", max_tokens=5)
        whole = await synth.generate("Hi", max_tokens=2000)
    assert (cut.finish_reason, cut.raw_finish_reason) == ("length", "max_tokens")
    assert (whole.finish_reason, whole.raw_finish_reason) == ("stop", "end_turn")


async def test_an_input_with_a_wrongly_typed_field_fails_alone() -> None:
    """Before: {"temperature": "0.7"} raised TypeError out of the worker and killed
    the whole batch."""
    inputs: list[object] = [f"p{i}" for i in range(20)]
    inputs[3] = {"prompt": "x", "temperature": "0.7"}
    inputs[7] = {"prompt": "x", "top_p": [1]}
    async with Synth([sim()], max_concurrency=4) as synth:
        results = await synth.generate_batch(inputs, max_tokens=4)  # type: ignore[arg-type]
    assert [r.ok for r in results].count(False) == 2
    assert isinstance(results[3], Failure) and "temperature" in results[3].message
    assert isinstance(results[3].error, InvalidRequestError)
    assert isinstance(results[7], Failure) and "top_p" in results[7].message


async def test_a_stopped_job_keeps_every_finished_result_as_a_leftover() -> None:
    """Every key rejected mid-batch with a slow consumer: results that had finished
    but were still being handed over were dropped before."""
    from agentic_synth._types import ProviderResponse, Usage

    class FailsLater:
        name = "sim"
        calls = 0

        async def complete(self, model: str, request: object) -> ProviderResponse:
            FailsLater.calls += 1
            await anyio.lowlevel.checkpoint()
            if FailsLater.calls > 12:
                raise agentic_synth.AuthenticationError("invalid x-api-key", status=401)
            return ProviderResponse("ok", "end_turn", Usage(1, 1))

        async def aclose(self) -> None:
            return None

    import agentic_synth._synth as synth_module

    synth = Synth([sim()], max_concurrency=4, breaker=BreakerConfig(cooldown=0.01))
    original = synth_module.create_provider
    synth_module.create_provider = lambda spec, **kw: FailsLater()  # type: ignore[assignment]
    delivered: dict[int, object] = {}
    try:
        async with synth:
            stream = synth.iter_batch([f"p{i}" for i in range(100)], max_tokens=4)
            with pytest.raises(ConfigurationError):
                async for index, result in stream:
                    delivered[index] = result
                    await anyio.wait_all_tasks_blocked()  # slow consumer
            leftovers = dict(stream.leftovers())
    finally:
        synth_module.create_provider = original
    assert not set(delivered) & set(leftovers)  # nothing handed out twice
    answered = [r for r in [*delivered.values(), *leftovers.values()] if r.ok]  # type: ignore[attr-defined]
    assert len(answered) == 12  # every answered input was delivered or is a leftover
