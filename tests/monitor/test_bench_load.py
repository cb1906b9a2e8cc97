"""Load generation and the metric definitions of ``synth bench``, on known timestamps.

No assertion here depends on the wall clock: schedules run on a fake clock whose
sleep advances it, and streams are fakes whose chunks come at known times.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from itertools import islice
from typing import Any, cast

import anyio
import anyio.lowlevel
import pytest

from agentic_synth import Synth
from agentic_synth._exceptions import APIConnectionError, ConfigurationError
from agentic_synth._types import Completion, StreamCompleted, StreamEvent, TextDelta, Usage
from agentic_synth.monitor._load import (
    Load,
    Progress,
    Recorder,
    arrival_offsets,
    distribution,
    inter_chunk_latencies,
    paced,
    percentile,
    run_load,
    tpot,
)


class FakeClock:
    """A clock that moves only when slept on (or told to)."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds
        await anyio.lowlevel.checkpoint()


def prompts() -> Iterator[str]:
    i = 0
    while True:
        yield f"Write one sentence about topic {i}."
        i += 1


# -- definitions ---------------------------------------------------------------------


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 11)]
    assert percentile(values, 0.5) == 5.0
    assert percentile(values, 0.9) == 9.0  # 0.9 * 10 is 9.000000000000002: still rank 9
    assert percentile(values, 0.95) == 10.0
    assert percentile(values, 0.999) == 10.0
    assert percentile([], 0.5) is None
    assert percentile([3.0], 0.01) == 3.0


def test_distribution_names_every_percentile() -> None:
    figures = distribution([0.3, 0.1, 0.2], "latency")
    assert figures == {
        "latency_p50": 0.2,
        "latency_p90": 0.3,
        "latency_p95": 0.3,
        "latency_p99": 0.3,
        "latency_p999": 0.3,
        "latency_mean": pytest.approx(0.2),
        "latency_max": 0.3,
    }
    assert distribution([], "ttft")["ttft_p50"] is None


def test_tpot_and_itl_formulas() -> None:
    # TPOT = (E2E - TTFT) / (output_tokens - 1)
    assert tpot(1.2, 0.5, 8) == pytest.approx(0.1)
    assert tpot(1.0, 0.5, 1) is None  # one token: the first token is TTFT's
    assert tpot(1.0, 0.5, 0) is None
    assert inter_chunk_latencies([0.5, 0.6, 0.8, 1.1]) == pytest.approx([0.1, 0.2, 0.3])
    assert inter_chunk_latencies([0.5]) == []


# -- the recorder --------------------------------------------------------------------


def test_failures_count_in_the_error_rate_and_never_in_latencies() -> None:
    clock = FakeClock(0.0)
    rec = Recorder(clock)
    for _ in range(4):
        rec.started()
    rec.succeeded(0, 0.2, 10)
    rec.succeeded(1, 0.4, 20)
    rec.failed(2, 9.0, "RateLimitedError")  # a slow failure must not show as a latency
    rec.failed(3, None, "ServerError")
    rec.wall, rec.cpu = 2.0, 0.004
    figures = rec.figures()
    assert figures["succeeded"] == 2 and figures["failed"] == 2
    assert figures["error_rate"] == 0.5
    assert figures["throughput"] == 1.0  # succeeded / wall
    assert figures["output_tokens_per_s"] == 15.0
    assert figures["cpu_us_per_request"] == pytest.approx(1000.0)
    assert figures["latency_max"] == pytest.approx(0.4)
    assert figures["errors_by_class"] == {"RateLimitedError": 1, "ServerError": 1}


def test_a_fixed_duration_counts_what_ended_within_it() -> None:
    rec = Recorder(FakeClock(0.0))
    for end in (0.5, 0.9, 1.4):
        rec.succeeded(rec.started(), end, 1)
    rec.wall, rec.window = 1.5, 1.0
    figures = rec.figures()
    assert figures["throughput"] == 2.0  # two ended within the second
    assert figures["succeeded"] == 3 and figures["latency_max"] == pytest.approx(1.4)


