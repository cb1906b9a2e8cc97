"""Per-model circuit breaker: stop sending to a provider that keeps failing.

A breaker trips (closed -> open) on ``failure_threshold`` consecutive provider
failures, or when the failure rate over a sliding time window exceeds
``failure_rate`` with at least ``min_requests`` outcomes in it. It stays open
for ``cooldown`` (or the server's retry-after when longer), then half-opens and
admits at most ``half_open_probes`` concurrent probes: a probe success closes
it, a probe failure reopens it.

Every method is synchronous and never awaits, so each call is atomic within one
event loop. Outcomes of calls admitted before the latest state change (an
"epoch") are ignored: requests in flight when the breaker opened neither extend
the cooldown nor close it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from .._exceptions import ConfigurationError

__all__ = ["BreakerConfig", "BreakerState", "CircuitBreaker", "Ticket", "Trip"]

#: Buckets in the sliding window ring: 60 gives one-second buckets for a 60 s window.
_BUCKETS = 60


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Trip(StrEnum):
    """What :meth:`CircuitBreaker.trip` did."""

    OPENED = "opened"
    #: It was open already (tripped by faults, or by a call of the same wave): it now
    #: stays open at least as long as asked.
    EXTENDED = "extended"
    #: The call was admitted before the breaker last changed state: its verdict is stale.
    STALE = "stale"


class Ticket(NamedTuple):
    """Admission by :meth:`CircuitBreaker.try_acquire`; hand it back exactly once.

    ``serial`` tells probes apart (0 for ordinary calls), so resolving one probe
    twice frees its slot only once.
    """

    epoch: int
    probe: bool
    serial: int = 0


TransitionHook = Callable[[str, BreakerState, BreakerState], None]


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigurationError(message)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_seconds(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and value >= 0
        and math.isfinite(value)
    )


def _validate(
    failure_threshold: int,
    failure_rate: float,
    window: float,
    min_requests: int,
    cooldown: float,
    half_open_probes: int,
) -> None:
    _check(
        _is_int(failure_threshold) and failure_threshold >= 1,
        f"failure_threshold must be an integer >= 1, got {failure_threshold!r}",
    )
    _check(
        isinstance(failure_rate, int | float) and 0.0 < failure_rate <= 1.0,
        f"failure_rate must be in (0, 1] (1.0 disables rate tripping), got {failure_rate!r}",
    )
    _check(
        _is_seconds(window) and window > 0,
        f"window must be a positive number of seconds, got {window!r}",
    )
    _check(
        _is_int(min_requests) and min_requests >= 1,
        f"min_requests must be an integer >= 1, got {min_requests!r}",
    )
    _check(_is_seconds(cooldown), f"cooldown must be a number of seconds >= 0, got {cooldown!r}")
    _check(
        _is_int(half_open_probes) and half_open_probes >= 1,
        f"half_open_probes must be an integer >= 1, got {half_open_probes!r}",
    )


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """When a deployment is taken out of rotation, and for how long; applied to every model.

    The first six fields drive each model's :class:`CircuitBreaker` (provider
    faults: 5xx, 529, timeouts, connection failures). The last four apply the
    failure policy's ``COOLDOWN`` (:mod:`._policy`): ``auth_failures`` 401s,
    ``forbidden_failures`` 403s, or ``unreachable_failures`` failed connections
    spread over at least ``unreachable_after`` seconds, in a row with no success in
    between, take a deployment out for ``cooldown``; an exhausted quota, an
    unknown model or a redirect takes it out for ``long_cooldown``. Checked when built.
    """

    failure_threshold: int = 5
    failure_rate: float = 0.5
    window: float = 60.0
    min_requests: int = 20
    cooldown: float = 60.0
    half_open_probes: int = 1
    auth_failures: int = 3
    forbidden_failures: int = 10
    unreachable_failures: int = 3
    unreachable_after: float = 2.0
    long_cooldown: float = 600.0

    def __post_init__(self) -> None:
        _validate(
            self.failure_threshold,
            self.failure_rate,
            self.window,
            self.min_requests,
            self.cooldown,
            self.half_open_probes,
        )
        for name in ("auth_failures", "forbidden_failures", "unreachable_failures"):
            value = getattr(self, name)
            _check(_is_int(value) and value >= 1, f"{name} must be an integer >= 1, got {value!r}")
        for name in ("long_cooldown", "unreachable_after"):
            value = getattr(self, name)
            _check(_is_seconds(value), f"{name} must be a number of seconds >= 0, got {value!r}")

    def breaker_settings(self) -> dict[str, Any]:
        """The keyword arguments of :class:`CircuitBreaker` (the first six fields)."""
        return {
            "failure_threshold": self.failure_threshold,
            "failure_rate": self.failure_rate,
            "window": self.window,
            "min_requests": self.min_requests,
            "cooldown": self.cooldown,
            "half_open_probes": self.half_open_probes,
        }


class CircuitBreaker:
    """Closed / open / half-open breaker for one model. O(1) per call, no awaits."""

    __slots__ = (
        "_buckets_fail",
        "_buckets_ok",
        "_clock",
        "_closed_ticket",
        "_consecutive",
        "_cooldown",
        "_epoch",
        "_failure_rate",
        "_failure_threshold",
        "_head",
        "_inv_width",
        "_live_probes",
        "_min_requests",
        "_on_transition",
        "_opened_at",
        "_probes",
        "_reopens_at",
        "_serial",
        "_state",
        "_times_opened",
        "_total_fail",
        "_total_ok",
        "name",
    )

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        failure_rate: float = 0.5,
        window: float = 60.0,
        min_requests: int = 20,
        cooldown: float = 60.0,
        half_open_probes: int = 1,
        clock: Callable[[], float] = time.monotonic,
        on_transition: TransitionHook | None = None,
    ) -> None:
        _validate(failure_threshold, failure_rate, window, min_requests, cooldown, half_open_probes)
        self.name = name
        self._failure_threshold = failure_threshold
        self._failure_rate = failure_rate
        self._min_requests = min_requests
        self._cooldown = float(cooldown)
        self._probes = half_open_probes
        self._clock = clock
        self._on_transition = on_transition

        self._state = BreakerState.CLOSED
        self._epoch = 0
        self._closed_ticket = Ticket(0, False)
        self._consecutive = 0
        self._live_probes: set[int] = set()
        self._serial = 0
        self._opened_at: float | None = None
        self._reopens_at = 0.0
        self._times_opened = 0

        # Sliding window: a ring of buckets; ``_head`` is the absolute index of the newest.
        self._inv_width = _BUCKETS / window
        self._buckets_ok = [0] * _BUCKETS
        self._buckets_fail = [0] * _BUCKETS
        self._head = -1
        self._total_ok = 0
        self._total_fail = 0

    # -- state ---------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """Current state; an open breaker whose cooldown has passed becomes half-open here."""
        if self._state is BreakerState.OPEN and self._clock() >= self._reopens_at:
            self._transition(BreakerState.HALF_OPEN)
        return self._state

    @property
    def epoch(self) -> int:
        """Counts state changes: a new value means the breaker's verdict may have changed."""
        return self._epoch

    def reopens_at(self) -> float | None:
        """Clock time at which an open breaker admits probes; ``None`` when not open."""
        return self._reopens_at if self.state is BreakerState.OPEN else None

    # -- admission and outcomes ------------------------------------------------

    def try_acquire(self) -> Ticket | None:
        """A ticket to send one request, or ``None`` when the breaker refuses it."""
        if self._state is BreakerState.CLOSED:
            return self._closed_ticket
        if self.state is BreakerState.HALF_OPEN and len(self._live_probes) < self._probes:
            self._serial += 1
            self._live_probes.add(self._serial)
            return Ticket(self._epoch, True, self._serial)
        return None

    def record_success(self, ticket: Ticket) -> None:
        """The request answered: count it; a probe success closes the breaker."""
        if ticket is self._closed_ticket and self._state is BreakerState.CLOSED:
            self._consecutive = 0
            self._add(ok=True)
        elif self._take_probe(ticket):
            self._transition(BreakerState.CLOSED)

    def record_failure(self, ticket: Ticket, retry_after: float | None = None) -> None:
        """The provider failed the request; may open the breaker.

        ``retry_after`` (the server's hint, seconds) lengthens the cooldown of an
        opening caused by this failure when it is longer than ``cooldown``.
        """
        if ticket is self._closed_ticket and self._state is BreakerState.CLOSED:
            self._consecutive += 1
            self._add(ok=False)
            total = self._total_ok + self._total_fail
            if self._consecutive >= self._failure_threshold or (
                total >= self._min_requests and self._total_fail > self._failure_rate * total
            ):
                self._open(retry_after)
        elif self._take_probe(ticket):
            self._open(retry_after)

    def release(self, ticket: Ticket) -> bool:
        """The call ended with no verdict (cancelled, client error): free a probe slot.

        Returns whether a probe slot was freed (someone waiting for one may go).
        """
        return self._take_probe(ticket)

    def trip(self, ticket: Ticket, cooldown: float) -> Trip:
        """Take the model out for ``cooldown`` seconds whatever the counts (the failure
        policy's COOLDOWN: a rejected key, an exhausted quota).

        Open already: it stays open at least ``cooldown`` from now. Otherwise a
        verdict on a call admitted before the breaker last changed state is stale
        and ignored.
        """
        self._take_probe(ticket)
        now = self._clock()
        if self.state is BreakerState.OPEN:
            self._reopens_at = max(self._reopens_at, now + cooldown)
            return Trip.EXTENDED
        if ticket.epoch != self._epoch:
            return Trip.STALE
        self._opened_at = now
        self._reopens_at = now + cooldown
        self._times_opened += 1
        self._transition(BreakerState.OPEN)
        return Trip.OPENED

    @property
    def probing(self) -> bool:
        """Half-open with every probe slot taken: the next state is the probes' verdict."""
        return self.state is BreakerState.HALF_OPEN and len(self._live_probes) >= self._probes

    def snapshot(self) -> dict[str, Any]:
        """Counters for monitoring; reading it may half-open an expired open breaker."""
        state = self.state
        if state is BreakerState.CLOSED:
            self._advance(int(self._clock() * self._inv_width))
        return {
            "name": self.name,
            "state": state.value,
            "consecutive_failures": self._consecutive,
            "window_successes": self._total_ok,
            "window_failures": self._total_fail,
            "opened_at": self._opened_at,
            "reopens_at": self._reopens_at if state is BreakerState.OPEN else None,
            "times_opened": self._times_opened,
            "probes_in_flight": len(self._live_probes),
        }

    # -- internals -------------------------------------------------------------

    def _take_probe(self, ticket: Ticket) -> bool:
        """Resolve ``ticket`` if it is a probe still in flight in this half-open period."""
        if ticket.probe and ticket.serial in self._live_probes:
            self._live_probes.discard(ticket.serial)
            return True
        return False

    def _open(self, retry_after: float | None) -> None:
        now = self._clock()
        wait = self._cooldown
        if retry_after is not None and retry_after > wait and math.isfinite(retry_after):
            wait = retry_after
        self._opened_at = now
        self._reopens_at = now + wait
        self._times_opened += 1
        self._transition(BreakerState.OPEN)

    def _transition(self, new: BreakerState) -> None:
        old = self._state
        self._state = new
        self._epoch += 1
        self._live_probes.clear()
        if new is BreakerState.CLOSED:
            self._closed_ticket = Ticket(self._epoch, False)
            self._consecutive = 0
            self._clear_window()
        if self._on_transition is not None:
            self._on_transition(self.name, old, new)

    def _add(self, *, ok: bool) -> None:
        index = int(self._clock() * self._inv_width)
        if index != self._head:
            self._advance(index)
        slot = self._head % _BUCKETS
        if ok:
            self._buckets_ok[slot] += 1
            self._total_ok += 1
        else:
            self._buckets_fail[slot] += 1
            self._total_fail += 1

    def _advance(self, index: int) -> None:
        """Move the window head to bucket ``index``, dropping buckets that fell out."""
        if index <= self._head:
            return  # same bucket, or a clock that went backwards: keep the current one
        if index - self._head >= _BUCKETS:
            self._clear_window()
        else:
            # Each slot entered now last held bucket ``i - _BUCKETS``, outside the window.
            ok, fail = self._buckets_ok, self._buckets_fail
            for i in range(self._head + 1, index + 1):
                slot = i % _BUCKETS
                self._total_ok -= ok[slot]
                self._total_fail -= fail[slot]
                ok[slot] = fail[slot] = 0
        self._head = index

    def _clear_window(self) -> None:
        for slot in range(_BUCKETS):
            self._buckets_ok[slot] = self._buckets_fail[slot] = 0
        self._total_ok = self._total_fail = 0
