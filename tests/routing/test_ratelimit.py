from __future__ import annotations

from datetime import UTC, datetime

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentic_synth._exceptions import ConfigurationError
from agentic_synth.routing._ratelimit import (
    ModelRateLimiter,
    Reservation,
    TokenBucket,
    _reset_seconds,
)


class FakeTime:
    """A clock plus a sleep that jumps it forward, recording each sleep."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await anyio.lowlevel.checkpoint()


async def sleep_until_woken(seconds: float) -> None:
    """A sleep that never ends by itself: only a wake-up (cancel) gets a waiter past it."""
    await anyio.sleep_forever()


def limiter(t: FakeTime, rpm: float | None, itpm: float | None, otpm: float | None, **kw: float):
    return ModelRateLimiter(rpm, itpm, otpm, clock=t, sleep=t.sleep, **kw)


# -- TokenBucket -----------------------------------------------------------------


def test_bucket_starts_full_and_never_takes_partially() -> None:
    t = FakeTime()
    bucket = TokenBucket(60, clock=t)  # 1 per second, burst 60
    assert bucket.try_take(50) == 0.0
    assert bucket.try_take(20) == pytest.approx(10.0)
    assert bucket.level == pytest.approx(10.0)
    t.now += 10.0
    assert bucket.try_take(20) == 0.0
    assert bucket.level == pytest.approx(0.0)


def test_bucket_refills_up_to_its_burst() -> None:
    t = FakeTime()
    bucket = TokenBucket(600, burst=5, clock=t)
    assert bucket.try_take(5) == 0.0
    t.now += 1000.0
    assert bucket.level == 5.0
    bucket.give_back(3)
    assert bucket.level == 5.0


def test_bucket_lets_an_oversized_amount_through_when_full_and_goes_into_debt() -> None:
    t = FakeTime()
    bucket = TokenBucket(60, burst=10, clock=t)
    assert bucket.try_take(3) == 0.0
    assert bucket.try_take(25) == pytest.approx(3.0)  # waits for a full bucket
    t.now += 3.0
    assert bucket.try_take(25) == 0.0
    assert bucket.level == pytest.approx(-15.0)
    assert bucket.wait_time(1) == pytest.approx(16.0)


def test_bucket_set_rate_moves_a_default_burst_but_not_an_explicit_one() -> None:
    t = FakeTime()
    default = TokenBucket(120, clock=t)
    default.set_rate(30)
    assert (default.rate, default.capacity, default.level) == (30, 30, 30)
    explicit = TokenBucket(120, burst=50, clock=t)
    explicit.set_rate(30)
    assert (explicit.rate, explicit.capacity, explicit.level) == (30, 50, 50)
    assert explicit.try_take(51) == 0.0  # a full bucket passes an oversized amount
    assert explicit.wait_time(30) == pytest.approx(62.0)


def test_bucket_drain_to_only_lowers() -> None:
    t = FakeTime()
    bucket = TokenBucket(60, clock=t)
    bucket.drain_to(100)
    assert bucket.level == 60
    bucket.drain_to(-2)
    assert bucket.level == -2


@pytest.mark.parametrize("kwargs", [{"rate_per_minute": 0}, {"rate_per_minute": 5, "burst": -1}])
def test_bucket_rejects_bad_configuration(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError, match="positive"):
        TokenBucket(**kwargs)


# -- ModelRateLimiter: acquisition -------------------------------------------------


async def test_unlimited_limiter_is_a_no_op() -> None:
    t = FakeTime()
    lim = limiter(t, None, None, None)
    reservation = await lim.acquire(10**9, 10**9)
    lim.on_rate_limited(reservation)
    lim.update_from_headers({"anthropic-ratelimit-requests-remaining": "0"})
    lim.reconcile(reservation, 5)
    assert t.sleeps == []
    assert lim.snapshot()["enabled"] is False
    assert lim.snapshot()["multiplier"] == 1.0


async def test_requests_per_minute_are_enforced() -> None:
    t = FakeTime()
    lim = limiter(t, 60, None, None)
    for _ in range(60):
        await lim.acquire(0, 0)
    assert t.sleeps == []
    await lim.acquire(0, 0)
    assert t.sleeps == [pytest.approx(1.0)]
    assert t.now == pytest.approx(101.0)


async def test_all_limits_must_allow_the_request_and_none_is_taken_while_waiting() -> None:
    t = FakeTime()
    lim = ModelRateLimiter(60, 1000, 6000, clock=t, sleep=sleep_until_woken)
    await lim.acquire(1000, 10)  # input bucket now empty
    async with anyio.create_task_group() as tg:
        tg.start_soon(lim.acquire, 10, 10)
        await anyio.wait_all_tasks_blocked()
        snap = lim.snapshot()
        assert snap["waiting"] == 1
        assert snap["requests"]["available"] == pytest.approx(59.0)
        assert snap["output_tokens"]["available"] == pytest.approx(5990.0)
        tg.cancel_scope.cancel()
    snap = lim.snapshot()
    assert snap["waiting"] == 0
    assert snap["requests"]["available"] == pytest.approx(59.0)


async def test_waiters_are_served_in_arrival_order_so_big_requests_are_not_starved() -> None:
    t = FakeTime()
    lim = limiter(t, None, 100, None)
    await lim.acquire(100, 0)
    done: list[tuple[str, float]] = []

    async def ask(name: str, tokens: int) -> None:
        await lim.acquire(tokens, 0)
        done.append((name, t.now))

    async with anyio.create_task_group() as tg:
        tg.start_soon(ask, "big", 100)
        await anyio.lowlevel.checkpoint()
        tg.start_soon(ask, "small", 10)
    assert done == [("big", pytest.approx(160.0)), ("small", pytest.approx(166.0))]


async def test_a_cancelled_waiter_takes_nothing_and_passes_its_turn() -> None:
    t = FakeTime()
    lim = ModelRateLimiter(None, 100, None, clock=t, sleep=sleep_until_woken)
    first = await lim.acquire(100, 0)
    got: list[Reservation] = []

    async def patient() -> None:
        got.append(await lim.acquire(30, 0))

    impatient = anyio.CancelScope()

    async def head() -> None:
        with impatient:
            await lim.acquire(80, 0)

    async with anyio.create_task_group() as tg:
        tg.start_soon(head)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(patient)
        await anyio.wait_all_tasks_blocked()
        assert lim.snapshot()["waiting"] == 2
        impatient.cancel()
        await anyio.wait_all_tasks_blocked()
        assert lim.snapshot()["waiting"] == 1
        assert lim.snapshot()["input_tokens"]["available"] == pytest.approx(0.0)
        lim.release(first)  # capacity back: the patient waiter, now head, is woken
    assert [r.input_tokens for r in got] == [30]
    assert lim.snapshot()["input_tokens"]["available"] == pytest.approx(70.0)
    assert lim.snapshot()["waiting"] == 0


async def test_head_sleeps_no_longer_than_the_next_recovery_step() -> None:
    t = FakeTime()
    lim = limiter(t, 60, None, None, recovery_interval=5.0)
    lim.on_rate_limited()  # 30/min, burst 30
    for _ in range(30):
        await lim.acquire(0, 0)
    t.sleeps.clear()
    for _ in range(40):
        await lim.acquire(0, 0)
    assert t.sleeps and max(t.sleeps) <= 5.0
    assert lim.snapshot()["multiplier"] > 0.5


# -- settling --------------------------------------------------------------------------


async def test_reconcile_returns_or_charges_the_difference_once() -> None:
    t = FakeTime()
    lim = limiter(t, None, 1000, 1000)
    over = await lim.acquire(100, 400)
    lim.reconcile(over, 150, actual_input_tokens=100)
    assert lim.snapshot()["output_tokens"]["available"] == pytest.approx(850.0)
    lim.reconcile(over, 0)
    assert lim.snapshot()["output_tokens"]["available"] == pytest.approx(850.0)
    under = await lim.acquire(100, 100)
    lim.reconcile(under, 300, actual_input_tokens=160)
    snap = lim.snapshot()
    assert snap["output_tokens"]["available"] == pytest.approx(550.0)
    assert snap["input_tokens"]["available"] == pytest.approx(740.0)
    lim.release(under)
    assert lim.snapshot()["output_tokens"]["available"] == pytest.approx(550.0)


async def test_release_gives_everything_back() -> None:
    t = FakeTime()
    lim = limiter(t, 10, 1000, 1000)
    reservation = await lim.acquire(300, 200)
    lim.release(reservation)
    snap = lim.snapshot()
    assert snap["requests"]["available"] == 10
    assert snap["input_tokens"]["available"] == 1000
    assert snap["output_tokens"]["available"] == 1000


async def test_negative_amounts_are_rejected() -> None:
    lim = limiter(FakeTime(), 10, None, None)
    with pytest.raises(ValueError, match=">= 0"):
        await lim.acquire(-1, 0)


# -- AIMD --------------------------------------------------------------------------------


async def test_rate_limited_halves_rates_with_a_floor() -> None:
    t = FakeTime()
    lim = limiter(t, 100, 1000, None, min_fraction=0.1)
    lim.on_rate_limited()
    snap = lim.snapshot()
    assert snap["requests"]["rate"] == pytest.approx(50.0)
    assert snap["input_tokens"]["rate"] == pytest.approx(500.0)
    for _ in range(10):
        lim.on_rate_limited()
    assert lim.snapshot()["requests"]["rate"] == pytest.approx(10.0)
    assert lim.snapshot()["rate_limited"] == 11


async def test_429s_of_requests_sent_before_a_cut_cut_only_once() -> None:
    t = FakeTime()
    lim = limiter(t, 100, None, None)
    early = [await lim.acquire(0, 0) for _ in range(5)]
    t.now += 1.0
    for reservation in early:
        lim.on_rate_limited(reservation)
    assert lim.snapshot()["multiplier"] == 0.5
    t.now += 1.0
    later = await lim.acquire(0, 0)
    lim.on_rate_limited(later)
    assert lim.snapshot()["multiplier"] == 0.25


async def test_rates_recover_additively_up_to_the_configured_rate() -> None:
    t = FakeTime()
    lim = limiter(t, 100, None, None, recovery_step=0.1, recovery_interval=5.0)
    lim.on_rate_limited()
    t.now += 4.9
    await lim.acquire(0, 0)
    assert lim.snapshot()["multiplier"] == 0.5
    t.now += 0.1
    await lim.acquire(0, 0)
    assert lim.snapshot()["multiplier"] == pytest.approx(0.6)
    t.now += 17.0
    await lim.acquire(0, 0)
    assert lim.snapshot()["multiplier"] == pytest.approx(0.9)
    t.now += 1000.0
    await lim.acquire(0, 0)
    assert lim.snapshot()["multiplier"] == 1.0
    assert lim.snapshot()["requests"]["rate"] == 100


# -- headers ------------------------------------------------------------------------------


def test_anthropic_headers_drain_and_cap() -> None:
    t = FakeTime()
    lim = limiter(t, 100, 50_000, 10_000)
    lim.update_from_headers(
        {
            "anthropic-ratelimit-requests-limit": "50",
            "anthropic-ratelimit-requests-remaining": "20",
            "anthropic-ratelimit-input-tokens-limit": "80000",
            "anthropic-ratelimit-input-tokens-remaining": "30000",
            "anthropic-ratelimit-output-tokens-remaining": "9000",
            "request-id": "req_1",
        }
    )
    snap = lim.snapshot()
    assert snap["requests"]["limit"] == 50
    assert snap["requests"]["rate"] == 50
    assert snap["requests"]["available"] == 20
    assert snap["input_tokens"]["limit"] == 50_000  # the server's is higher: ours stays
    assert snap["input_tokens"]["available"] == 30_000
    assert snap["output_tokens"]["available"] == 9000


def test_combined_tokens_headers_apply_to_both_token_buckets() -> None:
    t = FakeTime()
    lim = limiter(t, None, 50_000, 20_000)
    lim.update_from_headers(
        {"anthropic-ratelimit-tokens-limit": "30000", "anthropic-ratelimit-tokens-remaining": "500"}
    )
    snap = lim.snapshot()
    assert snap["input_tokens"]["limit"] == 30_000
    assert snap["output_tokens"]["limit"] == 20_000
    assert snap["input_tokens"]["available"] == 500
    assert snap["output_tokens"]["available"] == 500


def test_nothing_remaining_keeps_the_bucket_empty_until_reset() -> None:
    t = FakeTime()
    lim = limiter(t, 60, None, None)
    now = datetime(2030, 5, 1, 12, 0, 0, tzinfo=UTC).timestamp()
    lim.update_from_headers(
        {
            "anthropic-ratelimit-requests-remaining": "0",
            "anthropic-ratelimit-requests-reset": "2030-05-01T12:00:20Z",
        },
        now=now,
    )
    assert lim.snapshot()["requests"]["available"] == pytest.approx(-20.0)


async def test_openai_headers_with_duration_resets() -> None:
    t = FakeTime()
    lim = limiter(t, 600, 100_000, None)
    lim.update_from_headers(
        {
            "x-ratelimit-limit-requests": "300",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "2s",
            "x-ratelimit-limit-tokens": "90000",
            "x-ratelimit-remaining-tokens": "1000",
            "x-ratelimit-reset-tokens": "6m0s",
        }
    )
    snap = lim.snapshot()
    assert snap["requests"]["rate"] == 300
    assert snap["requests"]["available"] == pytest.approx(-10.0)
    assert snap["input_tokens"]["limit"] == 90_000
    assert snap["input_tokens"]["available"] == 1000
    await lim.acquire(10, 0)
    assert t.now == pytest.approx(102.2)  # 2 s to reset + 1 request at 5/s


async def test_a_server_limit_raised_again_lifts_ours_back_to_configured() -> None:
    t = FakeTime()
    lim = limiter(t, 100, None, None)
    lim.update_from_headers({"x-ratelimit-limit-requests": "40"})
    assert lim.snapshot()["requests"]["rate"] == 40
    lim.update_from_headers({"X-RateLimit-Limit-Requests": "1000"})
    assert lim.snapshot()["requests"]["rate"] == 100


def test_junk_headers_are_ignored() -> None:
    t = FakeTime()
    lim = limiter(t, 100, None, None)
    lim.update_from_headers(
        {
            "x-ratelimit-limit-requests": "lots",
            "x-ratelimit-remaining-requests": "-3",
            "anthropic-ratelimit-widgets-remaining": "0",
            "x-ratelimit-reset-requests": "whenever",
        }
    )
    assert lim.snapshot()["requests"] == {
        "configured": 100,
        "limit": 100,
        "rate": 100,
        "capacity": 100,
        "available": 100,
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("20ms", 0.02),
        ("1h2m3.5s", 3723.5),
        ("0.5s", 0.5),
        ("7", 7.0),
        ("2030-01-01T00:00:10+00:00", 10.0),
        ("2030-01-01T00:00:10", None),
        ("5 s", None),
        ("s", None),
    ],
)
def test_reset_formats(value: str, expected: float | None) -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC).timestamp()
    assert _reset_seconds(value, now) == (pytest.approx(expected) if expected else None)


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"rpm": 0}, "rpm"),
        ({"input_tpm": float("nan")}, "input_tpm"),
        ({"decrease_factor": 1.0}, "decrease_factor"),
        ({"min_fraction": 0}, "min_fraction"),
        ({"recovery_interval": 0}, "recovery_interval"),
    ],
)
def test_limiter_rejects_bad_configuration(kwargs: dict[str, float], word: str) -> None:
    args = {"rpm": None, "input_tpm": None, "output_tpm": None} | kwargs
    with pytest.raises(ConfigurationError, match=word):
        ModelRateLimiter(**args)  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 3), min_size=1, max_size=120))
def test_grants_never_exceed_burst_plus_refill(gaps: list[float]) -> None:
    async def run() -> None:
        t = FakeTime(0.0)
        lim = limiter(t, 30, None, None)  # 0.5 per second, burst 30
        for gap in gaps:
            t.now += gap
            await lim.acquire(0, 0)
            assert lim.snapshot()["requests"]["available"] >= -1e-6
        granted = len(gaps)
        assert granted <= 30 + 0.5 * t.now + 1e-6

    anyio.run(run)