def test_timeline_counts_throughput_and_requests_in_flight() -> None:
    clock = FakeClock(0.0)
    rec = Recorder(clock)
    for _ in range(3):
        rec.started()  # all three start at 0
    rec.succeeded(0, 0.25, 1)
    rec.succeeded(1, 0.75, 1)
    rec.failed(2, 0.75, "ServerError")
    rec.wall = 1.0
    rows = rec.timeline(points=2)  # bins [0, 0.5) and [0.5, 1)
    assert [r["t"] for r in rows] == [0.0, 0.5]
    assert [r["throughput"] for r in rows] == [2.0, 2.0]  # successes per second
    assert [r["in_flight"] for r in rows] == [2, 0]  # at 0.25 and 0.75


def test_samples_are_bounded_and_seeded() -> None:
    rec = Recorder(FakeClock(0.0))
    for i in range(100):
        rec.succeeded(rec.started(), 0.01 * (i + 1), 5)
    rec.failed(rec.started(), None, "ServerError")
    rows = rec.samples(10, seed=7)
    assert len(rows) == 10
    assert rows == rec.samples(10, seed=7)
    assert [r["index"] for r in rows] == sorted(r["index"] for r in rows)
    everything = rec.samples(1000)
    assert len(everything) == 101
    assert everything[-1] == {
        "index": 100,
        "start": 0.0,
        "end": None,
        "ok": False,
        "latency": None,
        "output_tokens": 0,
        "error": "ServerError",
    }


# -- schedules -----------------------------------------------------------------------


def test_constant_arrivals() -> None:
    assert list(islice(arrival_offsets(4.0), 5)) == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_poisson_arrivals_are_seeded_with_the_right_rate() -> None:
    first = list(islice(arrival_offsets(50.0, "poisson", seed=1), 20_001))
    assert first == list(islice(arrival_offsets(50.0, "poisson", seed=1), 20_001))
    assert first != list(islice(arrival_offsets(50.0, "poisson", seed=2), 20_001))
    gaps = inter_chunk_latencies(first)
    mean = sum(gaps) / len(gaps)
    assert mean == pytest.approx(1 / 50, rel=0.03)
    sd = (sum((g - mean) ** 2 for g in gaps) / len(gaps)) ** 0.5
    assert sd / mean == pytest.approx(1.0, rel=0.05)  # exponential gaps: CV 1
    with pytest.raises(ValueError):
        next(arrival_offsets(0.0))
    with pytest.raises(ValueError):
        next(arrival_offsets(1.0, "bursty"))  # type: ignore[arg-type]


async def test_paced_starts_on_schedule_and_records_late_pulls_as_lag() -> None:
    clock = FakeClock()
    rec = Recorder(clock)
    got = []
    async for item in paced(range(5), arrival_offsets(10.0), rec, sleep=clock.sleep):
        got.append(item)
        clock.t += 0.25  # the consumer needs 0.25 s per item, the schedule allows 0.1
    assert got == [0, 1, 2, 3, 4]
    assert list(rec.lags) == pytest.approx([0.0, 0.15, 0.3, 0.45, 0.6])
    rec.wall = 1.25
    figures = rec.figures()
    assert figures["achieved_rate"] == pytest.approx(4.0)  # 4 gaps over 1 s, not 10/s
    assert figures["lag_max"] == pytest.approx(0.6)


async def test_paced_stops_at_the_duration() -> None:
    clock = FakeClock()
    rec = Recorder(clock)
    feed = paced(range(100), arrival_offsets(10.0), rec, sleep=clock.sleep, until=0.25)
    got = [i async for i in feed]
    assert got == [0, 1, 2]  # offsets 0, 0.1, 0.2; 0.3 is past 0.25
    assert list(rec.lags) == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("arrival", ["constant", "poisson"])
async def test_open_loop_on_the_simulator_starts_exactly_on_schedule(arrival: str) -> None:
    clock = FakeClock()
    rec = Recorder(clock)
    load = Load(8, requests=40, rate=200.0, arrival=arrival, seed=3)  # type: ignore[arg-type]
    async with Synth(["sim:sim-1"], max_concurrency=8, max_tokens=16) as synth:
        await run_load(synth, prompts(), load, rec, sleep=clock.sleep)
    schedule = list(islice(arrival_offsets(200.0, arrival, seed=3), 40))  # type: ignore[arg-type]
    assert list(rec.starts) == pytest.approx(schedule)
    assert max(rec.lags) == pytest.approx(0.0)
    figures = rec.figures()
    assert figures["succeeded"] == 40 and figures["error_rate"] == 0
    assert figures["achieved_rate"] == pytest.approx(39 / schedule[-1])
    if arrival == "constant":
        assert figures["achieved_rate"] == pytest.approx(200.0)


