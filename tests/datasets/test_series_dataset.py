"""Time series and event streams through Synth: local datasets to files, and the
model writing content on the computed skeleton (llm mode)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from agentic_synth import ModelSpec, Synth
from agentic_synth.datasets._events import check_events, generate_events_local
from agentic_synth.datasets._timeseries import check_timeseries, generate_timeseries_local

START = "2026-01-01T00:00:00Z"
DAY = (START, "2026-01-02T00:00:00Z")


def sim(**options: Any) -> ModelSpec:
    return ModelSpec("sim", "s", options=options)


async def test_local_series_is_the_computed_one_written_as_it_goes(tmp_path: Path) -> None:
    out = tmp_path / "series.csv"
    async with Synth([sim()]) as synth:
        data = await synth.generate_timeseries(
            72, start=START, interval="1h", metrics=["cpu", "memory"], trend="up", seed=4, sink=out
        )
        assert synth.metrics().requests == 0  # no model in local mode
    expected = generate_timeseries_local(72, START, None, "1h", ["cpu", "memory"], "up", seed=4)
    assert data.records == expected and data.stats.valid == 72
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["timestamp"] for r in rows] == [p["timestamp"] for p in expected]
    assert not check_timeseries(data.records, count=72, interval="1h")


async def test_local_events_are_exactly_count_and_read_back(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    async with Synth([sim()]) as synth:
        data = await synth.generate_events(
            500, distribution="poisson", time_range=DAY, users=20, seed=9, sink=out
        )
    assert data.records == generate_events_local(
        500, distribution="poisson", time_range=DAY, users=20, seed=9
    )
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 500
    assert not check_events(lines, count=500, users=20, time_range=DAY)


async def test_the_model_annotates_every_point_without_touching_the_skeleton() -> None:
    async with Synth([sim()], max_concurrency=4) as synth:
        data = await synth.generate_timeseries(
            30, start=START, interval="1h", metrics=["cpu"], mode="llm", per_call=10, seed=1
        )
        calls = synth.metrics().requests
    local = generate_timeseries_local(30, START, None, "1h", ["cpu"], seed=1)
    assert calls == 3  # ten points a request
    assert [{k: r[k] for k in ("timestamp", "cpu")} for r in data.records] == local
    assert all(isinstance(r["annotation"], str) and r["annotation"] for r in data.records)
    assert data.stats.valid == 30 and not data.failures


async def test_events_whose_content_cannot_be_written_keep_their_sampled_fields() -> None:
    # every answer is invalid: no content, but the stream keeps every event
    async with Synth([sim(invalid_output=1.0)]) as synth:
        data = await synth.generate_events(
            12,
            time_range=DAY,
            users=5,
            mode="llm",
            per_call=4,
            max_corrections=1,
            max_restarts=0,
            seed=3,
        )
    assert len(data.records) == 12 and len(data.failures) == 12
    assert all(r["description"] is None and r["user_id"] for r in data.records)
    assert not check_events(data.records, count=12, users=5, time_range=DAY)
