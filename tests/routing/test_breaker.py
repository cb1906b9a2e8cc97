from __future__ import annotations

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentic_synth._exceptions import ConfigurationError
from agentic_synth.routing._breaker import BreakerState, CircuitBreaker, Ticket


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(clock: FakeClock, **kwargs: object) -> CircuitBreaker:
    return CircuitBreaker("m", clock=clock, **kwargs)  # type: ignore[arg-type]


def fail_n(breaker: CircuitBreaker, n: int, retry_after: float | None = None) -> None:
    for _ in range(n):
        ticket = breaker.try_acquire()
        assert ticket is not None
        breaker.record_failure(ticket, retry_after)


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"failure_rate": 0.0}, "failure_rate"),
        ({"failure_rate": 1.5}, "failure_rate"),
        ({"window": 0}, "window"),
        ({"window": float("inf")}, "window"),
        ({"min_requests": 0}, "min_requests"),
        ({"cooldown": -1}, "cooldown"),
        ({"half_open_probes": 0}, "half_open_probes"),
    ],
)
def test_rejects_bad_configuration(kwargs: dict[str, object], word: str) -> None:
    with pytest.raises(ConfigurationError, match=word):
        CircuitBreaker("m", **kwargs)  # type: ignore[arg-type]


def test_consecutive_failures_open_and_success_resets_the_run() -> None:
    clock = FakeClock()
    breaker = make(clock, failure_threshold=3)
    fail_n(breaker, 2)
    ticket = breaker.try_acquire()
    assert ticket is not None and not ticket.probe
    breaker.record_success(ticket)
    fail_n(breaker, 2)
    assert breaker.state is BreakerState.CLOSED
    fail_n(breaker, 1)
    assert breaker.state is BreakerState.OPEN
    assert breaker.try_acquire() is None
    assert breaker.reopens_at() == pytest.approx(1060.0)


def test_failure_rate_opens_only_with_enough_requests_and_strictly_above_rate() -> None:
    clock = FakeClock()
    breaker = make(clock, failure_threshold=100, min_requests=10, failure_rate=0.5)
    for i in range(10):  # alternate: exactly 50 % failures, never consecutive
        ticket = breaker.try_acquire()
        assert ticket is not None
        if i % 2:
            breaker.record_failure(ticket)
        else:
            breaker.record_success(ticket)
    assert breaker.state is BreakerState.CLOSED
    fail_n(breaker, 1)  # 6/11 > 0.5
    assert breaker.state is BreakerState.OPEN


def test_failure_rate_needs_min_requests() -> None:
    clock = FakeClock()
    breaker = make(clock, failure_threshold=100, min_requests=10)
    fail_n(breaker, 9)
    assert breaker.state is BreakerState.CLOSED
    fail_n(breaker, 1)
    assert breaker.state is BreakerState.OPEN


def test_old_outcomes_leave_the_sliding_window() -> None:
    clock = FakeClock()
    breaker = make(clock, failure_threshold=100, min_requests=10, window=60.0)
    fail_n(breaker, 9)
    clock.now += 61.0
    fail_n(breaker, 9)
    snap = breaker.snapshot()
    assert snap["state"] == "closed"
    assert snap["window_failures"] == 9
    clock.now += 30.0
    fail_n(breaker, 1)  # 10 failures within 60 s
    assert breaker.state is BreakerState.OPEN


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 30), st.booleans()), max_size=200))
def test_window_counts_match_a_brute_force_count(events: list[tuple[float, bool]]) -> None:
    clock = FakeClock(0.0)
    breaker = make(clock, failure_threshold=10**6, min_requests=10**6, window=10.0)
    seen: list[tuple[int, bool]] = []
    for step, ok in events:
        clock.now += step
        ticket = breaker.try_acquire()
        assert ticket is not None
        (breaker.record_success if ok else breaker.record_failure)(ticket)
        seen.append((int(clock.now * 6.0), ok))  # 60 buckets over 10 s
    head = int(clock.now * 6.0)
    live = [ok for index, ok in seen if index > head - 60]
    snap = breaker.snapshot()
    assert snap["window_successes"] == sum(live)
    assert snap["window_failures"] == len(live) - sum(live)


def test_cooldown_then_half_open_probe_success_closes_and_resets() -> None:
    clock = FakeClock()
    breaker = make(clock, failure_threshold=2, cooldown=10.0)
    fail_n(breaker, 2)
    clock.now += 9.9
    assert breaker.try_acquire() is None
    clock.now += 0.1
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.reopens_at() is None
    probe = breaker.try_acquire()
    assert probe is not None and probe.probe
    assert breaker.try_acquire() is None
    breaker.record_success(probe)
    snap = breaker.snapshot()
    assert snap["state"] == "closed"
    assert snap["consecutive_failures"] == 0
    assert snap["window_failures"] == 0
    assert snap["times_opened"] == 1
    fail_n(breaker, 1)
    assert breaker.state is BreakerState.CLOSED


