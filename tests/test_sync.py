"""Synchronous twins: each opens a Synth, runs, closes it; works in and out of a loop."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest

import agentic_synth
from agentic_synth import ModelSpec, SynthError
from agentic_synth.datasets import builtin_schema

DAY = ("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z")


def sim(**options: Any) -> ModelSpec:
    return ModelSpec("sim", "s", options=options)


def test_generate_structured_sync_returns_a_dataset() -> None:
    data = agentic_synth.generate_structured(
        builtin_schema("users"), count=20, models=[sim()], seed=2
    )
    assert len(data) == 20 and data.stats.valid + data.stats.corrected == 20


def test_iter_structured_sync_yields_every_slot_in_order() -> None:
    results = list(
        agentic_synth.iter_structured(builtin_schema("products"), count=30, models=[sim()])
    )
    assert [r.slot for r in results] == list(range(30))
    assert all(r.record is not None for r in results)


def test_iter_structured_sync_stopped_early_closes_its_loop_thread() -> None:
    before = threading.active_count()
    taken = []
    stream = agentic_synth.iter_structured(
        builtin_schema("users"), count=5000, models=[sim()], max_concurrency=4
    )
    for result in stream:
        taken.append(result.slot)
        if len(taken) == 2:
            break
    stream.close()  # what garbage collection does for an abandoned generator
    assert taken == [0, 1]
    assert threading.active_count() == before  # the portal's thread has ended


def test_iter_structured_sync_raises_the_job_stopping_error() -> None:
    with pytest.raises(agentic_synth.ConfigurationError):
        for _ in agentic_synth.iter_structured(
            builtin_schema("users"), count=10, models=[sim(unauthorized=True)]
        ):
            pass


def test_iter_structured_sync_refuses_a_bad_schema_before_any_request() -> None:
    with pytest.raises(agentic_synth.InvalidRequestError):
        next(agentic_synth.iter_structured({"type": "objekt"}, count=5, models=[sim()]))


def test_local_series_and_events_sync_match_the_async_form() -> None:
    options: dict[str, Any] = {
        "start": "2026-01-01T00:00:00Z",
        "end": "2026-01-02T00:00:00Z",
        "interval": "1h",
        "metrics": ["cpu"],
        "seed": 5,
    }
    series = agentic_synth.generate_timeseries(**options)

    async def series_async() -> Any:
        async with agentic_synth.Synth() as synth:
            return await synth.generate_timeseries(**options)

    assert series.records == anyio.run(series_async).records and len(series) == 24

    events = agentic_synth.generate_events(
        250, event_types=["click", "view"], time_range=DAY, seed=3
    )
    assert len(events) == 250
    assert {e["event_type"] for e in events.records} <= {"click", "view"}


def test_sync_twins_work_inside_a_running_loop() -> None:
    async def inside() -> tuple[int, int]:
        data = agentic_synth.generate_events(10, time_range=DAY, seed=1)
        slots = [
            r.slot
            for r in agentic_synth.iter_structured(builtin_schema("users"), count=5, models=[sim()])
        ]
        return len(data), len(slots)

    assert anyio.run(inside) == (10, 5)


def test_iter_structured_async_form_outside_synth_is_a_clear_error() -> None:
    synth = agentic_synth.Synth([sim()])
    with pytest.raises(SynthError, match="async with Synth"):
        synth.iter_structured(builtin_schema("users"), count=1)
