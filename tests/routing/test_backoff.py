from __future__ import annotations

import types
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentic_synth._exceptions import (
    BadRequestError,
    ConfigurationError,
    OverloadedError,
    RateLimitedError,
    ServerError,
)
from agentic_synth.providers import _http_errors
from agentic_synth.routing._backoff import (
    RetryPolicy,
    backoff_delay,
    parse_retry_after,
    should_retry_header,
)


def top(rng_value: float = 1.0) -> float:
    return rng_value


@pytest.mark.parametrize(
    ("attempt", "expected"), [(1, 0.5), (2, 1.0), (3, 2.0), (6, 16.0), (7, 30.0), (10_000, 30.0)]
)
def test_backoff_window_doubles_up_to_the_cap(attempt: int, expected: float) -> None:
    assert backoff_delay(attempt, rng=top) == expected


def test_backoff_is_full_jitter_scaled_by_rng() -> None:
    assert backoff_delay(4, base=1.0, cap=100.0, rng=lambda: 0.25) == 2.0
    assert backoff_delay(4, rng=lambda: 0.0) == 0.0


@given(st.integers(1, 2000), st.floats(0.01, 10), st.floats(10, 1000))
def test_backoff_stays_within_the_window(attempt: int, base: float, cap: float) -> None:
    delay = backoff_delay(attempt, base=base, cap=cap)
    assert 0.0 <= delay <= min(cap, base * 2.0 ** min(attempt - 1, 62))


def test_backoff_rejects_attempt_zero() -> None:
    with pytest.raises(ValueError, match="1-based"):
        backoff_delay(0)


def test_parse_retry_after_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_retry_after({"retry-after-ms": "1500"}) == 1.5
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": "7"}) == 7.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None
    when = datetime(2030, 1, 1, 0, 0, 30, tzinfo=UTC)
    now = datetime(2030, 1, 1, 0, 0, 0, tzinfo=UTC).timestamp()
    monkeypatch.setattr(_http_errors, "time", types.SimpleNamespace(time=lambda: now))
    assert parse_retry_after({"retry-after": format_datetime(when, usegmt=True)}) == 30.0


@pytest.mark.parametrize(
    ("value", "expected"), [("true", True), ("FALSE", False), (" true ", True), ("maybe", None)]
)
def test_should_retry_header(value: str, expected: bool | None) -> None:
    assert should_retry_header({"x-should-retry": value}) is expected
    assert should_retry_header({}) is None


def test_policy_retries_retryable_errors_with_backoff() -> None:
    policy = RetryPolicy(max_attempts=4, base=0.5, cap=30.0, rng=top)
    error = ServerError("boom", status=500)
    assert policy.next_delay(1, error) == 0.5
    assert policy.next_delay(3, error) == 2.0
    assert policy.next_delay(4, error) is None


def test_policy_refuses_what_retrying_cannot_fix() -> None:
    policy = RetryPolicy(rng=top)
    assert policy.next_delay(1, BadRequestError("bad", status=400)) is None
    assert policy.next_delay(1, ValueError("not a provider error")) is None
    vetoed = ServerError("boom", status=500)
    vetoed.retryable = False  # the server said x-should-retry: false
    assert policy.next_delay(1, vetoed) is None


def test_policy_waits_at_least_retry_after_with_a_small_spread() -> None:
    error = RateLimitedError("slow down", status=429, retry_after=12.0)
    assert RetryPolicy(rng=lambda: 0.0).next_delay(1, error) == 12.0
    assert RetryPolicy(rng=top).next_delay(1, error) == pytest.approx(13.2)
    short = OverloadedError("busy", status=529, retry_after=0.1)
    assert RetryPolicy(rng=top).next_delay(3, short) == 2.0
    forever = RateLimitedError("slow down", status=429, retry_after=float("inf"))
    assert RetryPolicy(rng=top).next_delay(1, forever) is None


def test_policy_gives_up_when_the_wait_passes_the_deadline() -> None:
    policy = RetryPolicy(deadline=10.0, rng=top)
    error = RateLimitedError("slow down", status=429, retry_after=4.0)
    assert policy.next_delay(1, error, elapsed=5.0) == pytest.approx(4.4)
    assert policy.next_delay(1, error, elapsed=6.0) is None


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"base": 0}, "base"),
        ({"cap": 0.1}, "cap"),
        ({"deadline": 0}, "deadline"),
    ],
)
def test_policy_rejects_bad_configuration(kwargs: dict[str, float], word: str) -> None:
    with pytest.raises(ConfigurationError, match=word):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
