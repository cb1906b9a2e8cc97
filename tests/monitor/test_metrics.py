from __future__ import annotations

import time

import anyio
import pytest

from agentic_synth import ConfigurationError, ModelSpec, RateLimitedError, Synth
from agentic_synth.monitor import Metrics


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_snapshot_counts_and_rates() -> None:
    clock = FakeClock()
    m = Metrics(clock)
    for _ in range(3):
        m.request_started()
    m.attempt_succeeded("sim:a", 0.1, 10, 20, cost=0.5)
    m.request_finished(0.1)
    m.attempt_failed("sim:a", RateLimitedError("slow down", status=429))
    m.request_finished(None, RateLimitedError("slow down", status=429))
    clock.now += 2.0
    s = m.snapshot()
    assert (s.requests, s.succeeded, s.failed, s.in_flight) == (3, 1, 1, 1)
    assert s.errors_by_class == {"RateLimitedError": 1}
    assert (s.input_tokens, s.output_tokens, s.cost_usd) == (10, 20, 0.5)
    assert s.throughput == 1.0
    assert s.models["sim:a"]["attempts"] == 2
    assert s.models["sim:a"]["errors"] == {"RateLimitedError": 1}
    assert s.to_dict()["latency_p50"] is not None


def test_probes_add_model_state() -> None:
    m = Metrics()
    m.model_probes.append(lambda: {"sim:b": {"breaker": "open"}})
    assert m.snapshot().models["sim:b"] == {"breaker": "open"}


def test_tpot_itl_and_goodput_follow_their_definitions() -> None:
    clock = FakeClock()
    m = Metrics(clock, slo={"latency": 1.0, "ttft": 0.2})
    # TPOT = (latency - TTFT) / (output tokens - 1)
    m.request_started()
    m.request_finished(1.0, ttft=0.1, output_tokens=10)
    assert m.tpot.percentile(0.5) == pytest.approx(0.1, rel=0.01)
    m.request_started()  # one output token: no TPOT
    m.request_finished(0.5, ttft=0.1, output_tokens=1)
    assert m.tpot.count == 1
    m.request_started()  # misses the TTFT objective
    m.request_finished(0.5, ttft=0.3, output_tokens=5)
    m.request_started()  # misses the latency objective
    m.request_finished(1.5, output_tokens=5)
    m.request_started()  # not streamed: judged on latency alone
    m.request_finished(0.4, output_tokens=5)
    m.request_started()  # failures are neither good nor in the latency figures
    m.request_finished(None, RateLimitedError("x", status=429))
    clock.now += 10.0
    s = m.snapshot()
    assert m.good == 3 and s.goodput == pytest.approx(3 / 10.0)
    assert s.slo_attainment == pytest.approx(3 / 5)
    assert m.latency.count == 5
    m.record_itl(0.02)
    assert m.snapshot().itl_p50 == pytest.approx(0.02, rel=0.01)


def test_bad_slo_names_the_fix() -> None:
    with pytest.raises(ConfigurationError, match="ttft"):
        Metrics(slo={"ttfb": 1.0})
    with pytest.raises(ConfigurationError, match="positive"):
        Metrics(slo={"latency": 0})


def test_time_weighted_concurrency_and_time_at_the_cap() -> None:
    clock = FakeClock()
    m = Metrics(clock, concurrency_cap=2)
    m.request_started()  # t=0..4: one in flight
    clock.now += 4.0
    m.request_started()  # t=4..10: two in flight (at the cap)
    clock.now += 6.0
    m.request_finished(1.0)
    m.request_cancelled()
    s = m.snapshot()
    assert s.in_flight_mean == pytest.approx((1 * 4 + 2 * 6) / 10)
    assert s.at_cap == pytest.approx(0.6)
    assert s.cancelled == 1 and s.succeeded == 1


def test_windows_count_only_recent_seconds() -> None:
    clock = FakeClock()
    m = Metrics(clock)
    for _ in range(50):  # 50 successes early in the run
        m.request_started()
        m.request_finished(0.2, output_tokens=10)
    clock.now += 30.0
    for _ in range(10):  # then 10 failures and 10 successes in the last second
        m.request_started()
        m.request_finished(None, RateLimitedError("x", status=429))
        m.request_started()
        m.request_finished(0.4, output_tokens=5)
    clock.now += 0.5  # read half-way through a second: 9 whole buckets and a half
    s = m.snapshot()
    recent, minute = s.windows["10s"], s.windows["60s"]
    assert recent["throughput"] == pytest.approx(20 / 9.5)
    assert recent["error_rate"] == pytest.approx(0.5)
    assert recent["latency_mean"] == pytest.approx(0.4)
    assert recent["output_tokens_per_s"] == pytest.approx(50 / 9.5)
    assert minute["throughput"] == pytest.approx(70 / 30.5)  # 30.5 s into the run
    assert minute["error_rate"] == pytest.approx(10 / 70)