def test_probe_failure_reopens_with_a_new_cooldown_and_retry_after() -> None:
    clock = FakeClock()
    breaker = make(clock, failure_threshold=1, cooldown=10.0)
    fail_n(breaker, 1)
    clock.now += 10.0
    probe = breaker.try_acquire()
    assert probe is not None
    breaker.record_failure(probe, retry_after=25.0)
    assert breaker.state is BreakerState.OPEN
    assert breaker.reopens_at() == pytest.approx(clock.now + 25.0)
    assert breaker.snapshot()["times_opened"] == 2


def test_retry_after_lengthens_but_never_shortens_the_cooldown() -> None:
    clock = FakeClock()
    long = make(clock, failure_threshold=1, cooldown=10.0)
    fail_n(long, 1, retry_after=30.0)
    assert long.reopens_at() == pytest.approx(clock.now + 30.0)
    short = make(clock, failure_threshold=1, cooldown=10.0)
    fail_n(short, 1, retry_after=2.0)
    assert short.reopens_at() == pytest.approx(clock.now + 10.0)


def test_release_frees_a_probe_slot_and_counts_nothing() -> None:
    clock = FakeClock()
    breaker = make(clock, failure_threshold=1, cooldown=1.0, half_open_probes=2)
    fail_n(breaker, 1)
    clock.now += 1.0
    first, second = breaker.try_acquire(), breaker.try_acquire()
    assert first is not None and second is not None
    assert breaker.try_acquire() is None
    breaker.release(first)
    breaker.release(first)  # a second release of one ticket frees nothing more
    assert breaker.snapshot()["probes_in_flight"] == 1
    third = breaker.try_acquire()
    assert third is not None and third.probe
    assert breaker.try_acquire() is None
    assert breaker.state is BreakerState.HALF_OPEN


def test_outcomes_of_calls_admitted_before_opening_are_ignored() -> None:
    clock = FakeClock()
    breaker = make(clock, failure_threshold=2, cooldown=10.0)
    stale = [breaker.try_acquire() for _ in range(5)]
    assert all(t is not None for t in stale)
    fail_n(breaker, 2)
    reopens = breaker.reopens_at()
    breaker.record_failure(stale[0], retry_after=500.0)  # type: ignore[arg-type]
    assert breaker.reopens_at() == reopens
    clock.now += 10.0
    probe = breaker.try_acquire()
    assert probe is not None
    breaker.record_success(stale[1])  # type: ignore[arg-type]
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.record_success(probe)
    assert breaker.state is BreakerState.CLOSED
    breaker.record_failure(stale[2])  # type: ignore[arg-type]
    assert breaker.snapshot()["window_failures"] == 0
    breaker.record_success(probe)  # a probe already resolved
    assert breaker.snapshot()["window_successes"] == 0


def test_on_transition_sees_every_change() -> None:
    clock = FakeClock()
    seen: list[tuple[str, BreakerState, BreakerState]] = []
    breaker = CircuitBreaker(
        "anthropic:x",
        failure_threshold=1,
        cooldown=5.0,
        clock=clock,
        on_transition=lambda *args: seen.append(args),
    )
    fail_n(breaker, 1)
    clock.now += 5.0
    probe = breaker.try_acquire()
    assert probe is not None
    breaker.record_failure(probe)
    clock.now += 5.0
    probe = breaker.try_acquire()
    assert probe is not None
    breaker.record_success(probe)
    closed, opened, half = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
    assert seen == [
        ("anthropic:x", closed, opened),
        ("anthropic:x", opened, half),
        ("anthropic:x", half, opened),
        ("anthropic:x", opened, half),
        ("anthropic:x", half, closed),
    ]


def test_snapshot_reports_counters() -> None:
    clock = FakeClock()
    breaker = make(clock, failure_threshold=3, cooldown=7.0)
    ok = breaker.try_acquire()
    assert ok is not None
    breaker.record_success(ok)
    fail_n(breaker, 2)
    snap = breaker.snapshot()
    assert snap == {
        "name": "m",
        "state": "closed",
        "consecutive_failures": 2,
        "window_successes": 1,
        "window_failures": 2,
        "opened_at": None,
        "reopens_at": None,
        "times_opened": 0,
        "probes_in_flight": 0,
    }
    fail_n(breaker, 1)
    snap = breaker.snapshot()
    assert snap["state"] == "open"
    assert snap["opened_at"] == clock.now
    assert snap["reopens_at"] == clock.now + 7.0


@pytest.mark.parametrize("probes", [1, 3])
async def test_concurrent_coroutines_on_half_open_admit_exactly_the_probes(probes: int) -> None:
    clock = FakeClock()
    breaker = make(clock, failure_threshold=1, cooldown=1.0, half_open_probes=probes)
    fail_n(breaker, 1)
    clock.now += 1.0
    admitted: list[Ticket] = []
    in_flight = 0
    peak = 0

    async def worker() -> None:
        nonlocal in_flight, peak
        await anyio.lowlevel.checkpoint()
        ticket = breaker.try_acquire()
        if ticket is None:
            return
        admitted.append(ticket)
        in_flight += 1
        peak = max(peak, in_flight)
        for _ in range(3):
            await anyio.lowlevel.checkpoint()
        in_flight -= 1

    async with anyio.create_task_group() as tg:
        for _ in range(500):
            tg.start_soon(worker)
    assert len(admitted) == probes
    assert peak == probes
    assert all(t.probe for t in admitted)
