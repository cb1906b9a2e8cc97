"""The three batch backends through the BatchBackend protocol: sim in-process, anthropic
(official SDK) and openai (our HTTP) against the mock server."""

from __future__ import annotations

from typing import Any

import pytest

from agentic_synth._exceptions import (
    BadRequestError,
    NotFoundError,
    OverloadedError,
    ServerError,
)
from agentic_synth._types import Request
from agentic_synth.providers._batch import BatchBackend, BatchItem, BatchItemResult
from agentic_synth.providers.sim import SimProvider
from agentic_synth.simulator import SimConfig, Simulator


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
