"""The three batch backends through the BatchBackend protocol: sim in-process, anthropic
(official SDK) and openai (our HTTP) against the mock server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agentic_synth._exceptions import (
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    OverloadedError,
    ResponseTooLargeError,
    ServerError,
)
from agentic_synth._spec import ResponseLimits
from agentic_synth._types import Request
from agentic_synth.providers._batch import BatchBackend, BatchItem, BatchItemResult
from agentic_synth.providers.anthropic import AnthropicProvider
from agentic_synth.providers.openai import OpenAIProvider
from agentic_synth.providers.sim import SimProvider
from agentic_synth.simulator import MockServer, SimConfig, Simulator


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def request(i: int, **extra: Any) -> Request:
    return Request(
        messages=[{"role": "user", "content": f"Write about river number {i}."}],
        max_tokens=200,
        **extra,
    )


def batch_items(n: int, model: str = "claude-sim") -> list[BatchItem]:
    return [BatchItem(f"req-{i}", model, request(i)) for i in range(n)]


async def collect(backend: BatchBackend, batch_id: str) -> dict[str, BatchItemResult]:
    return {r.custom_id: r async for r in backend.results(batch_id)}


# -- sim ---------------------------------------------------------------------------


def sim_backend(clock: Clock, **options: Any) -> BatchBackend:
    provider = SimProvider(SimConfig.from_mapping({"seed": 5, **options}), clock=clock)
    return provider.batch_backend()


async def test_sim_backend_is_one_per_provider_and_a_protocol_instance() -> None:
    provider = SimProvider(SimConfig())
    backend = provider.batch_backend()
    assert isinstance(backend, BatchBackend)
    assert provider.batch_backend() is backend
    assert backend.provider == "sim"
    assert (backend.limits.max_requests, backend.limits.max_bytes) == (100_000, 256 << 20)


async def test_sim_submit_poll_results() -> None:
    clock = Clock()
    backend = sim_backend(clock, batch_processing_time=4.0)
    status = await backend.submit(batch_items(4), metadata={"job": "j1"})
    assert status.id.startswith("simbatch_")
    assert (status.state, status.raw_status, status.counts.processing) == (
        "running",
        "in_progress",
        4,
    )
    clock.now += 2.0
    status = await backend.retrieve(status.id)
    assert (status.state, status.counts.processing, status.counts.succeeded) == ("running", 2, 2)
    with pytest.raises(BadRequestError):
        await collect(backend, status.id)
    clock.now += 2.0
    status = await backend.retrieve(status.id)
    assert status.state == "ended" and status.counts.succeeded == 4
    assert status.ended_at is not None and status.created_at is not None
    assert status.ended_at - status.created_at == pytest.approx(4.0)
    results = await collect(backend, status.id)
    online = Simulator(SimConfig(seed=5))
    for i in range(4):
        result = results[f"req-{i}"]
        expected = online.decide(request(i))
        assert result.outcome == "succeeded" and result.response is not None
        assert result.response.text == expected.text
        assert result.response.finish_reason == "end_turn"
        assert result.response.usage.output_tokens == expected.output_tokens
        assert result.response.usage.input_tokens == expected.input_tokens


async def test_sim_errors_map_to_our_classes() -> None:
    backend = sim_backend(Clock(), batch_error_rate=1.0)
    status = await backend.submit(batch_items(30))
    results = await collect(backend, status.id)
    classes = {type(r.error) for r in results.values()}
    assert all(r.outcome == "errored" and r.response is None for r in results.values())
    assert classes <= {OverloadedError, ServerError, BadRequestError} and len(classes) >= 2
    assert all(r.error is not None and r.error.model == "claude-sim" for r in results.values())


async def test_sim_cancel_keeps_finished_results() -> None:
    clock = Clock()
    backend = sim_backend(clock, batch_processing_time=10.0)
    status = await backend.submit(batch_items(10))
    clock.now += 4.0
    status = await backend.cancel(status.id)
    assert status.state == "canceling"
    status = await backend.retrieve(status.id)  # batch_cancel_time 0: ended at once
    assert status.state == "ended"
    assert (status.counts.succeeded, status.counts.canceled) == (4, 6)
    outcomes = [r.outcome for r in (await collect(backend, status.id)).values()]
    assert outcomes.count("succeeded") == 4 and outcomes.count("canceled") == 6


async def test_sim_expiry() -> None:
    clock = Clock()
    backend = sim_backend(clock, batch_processing_time=10.0, batch_expire_after=5.0)
    status = await backend.submit(batch_items(4))
    clock.now += 5.0
    status = await backend.retrieve(status.id)
    assert (status.state, status.counts.succeeded, status.counts.expired) == ("ended", 2, 2)
    outcomes = sorted(r.outcome for r in (await collect(backend, status.id)).values())
    assert outcomes == ["expired", "expired", "succeeded", "succeeded"]


async def test_sim_refusals() -> None:
    backend = sim_backend(Clock())
    with pytest.raises(NotFoundError):
        await backend.retrieve("simbatch_unknown")
    with pytest.raises(BadRequestError, match="Duplicate"):
        await backend.submit([BatchItem("a", "m", request(0)), BatchItem("a", "m", request(1))])
    with pytest.raises(BadRequestError, match="pattern"):
        await backend.submit([BatchItem("no spaces", "m", request(0))])


def test_sim_encoded_size_grows_with_the_request() -> None:
    backend = SimProvider(SimConfig()).batch_backend()
    small = backend.encoded_size(BatchItem("a", "m", request(0)))
    big = backend.encoded_size(BatchItem("a", "m", request(0, system="s" * 1000)))
    assert 50 < small < big and big - small >= 1000


# -- anthropic (official SDK against the mock server) ------------------------------

KEY = "sk-ant-batch-test-key-0123456789"


@pytest.fixture
def clock() -> Clock:
    return Clock()


def server_config(**options: Any) -> SimConfig:
    return SimConfig.from_mapping({"seed": 5, "batch_processing_time": 10.0, **options})


@pytest.fixture
async def anthropic_backend(clock: Clock) -> AsyncIterator[tuple[BatchBackend, MockServer]]:
    async with MockServer(server_config(batch_error_rate=0.3), api_key=KEY, clock=clock) as srv:
        provider = AnthropicProvider(api_key=KEY, base_url=srv.url, timeout=10, max_connections=2)
        try:
            yield provider.batch_backend(), srv
        finally:
            await provider.aclose()


async def test_anthropic_backend_end_to_end(
    anthropic_backend: tuple[BatchBackend, MockServer], clock: Clock
) -> None:
    backend, server = anthropic_backend
    assert isinstance(backend, BatchBackend) and backend.provider == "anthropic"
    items = [BatchItem(f"a-{i}", "claude-sim", request(i, temperature=0.5)) for i in range(40)]
    status = await backend.submit(items)
    assert status.id.startswith("msgbatch_") and status.state == "running"
    assert status.counts.processing == 40 and server.stats.batches_created == 1
    with pytest.raises(BadRequestError, match="not ended"):
        await collect(backend, status.id)
    clock.now += 10.0
    status = await backend.retrieve(status.id)
    assert status.state == "ended" and status.raw_status == "ended"
    assert status.counts.succeeded + status.counts.errored == 40
    assert 0 < status.counts.errored < 40
    results = await collect(backend, status.id)
    assert len(results) == 40
    online = Simulator(SimConfig(seed=5))
    for i in range(40):
        result = results[f"a-{i}"]
        expected = online.decide(request(i, temperature=0.5))
        if result.outcome == "succeeded":
            assert result.response is not None and result.error is None
            assert result.response.text == expected.text
            assert result.response.usage.output_tokens == expected.output_tokens
            assert result.response.finish_reason in ("end_turn", "max_tokens")
        else:
            assert result.outcome == "errored" and result.response is None
            assert isinstance(result.error, OverloadedError | ServerError | BadRequestError)
            assert KEY not in repr(result.error) and KEY not in str(result.error)
    assert server.stats.batches_created == 1


async def test_anthropic_backend_cancel_and_expiry(clock: Clock) -> None:
    config = server_config(batch_expire_after=5.0)
    async with MockServer(config, api_key=KEY, clock=clock) as srv:
        provider = AnthropicProvider(api_key=KEY, base_url=srv.url, timeout=10, max_connections=2)
        backend = provider.batch_backend()
        try:
            canceled = await backend.submit(batch_items(10))
            clock.now += 3.0
            status = await backend.cancel(canceled.id)
            assert status.state == "canceling"
            status = await backend.retrieve(canceled.id)
            assert (status.state, status.counts.succeeded, status.counts.canceled) == (
                "ended",
                3,
                7,
            )
            outcomes = [r.outcome for r in (await collect(backend, canceled.id)).values()]
            assert outcomes.count("succeeded") == 3 and outcomes.count("canceled") == 7
            expiring = await backend.submit(batch_items(4))
            clock.now += 5.0
            status = await backend.retrieve(expiring.id)
            assert (status.state, status.counts.expired) == ("ended", 2)
            outcomes = [r.outcome for r in (await collect(backend, expiring.id)).values()]
            assert sorted(outcomes) == ["expired", "expired", "succeeded", "succeeded"]
        finally:
            await provider.aclose()


async def test_anthropic_backend_refusals_carry_no_key(
    anthropic_backend: tuple[BatchBackend, MockServer],
) -> None:
    backend, _ = anthropic_backend
    with pytest.raises(NotFoundError) as missing:
        await backend.retrieve("msgbatch_nope")
    with pytest.raises(BadRequestError, match="Duplicate") as duplicate:
        await backend.submit([BatchItem("x", "m", request(0)), BatchItem("x", "m", request(1))])
    for error in (missing.value, duplicate.value):
        assert KEY not in str(error) and KEY not in repr(error)
    assert KEY not in repr(backend)


async def test_anthropic_backend_wrong_key_is_an_authentication_error(clock: Clock) -> None:
    async with MockServer(server_config(), api_key=KEY, clock=clock) as srv:
        wrong = "sk-ant-wrong-key-000000000000"
        provider = AnthropicProvider(api_key=wrong, base_url=srv.url, timeout=5, max_connections=1)
        try:
            with pytest.raises(AuthenticationError) as info:
                await provider.batch_backend().submit(batch_items(1))
            assert wrong not in str(info.value)
        finally:
            await provider.aclose()


def test_anthropic_encoded_size_is_the_create_entry() -> None:
    provider = AnthropicProvider(api_key=KEY, base_url="http://h:1", timeout=1, max_connections=1)
    backend = provider.batch_backend()
    item = BatchItem("c1", "claude-sim", request(0, temperature=0.2, stop=("END",)))
    params = backend.params(item)  # type: ignore[attr-defined]
    assert params["temperature"] == 0.2 and params["stop_sequences"] == ["END"]
    assert "timeout" not in params and "extra_body" not in params
    entry = json.dumps({"custom_id": "c1", "params": params}, separators=(",", ":"))
    assert backend.encoded_size(item) == len(entry.encode()) + 1
    assert backend.limits.max_requests == 100_000 and backend.limits.max_bytes == 256 << 20


async def test_anthropic_results_lines_are_bounded(clock: Clock) -> None:
    # room for the batch objects (~600 bytes), not for a line holding a ~1 KB answer
    limits = ResponseLimits(max_body_bytes=800)
    async with MockServer(
        server_config(batch_processing_time=0.0, output_tokens=180), api_key=KEY, clock=clock
    ) as srv:
        provider = AnthropicProvider(
            api_key=KEY, base_url=srv.url, timeout=5, max_connections=1, limits=limits
        )
        try:
            backend = provider.batch_backend()
            status = await backend.submit(batch_items(3))
            with pytest.raises(ResponseTooLargeError):
                await collect(backend, status.id)
        finally:
            await provider.aclose()


async def test_batch_transport_refuses_other_origins() -> None:
    import httpx2

    from agentic_synth.providers._aiohttp import AiohttpOrigin
    from agentic_synth.providers._batch_http import BatchSDKTransport
    from agentic_synth.providers._net import TransportError
    from agentic_synth.providers._sdk_transport import SDKTransport

    origin = AiohttpOrigin(max_connections=1, ssl_context=None, limits=ResponseLimits(), proxy=None)
    transport = BatchSDKTransport(
        SDKTransport(origin), origin=httpx2.URL("http://127.0.0.1:9/"), max_line=100
    )
    elsewhere = httpx2.Request("GET", "http://evil.example:9/v1/messages/batches/x/results")
    with pytest.raises(TransportError, match="another origin"):
        await transport.handle_async_request(elsewhere)
    await transport.aclose()


def test_line_guard_bounds_every_line_across_chunks() -> None:
    from agentic_synth.providers._batch_http import LineGuard
    from agentic_synth.providers._net import TransportError

    guard = LineGuard(5)
    guard.check(b"abc\n12345\nab")
    guard.check(b"c")  # "abc" so far
    with pytest.raises(TransportError):
        guard.check(b"def\n")  # "abcdef": 6 bytes
    with pytest.raises(TransportError):
        LineGuard(5).check(b"ok\n123456\nok")


# -- openai (our HTTP against the mock server) -------------------------------------

OPENAI_KEY = "sk-openai-batch-test-key-0123456789"


def openai_provider(server: MockServer, **kwargs: Any) -> OpenAIProvider:
    return OpenAIProvider(
        base_url=server.openai_url, api_key=OPENAI_KEY, timeout=10, max_connections=2, **kwargs
    )


async def test_openai_backend_end_to_end(clock: Clock) -> None:
    config = server_config(batch_error_rate=0.3)
    async with MockServer(config, api_key=OPENAI_KEY, clock=clock) as srv:
        provider = openai_provider(srv)
        backend = provider.batch_backend()
        try:
            assert isinstance(backend, BatchBackend) and backend.provider == "openai"
            items = batch_items(30, model="gpt-sim")
            status = await backend.submit(items, metadata={"job": "j"})
            assert status.id.startswith("batch_") and status.state == "running"
            assert status.raw_status == "validating" and srv.stats.batches_created == 1
            clock.now += 5.0
            status = await backend.retrieve(status.id)
            assert status.state == "running" and status.raw_status == "in_progress"
            assert 0 < status.counts.processing < 30  # OpenAI's counts move while it runs
            with pytest.raises(BadRequestError, match="not ended"):
                await collect(backend, status.id)
            clock.now += 5.0
            status = await backend.retrieve(status.id)
            assert (status.state, status.raw_status) == ("ended", "completed")
            assert status.counts.succeeded + status.counts.errored == 30
            assert 0 < status.counts.errored < 30
            results = await collect(backend, status.id)
            assert len(results) == 30
            online = Simulator(SimConfig(seed=5))
            for i in range(30):
                result = results[f"req-{i}"]
                expected = online.decide(request(i))
                if result.outcome == "succeeded":
                    assert result.response is not None
                    assert result.response.text == expected.text
                    assert result.response.finish_reason in ("stop", "length")
                    assert result.response.usage.output_tokens == expected.output_tokens
                    assert result.response.usage.input_tokens == expected.input_tokens
                else:
                    assert result.outcome == "errored"
                    assert isinstance(result.error, OverloadedError | ServerError | BadRequestError)
                    assert OPENAI_KEY not in str(result.error)
            assert srv.stats.batches_created == 1
        finally:
            await provider.aclose()


async def test_openai_backend_cancel_and_expiry(clock: Clock) -> None:
    async with MockServer(server_config(batch_expire_after=5.0), clock=clock) as srv:
        provider = openai_provider(srv)
        backend = provider.batch_backend()
        try:
            first = await backend.submit(batch_items(10, model="gpt-sim"))
            clock.now += 3.0
            assert (await backend.cancel(first.id)).state == "canceling"
            status = await backend.retrieve(first.id)
            assert (status.state, status.raw_status) == ("ended", "cancelled")
            assert (status.counts.succeeded, status.counts.canceled) == (3, 7)
            outcomes = [r.outcome for r in (await collect(backend, first.id)).values()]
            assert outcomes.count("succeeded") == 3 and outcomes.count("canceled") == 7
            second = await backend.submit(batch_items(4, model="gpt-sim"))
            clock.now += 5.0
            status = await backend.retrieve(second.id)
            assert (status.raw_status, status.counts.expired) == ("expired", 2)
            outcomes = sorted(r.outcome for r in (await collect(backend, second.id)).values())
            assert outcomes == ["expired", "expired", "succeeded", "succeeded"]
        finally:
            await provider.aclose()


async def test_openai_backend_failed_batch_and_refusals(clock: Clock) -> None:
    async with MockServer(server_config(), api_key=OPENAI_KEY, clock=clock) as srv:
        provider = openai_provider(srv)
        backend = provider.batch_backend()
        try:
            mixed = [BatchItem("a", "gpt-sim", request(0)), BatchItem("b", "gpt-other", request(1))]
            status = await backend.submit(mixed)
            assert status.state == "failed" and status.error is not None
            assert "mismatched_model" in status.error
            with pytest.raises(BadRequestError, match="failed"):
                await collect(backend, status.id)
            with pytest.raises(NotFoundError) as missing:
                await backend.retrieve("batch_nope")
            assert OPENAI_KEY not in str(missing.value) and OPENAI_KEY not in repr(backend)
        finally:
            await provider.aclose()
        wrong = "sk-openai-wrong-key-00000000000"
        bad = OpenAIProvider(base_url=srv.openai_url, api_key=wrong, timeout=5, max_connections=1)
        try:
            with pytest.raises(AuthenticationError) as info:
                await bad.batch_backend().submit(batch_items(1, model="gpt-sim"))
            assert wrong not in str(info.value)
        finally:
            await bad.aclose()


def test_openai_encoded_size_is_the_line() -> None:
    provider = OpenAIProvider(
        base_url="http://h:1/v1", api_key=OPENAI_KEY, timeout=1, max_connections=1
    )
    backend = provider.batch_backend()
    item = BatchItem("c1", "gpt-sim", request(0, temperature=0.3))
    line = backend.line(item)  # type: ignore[attr-defined]
    parsed = json.loads(line)
    assert line.endswith(b"}\n") and backend.encoded_size(item) == len(line)
    assert parsed["method"] == "POST" and parsed["url"] == "/v1/chat/completions"
    assert parsed["body"] == json.loads(provider._body("gpt-sim", item.request, stream=False))
    assert backend.limits.max_requests == 50_000 and backend.limits.max_bytes == 200 << 20


async def test_openai_output_lines_are_bounded(clock: Clock) -> None:
    config = server_config(batch_processing_time=0.0, output_tokens=180)
    async with MockServer(config, clock=clock) as srv:
        provider = openai_provider(srv, limits=ResponseLimits(max_body_bytes=900))
        try:
            backend = provider.batch_backend()
            status = await backend.submit(batch_items(3, model="gpt-sim"))
            with pytest.raises(ResponseTooLargeError):
                await collect(backend, status.id)
        finally:
            await provider.aclose()


async def test_openai_unrun_items_missing_from_both_files_come_from_the_input_file(
    clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentic_synth.simulator import _batch_wire

    listed = _batch_wire._openai_line

    def without_unrun(result: Any) -> bytes:
        return b"" if result.state in ("canceled", "expired") else listed(result)

    monkeypatch.setattr(_batch_wire, "_openai_line", without_unrun)
    async with MockServer(server_config(), clock=clock) as srv:
        provider = openai_provider(srv)
        backend = provider.batch_backend()
        try:
            status = await backend.submit(batch_items(5, model="gpt-sim"))
            clock.now += 4.0
            await backend.cancel(status.id)
            results = await collect(backend, status.id)
            assert sorted(results) == [f"req-{i}" for i in range(5)]
            assert [results[f"req-{i}"].outcome for i in range(5)] == ["succeeded"] * 2 + [
                "canceled"
            ] * 3
        finally:
            await provider.aclose()