async def test_closed_loop_on_the_simulator_records_every_request() -> None:
    rec = Recorder()
    load = Load(concurrency=4, requests=30, api="iter_batch")
    async with Synth(["sim:sim-1"], max_concurrency=4, max_tokens=16) as synth:
        await run_load(synth, prompts(), load, rec)
    figures = rec.figures()
    assert figures["requests"] == figures["succeeded"] == 30
    assert sorted(rec.index) == list(range(30))
    assert figures["latency_p50"] is not None and figures["latency_p50"] > 0
    assert rec.wall > 0 and "ttft_p50" not in figures  # no stream, no TTFT


async def test_progress_hook_sees_the_engine_metrics() -> None:
    seen: list[Progress] = []
    load = Load(concurrency=2, requests=200, api="iter_batch")
    async with Synth(["sim:sim-1"], max_concurrency=2, max_tokens=16) as synth:
        await run_load(
            synth, prompts(), load, Recorder(), on_progress=seen.append, progress_interval=0
        )
    assert seen, "no progress reported"
    last = seen[-1]
    assert last.finished <= last.started <= 200
    assert last.metrics.succeeded == last.finished


# -- streams -----------------------------------------------------------------------


class FakeStream:
    """Text chunks at known times on ``clock``, then the completion."""

    def __init__(
        self, clock: FakeClock, steps: list[tuple[float, str]], tokens: int, fail: bool
    ) -> None:
        self.clock = clock
        self.steps = steps
        self.tokens = tokens
        self.fail = fail

    async def __aenter__(self) -> FakeStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[StreamEvent]:
        for wait, text in self.steps:
            self.clock.t += wait
            yield TextDelta(text)
        if self.fail:
            raise APIConnectionError("connection reset (fake)")
        self.clock.t += 0.1
        yield StreamCompleted(
            Completion(
                text="",
                model="fake:model",
                usage=Usage(output_tokens=self.tokens),
                latency=0.0,
                finish_reason="stop",
            )
        )


class FakeSynth:
    def __init__(
        self, clock: FakeClock, *, fail_on: set[str] | None = None, error: Exception | None = None
    ) -> None:
        self.clock = clock
        self.fail_on = fail_on or set()
        self.error = error

    def generate_stream(self, prompt: str) -> FakeStream:
        if self.error is not None:
            raise self.error
        # TTFT 0.5; chunk gaps 0.1, 0.2, 0.3; an empty chunk is no chunk
        steps = [(0.5, "one "), (0.1, "two "), (0.05, ""), (0.15, "three "), (0.3, "four.")]
        return FakeStream(self.clock, steps, 7, prompt in self.fail_on)


async def test_ttft_tpot_and_itl_from_a_stream_with_known_timestamps() -> None:
    clock = FakeClock()
    rec = Recorder(clock)
    synth = FakeSynth(clock, fail_on={"Write one sentence about topic 2."})
    load = Load(concurrency=1, requests=3, api="generate_stream")
    await run_load(cast(Any, synth), prompts(), load, rec)
    figures = rec.figures(streams=True)
    assert figures["succeeded"] == 2 and figures["failed"] == 1
    assert figures["errors_by_class"] == {"APIConnectionError": 1}
    # E2E = 0.5 + 0.1 + 0.05 + 0.15 + 0.3 + 0.1 = 1.2
    assert figures["latency_p50"] == pytest.approx(1.2)
    assert figures["latency_max"] == pytest.approx(1.2)  # the failed stream is not in it
    assert figures["ttft_p50"] == pytest.approx(0.5)
    assert figures["tpot_p50"] == pytest.approx((1.2 - 0.5) / (7 - 1))
    assert sorted(rec.itl) == pytest.approx([0.1, 0.1, 0.2, 0.2, 0.3, 0.3])
    assert figures["itl_p50"] == pytest.approx(0.2) and figures["itl_max"] == pytest.approx(0.3)
    assert rec.wall == pytest.approx(1.2 * 2 + 1.1)  # one at a time


async def test_a_stream_that_cannot_work_at_all_stops_the_run() -> None:
    clock = FakeClock()
    synth = FakeSynth(clock, error=ConfigurationError("every key was rejected"))
    load = Load(concurrency=2, requests=3, api="generate_stream")
    with pytest.raises(ConfigurationError):
        await run_load(cast(Any, synth), prompts(), load, Recorder(clock))