def test_a_steady_rate_reads_true_at_any_moment_of_a_second() -> None:
    for offset in (0.001, 0.5, 0.999):
        clock = FakeClock()
        m = Metrics(clock)
        while clock.now < 130.0 + offset:  # 100 requests a second for 30 s and a bit
            m.request_started()
            m.request_finished(0.1)
            clock.now += 0.01
        assert m.snapshot().windows["10s"]["throughput"] == pytest.approx(100, rel=0.02)


def test_a_failing_listener_never_fails_the_request() -> None:
    m = Metrics()
    calls: list[int] = []

    def flaky(*args: object) -> None:
        calls.append(1)
        raise RuntimeError("exporter hiccup")

    m.listeners.append(flaky)
    for _ in range(3):
        m.request_started()
        m.request_finished(0.1)
    assert m.succeeded == 3 and len(calls) == 3


async def test_figures_count_from_when_the_synth_is_opened() -> None:
    clock = FakeClock()
    synth = Synth([ModelSpec("sim", "s")], max_concurrency=4, clock=clock)
    clock.now += 1000.0  # a long pause before `async with`
    async with synth:
        await synth.generate_batch(["a", "b", "c", "d"], max_tokens=5)
        clock.now += 2.0
        s = synth.metrics()
    assert s.elapsed == pytest.approx(2.0) and s.throughput == pytest.approx(2.0)
    async with synth:  # a second session starts from zero
        assert synth.metrics().requests == 0


def test_monitor_off_keeps_counters_only() -> None:
    clock = FakeClock()
    m = Metrics(clock, concurrency_cap=1, detailed=False)
    m.request_started()
    clock.now += 5
    m.request_finished(0.1)
    m.attempt_succeeded("sim:a", 0.1, 1, 1)
    s = m.snapshot()
    assert s.succeeded == 1 and s.windows == {} and s.in_flight_mean == 0.0
    assert s.waits["provider"] == 0.0


async def test_failed_and_cancelled_streams_leave_no_timing_figures() -> None:
    async with Synth([ModelSpec("sim", "s", options={"fault_stream_error": 1.0})]) as synth:
        for _ in range(3):
            with pytest.raises(Exception):  # noqa: B017 - the stream's own error, whatever it is
                async with synth.generate_stream("Tell me a story.", max_tokens=40) as stream:
                    async for _ in stream:
                        pass
        assert synth._metrics.ttft.count == 0 and synth._metrics.itl.count == 0
    async with Synth([ModelSpec("sim", "s")]) as synth:
        async with synth.generate_stream("Tell me a story.", max_tokens=40) as stream:
            async for _ in stream:
                break  # closed by the reader after the first chunk
        assert synth.metrics().cancelled == 1 and synth._metrics.ttft.count == 0


async def test_a_slow_stream_reader_is_not_provider_time() -> None:
    async with Synth([ModelSpec("sim", "s")]) as synth:
        async with synth.generate_stream("Tell me a story.", max_tokens=40) as stream:
            async for _ in stream:
                await anyio.sleep(0.01)  # the reader holds every chunk 10 ms
        s = synth.metrics()
    assert s.waits["provider"] < 0.01  # the simulator answers at once
    assert s.itl_p50 is not None and s.itl_p50 < 0.005


async def test_streams_record_ttft_itl_and_tpot() -> None:
    async with Synth([ModelSpec("sim", "s")]) as synth:
        async with synth.generate_stream("Tell me a story.", max_tokens=40) as stream:
            chunks = [e async for e in stream if e.type == "text" and e.text]
        s = synth.metrics()
    assert len(chunks) >= 2
    assert synth._metrics.ttft.count == 1
    assert synth._metrics.itl.count == len(chunks) - 1
    assert s.tpot_p50 is not None and s.tpot_p50 >= 0.0


async def test_the_loop_probe_sees_a_blocked_loop() -> None:
    async with Synth([ModelSpec("sim", "s")]) as synth:
        await anyio.sleep(0.3)  # let the probe take a first reading
        time.sleep(0.6)  # noqa: ASYNC251 - a synchronous call blocking the event loop
        await anyio.sleep(0.3)
        s = synth.metrics()
    # the probe wakes every 0.25 s: at least 0.6 - 0.25 s late once
    assert s.loop_lag_max is not None and s.loop_lag_max >= 0.3
    assert s.cpu_fraction is not None and s.rss_bytes and s.peak_rss_bytes


async def test_monitor_false_starts_no_probe() -> None:
    async with Synth([ModelSpec("sim", "s")], monitor=False) as synth:
        await anyio.sleep(0.3)
        assert synth.metrics().loop_lag_max is None
