"""Client-side rate limits per model: requests, input tokens and output tokens per minute.

Each limit is a :class:`TokenBucket`. A :class:`ModelRateLimiter` takes from all
of a model's buckets at once, in arrival order, and adapts the rates:

* AIMD: every 429 halves the effective rates (down to ``min_fraction`` of the
  configured ones); they then recover additively by ``recovery_step`` of the
  configured rate per ``recovery_interval`` seconds since the last decrease,
  never above the configured rate or the server's announced limit.
* Response headers (Anthropic ``anthropic-ratelimit-*``, OpenAI
  ``x-ratelimit-*``) drain a bucket down to what the server says remains and
  lower a rate the server says is above its limit.

Only limits the user configured are enforced: a limiter with all three ``None``
is a no-op. No method but :meth:`ModelRateLimiter.acquire` awaits, so each call
is atomic within one event loop.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio

from .._exceptions import ConfigurationError

__all__ = ["ModelRateLimiter", "Reservation", "TokenBucket"]

#: Shortfall (in tokens) still counted as "enough": float refill arithmetic is inexact.
_EPSILON = 1e-6

_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|h|m|s)")
_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def _positive(name: str, value: float | None, *, optional: bool = True) -> None:
    if value is None and optional:
        return
    if value is None or not (value > 0 and math.isfinite(value)):
        raise ConfigurationError(
            f"{name} must be a positive number{' or None (unlimited)' if optional else ''}, "
            f"got {value!r}"
        )


class TokenBucket:
    """Refills continuously at ``rate_per_minute`` up to ``burst`` (default: one minute's worth).

    The level may go negative (debt): an amount larger than the burst is let
    through once the bucket is full, and usage above an estimate is charged
    after the fact.
    """

    __slots__ = ("_burst", "_capacity", "_clock", "_level", "_per_second", "_stamp")

    def __init__(
        self,
        rate_per_minute: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _positive("rate_per_minute", rate_per_minute, optional=False)
        _positive("burst", burst)
        self._burst = burst
        self._per_second = rate_per_minute / 60.0
        self._capacity = float(burst if burst is not None else rate_per_minute)
        self._level = self._capacity
        self._clock = clock
        self._stamp = clock()

    @property
    def rate(self) -> float:
        """Current refill rate, per minute."""
        return self._per_second * 60.0

    @property
    def capacity(self) -> float:
        return self._capacity

    @property
    def level(self) -> float:
        """What could be taken now (negative while in debt)."""
        self._refill()
        return self._level

    def wait_time(self, n: float) -> float:
        """Seconds until ``n`` could be taken (0.0: now); over the burst needs a full bucket."""
        self._refill()
        short = min(n, self._capacity) - self._level
        return 0.0 if short <= _EPSILON else short / self._per_second

    def try_take(self, n: float) -> float:
        """Take ``n`` and return 0.0, or take nothing and return the seconds to wait."""
        wait = self.wait_time(n)
        if wait == 0.0:
            self._level -= n
        return wait

    def take(self, n: float) -> None:
        """Take ``n`` unconditionally, into debt if need be."""
        self._refill()
        self._level -= n

    def give_back(self, n: float) -> None:
        """Return ``n`` that was taken but not used (never above capacity)."""
        self._refill()
        self._level = min(self._capacity, self._level + n)

    def drain_to(self, level: float) -> None:
        """Lower the level to ``level`` if it is above it (the server knows better)."""
        self._refill()
        self._level = min(self._level, level)

    def set_rate(self, rate_per_minute: float) -> None:
        """Change the refill rate; a default burst follows the rate."""
        _positive("rate_per_minute", rate_per_minute, optional=False)
        self._refill()
        self._per_second = rate_per_minute / 60.0
        if self._burst is None:
            self._capacity = float(rate_per_minute)
            self._level = min(self._level, self._capacity)

    def _refill(self) -> None:
        now = self._clock()
        elapsed = now - self._stamp
        if elapsed > 0:
            self._stamp = now
            if self._level < self._capacity:
                self._level = min(self._capacity, self._level + elapsed * self._per_second)


@dataclass(slots=True, eq=False)
class Reservation:
    """What one request took from a model's limits; settle it once (reconcile or release)."""

    input_tokens: int
    output_tokens: int
    #: Clock time it was granted (tells 429s of requests sent before a slowdown apart).
    acquired_at: float
    settled: bool = False


class _Lane:
    """One limit: its bucket, the user's rate and the rate in force before AIMD."""

    __slots__ = ("bucket", "ceiling", "configured")

    def __init__(self, rate: float, clock: Callable[[], float]) -> None:
        self.bucket = TokenBucket(rate, clock=clock)
        self.configured = rate
        self.ceiling = rate  # min(configured, the server's announced limit)

    def snapshot(self) -> dict[str, float]:
        return {
            "configured": self.configured,
            "limit": self.ceiling,
            "rate": self.bucket.rate,
            "capacity": self.bucket.capacity,
            "available": self.bucket.level,
        }


class _Waiter:
    __slots__ = ("turn",)

    def __init__(self) -> None:
        self.turn = anyio.Event()


class ModelRateLimiter:
    """Requests/min, input tokens/min and output tokens/min of one model, FIFO-fair."""

    def __init__(
        self,
        rpm: float | None,
        input_tpm: float | None,
        output_tpm: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = anyio.sleep,
        decrease_factor: float = 0.5,
        min_fraction: float = 0.05,
        recovery_step: float = 0.05,
        recovery_interval: float = 5.0,
    ) -> None:
        for name, value in (("rpm", rpm), ("input_tpm", input_tpm), ("output_tpm", output_tpm)):
            _positive(name, value)
        if not 0 < decrease_factor < 1:
            raise ConfigurationError(f"decrease_factor must be in (0, 1), got {decrease_factor}")
        if not 0 < min_fraction <= 1:
            raise ConfigurationError(f"min_fraction must be in (0, 1], got {min_fraction}")
        _positive("recovery_step", recovery_step, optional=False)
        _positive("recovery_interval", recovery_interval, optional=False)
        self._clock = clock
        self._sleep = sleep
        self._requests = _Lane(rpm, clock) if rpm is not None else None
        self._input = _Lane(input_tpm, clock) if input_tpm is not None else None
        self._output = _Lane(output_tpm, clock) if output_tpm is not None else None
        self._lanes = [x for x in (self._requests, self._input, self._output) if x is not None]
        self._decrease = decrease_factor
        self._min_fraction = min_fraction
        self._step = recovery_step
        self._interval = recovery_interval
        self._multiplier = 1.0
        self._multiplier_after_decrease = 1.0
        self._decreased_at = -math.inf
        self._rate_limited = 0
        self._waiters: dict[_Waiter, None] = {}  # insertion-ordered set: FIFO, O(1) removal
        self._head_scope: anyio.CancelScope | None = None

    @property
    def enabled(self) -> bool:
        """Whether any limit is configured."""
        return bool(self._lanes)

    # -- acquisition ---------------------------------------------------------

    async def acquire(self, input_tokens: int, output_tokens: int) -> Reservation:
        """Wait until every limit can take this request's amounts, then take them together.

        Waiters are served in arrival order, so a large request is never starved
        by smaller ones. A waiter cancelled before its turn takes nothing.
        """
        reservation = self.try_acquire(input_tokens, output_tokens)
        if reservation is not None:
            return reservation
        return await self._queue(input_tokens, output_tokens)

    def try_acquire(self, input_tokens: int, output_tokens: int) -> Reservation | None:
        """Take the amounts now if nobody waits and every limit has room, else None."""
        if not self._lanes:
            return Reservation(input_tokens, output_tokens, 0.0)
        if input_tokens < 0 or output_tokens < 0:
            raise ValueError(f"token amounts must be >= 0, got {input_tokens}, {output_tokens}")
        if self._multiplier < 1.0:
            self._recover()
        if not self._waiters and self._delay(input_tokens, output_tokens) == 0.0:
            return self._take(input_tokens, output_tokens)
        return None

    async def _queue(self, input_tokens: int, output_tokens: int) -> Reservation:
        waiter = _Waiter()
        self._waiters[waiter] = None
        try:
            if next(iter(self._waiters)) is not waiter:
                await waiter.turn.wait()
            while True:
                self._recover()
                delay = self._delay(input_tokens, output_tokens)
                if delay == 0.0:
                    return self._take(input_tokens, output_tokens)
                if self._multiplier < 1.0:  # wake for the next recovery step
                    next_step = self._decreased_at + self._interval * (
                        math.floor((self._clock() - self._decreased_at) / self._interval) + 1
                    )
                    delay = max(0.0, min(delay, next_step - self._clock()))
                with anyio.CancelScope() as scope:
                    self._head_scope = scope
                    try:
                        await self._sleep(delay)
                    finally:
                        self._head_scope = None
        finally:
            was_head = next(iter(self._waiters)) is waiter
            del self._waiters[waiter]
            if was_head and self._waiters:
                next(iter(self._waiters)).turn.set()

    def _delay(self, input_tokens: int, output_tokens: int) -> float:
        delay = 0.0
        if self._requests is not None:
            delay = self._requests.bucket.wait_time(1)
        if self._input is not None:
            delay = max(delay, self._input.bucket.wait_time(input_tokens))
        if self._output is not None:
            delay = max(delay, self._output.bucket.wait_time(output_tokens))
        return delay

    def _take(self, input_tokens: int, output_tokens: int) -> Reservation:
        if self._requests is not None:
            self._requests.bucket.take(1)
        if self._input is not None:
            self._input.bucket.take(input_tokens)
        if self._output is not None:
            self._output.bucket.take(output_tokens)
        return Reservation(input_tokens, output_tokens, self._clock())

    def _wake_head(self) -> None:
        """Capacity came back early: let the sleeping head waiter look again."""
        if self._head_scope is not None:
            self._head_scope.cancel()

    # -- settling --------------------------------------------------------------

    def reconcile(
        self,
        reservation: Reservation,
        actual_output_tokens: int,
        actual_input_tokens: int | None = None,
    ) -> None:
        """Settle with real usage: return what the estimate over-reserved, charge what it missed.

        Settling a reservation twice does nothing.
        """
        if reservation.settled:
            return
        reservation.settled = True
        returned = False
        for lane, estimate, actual in (
            (self._output, reservation.output_tokens, actual_output_tokens),
            (self._input, reservation.input_tokens, actual_input_tokens),
        ):
            if lane is None or actual is None or actual == estimate:
                continue
            if actual < estimate:
                lane.bucket.give_back(estimate - actual)
                returned = True
            else:
                lane.bucket.take(actual - estimate)
        if returned:
            self._wake_head()

    def release(self, reservation: Reservation) -> None:
        """The request was never sent: give everything back. Settling twice does nothing."""
        if reservation.settled:
            return
        reservation.settled = True
        if not self._lanes:
            return
        if self._requests is not None:
            self._requests.bucket.give_back(1)
        if self._input is not None:
            self._input.bucket.give_back(reservation.input_tokens)
        if self._output is not None:
            self._output.bucket.give_back(reservation.output_tokens)
        self._wake_head()

    # -- adaptation ------------------------------------------------------------

    def on_rate_limited(
        self, reservation: Reservation | None = None, *, retry_after: float | None = None
    ) -> None:
        """A 429: cut the effective rates by ``decrease_factor`` (not below ``min_fraction``).
        (``retry_after`` is for shared limiters; in one process the router itself holds
        new requests back from a deployment that asked for a long wait.)

        With the ``reservation`` of the throttled request, a 429 for a request
        granted before the latest cut is ignored: it was sent at the old rate,
        and a burst of such answers should cut once, not many times.
        """
        if not self._lanes:
            return
        if reservation is not None and reservation.acquired_at <= self._decreased_at:
            return
        self._recover()
        self._rate_limited += 1
        self._multiplier = max(self._min_fraction, self._multiplier * self._decrease)
        self._multiplier_after_decrease = self._multiplier
        self._decreased_at = self._clock()
        self._apply_rates()

    def _recover(self) -> None:
        if self._multiplier >= 1.0:
            return
        steps = math.floor((self._clock() - self._decreased_at) / self._interval)
        target = min(1.0, self._multiplier_after_decrease + steps * self._step)
        if target > self._multiplier:
            self._multiplier = target
            self._apply_rates()

    def _apply_rates(self) -> None:
        for lane in self._lanes:
            lane.bucket.set_rate(lane.ceiling * self._multiplier)

    def update_from_headers(self, headers: Mapping[str, str], *, now: float | None = None) -> None:
        """Follow the server's view of our limits from response headers.

        A ``remaining`` below our bucket's level drains it; nothing remaining plus
        a ``reset`` keeps the bucket empty until then. A ``limit`` below the
        configured rate caps it. Combined ``tokens`` limits apply to both token
        buckets. ``now`` is the wall-clock time (epoch seconds) for RFC 3339
        resets; it defaults to :func:`time.time`.
        """
        if not self._lanes:
            return
        groups = _parse_headers(headers)
        if not groups:
            return
        raised = False
        for kind, (limit, remaining, reset) in groups.items():
            for lane in self._lanes_for(kind):
                if limit is not None and limit > 0:
                    ceiling = min(lane.configured, limit)
                    if ceiling != lane.ceiling:
                        raised = raised or ceiling > lane.ceiling
                        lane.ceiling = ceiling
                        lane.bucket.set_rate(ceiling * self._multiplier)
                if remaining is not None:
                    level = remaining
                    if remaining < 1 and reset is not None:
                        seconds = _reset_seconds(reset, now)
                        if seconds is not None and seconds > 0:
                            level = min(level, -seconds * lane.bucket.rate / 60.0)
                    lane.bucket.drain_to(level)
        if raised:
            self._wake_head()

    def _lanes_for(self, kind: str) -> list[_Lane]:
        if kind == "requests":
            lanes = [self._requests]
        elif kind == "input":
            lanes = [self._input]
        elif kind == "output":
            lanes = [self._output]
        else:
            lanes = [self._input, self._output]
        return [lane for lane in lanes if lane is not None]

    def snapshot(self) -> dict[str, Any]:
        return {
            "enabled": bool(self._lanes),
            "multiplier": self._multiplier,
            "rate_limited": self._rate_limited,
            "waiting": len(self._waiters),
            "requests": self._requests.snapshot() if self._requests else None,
            "input_tokens": self._input.snapshot() if self._input else None,
            "output_tokens": self._output.snapshot() if self._output else None,
        }


# -- header parsing --------------------------------------------------------------

_ANTHROPIC_KINDS = {
    "requests": "requests",
    "input-tokens": "input",
    "output-tokens": "output",
    "tokens": "tokens",
}
_OPENAI_KINDS = {"requests": "requests", "tokens": "tokens"}
_FIELDS = ("limit", "remaining", "reset")


def _parse_headers(
    headers: Mapping[str, str],
) -> dict[str, tuple[float | None, float | None, str | None]]:
    """``{kind: (limit, remaining, raw reset)}`` for kinds requests/input/output/tokens."""
    found: dict[str, list[Any]] = {}
    for name, value in headers.items():
        low = name.lower()
        if low.startswith("anthropic-ratelimit-"):
            what, _, field = low[len("anthropic-ratelimit-") :].rpartition("-")
            kind = _ANTHROPIC_KINDS.get(what)
        elif low.startswith("x-ratelimit-"):
            field, _, what = low[len("x-ratelimit-") :].partition("-")
            kind = _OPENAI_KINDS.get(what)
        else:
            continue
        if kind is None or field not in _FIELDS:
            continue
        slot = found.setdefault(kind, [None, None, None])
        if field == "reset":
            slot[2] = value.strip()
        else:
            slot[_FIELDS.index(field)] = _number(value)
    return {kind: (v[0], v[1], v[2]) for kind, v in found.items()}


def _number(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _reset_seconds(value: str, now: float | None) -> float | None:
    """Seconds until a reset given as a Go-style duration (``6m0s``), seconds, or RFC 3339."""
    number = _number(value)
    if number is not None:
        return number
    matches = list(_DURATION_RE.finditer(value))
    if matches and "".join(m.group(0) for m in matches) == value:
        return sum(float(m.group(1)) * _DURATION_UNITS[m.group(2)] for m in matches)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return when.timestamp() - (time.time() if now is None else now)
