"""The router: pick a model, pass its breaker and rate limits, retry, fall back.

For each request the strategy orders the models; the router walks that order.
On one model it retries retryable failures with capped, jittered backoff
(honouring Retry-After) until the retry policy or the request deadline says
stop, or the model's breaker opens; then it falls back to the next model.
Client errors (400, 404, 413, 422) fail the request at once; a 401/403 takes
that deployment out of rotation, and when every deployment has rejected its
key the job stops with a configuration error. When every breaker is open the
request waits for the earliest reopening instead of failing, within its deadline.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from .._exceptions import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    ConfigurationError,
    ProviderError,
    RateLimitedError,
)
from .._log import get_logger
from .._spec import ModelSpec
from .._types import ProviderResponse, ProviderStreamEnd, Request, TextDelta, Usage
from ..monitor import Metrics
from ..providers import Provider
from ._backoff import RetryPolicy
from ._breaker import BreakerState, CircuitBreaker, Ticket
from ._ratelimit import ModelRateLimiter, Reservation
from ._strategy import make_strategy

if TYPE_CHECKING:
    from ._tokens import TokenCounter

__all__ = ["BreakerConfig", "NoModelAvailableError", "Routed", "Router"]

T = TypeVar("T")
_Event = TextDelta | ProviderStreamEnd
_Events = AsyncIterator[_Event]

log = get_logger("agentic_synth.routing")

_EWMA_ALPHA = 0.2


class NoModelAvailableError(ProviderError):
    """Every model is out of rotation (breakers open past the deadline)."""

    retryable = True


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """Circuit breaker settings, applied to every model."""

    failure_threshold: int = 5
    failure_rate: float = 0.5
    window: float = 60.0
    min_requests: int = 20
    cooldown: float = 60.0
    half_open_probes: int = 1


@dataclass(slots=True)
class Routed:
    """Which model answered, after how many attempts and fallbacks."""

    model: str
    attempts: int
    fallbacks: tuple[str, ...]
    response: ProviderResponse | None = None


class _Slot:
    """One model deployment and its health, limits and load."""

    __slots__ = (
        "breaker",
        "disabled",
        "in_flight",
        "latency_per_token",
        "limiter",
        "name",
        "provider",
        "semaphore",
        "spec",
        "weight",
    )

    def __init__(
        self,
        spec: ModelSpec,
        provider: Provider,
        breaker: CircuitBreaker,
        limiter: ModelRateLimiter | None,
    ) -> None:
        self.spec = spec
        self.provider = provider
        self.name = spec.name
        self.weight = spec.weight
        self.breaker = breaker
        self.limiter = limiter
        self.semaphore = anyio.Semaphore(spec.max_in_flight) if spec.max_in_flight else None
        self.in_flight = 0
        self.latency_per_token: float | None = None
        self.disabled = False


class _Admission:
    __slots__ = ("reservation", "slot", "started", "ticket")

    def __init__(
        self, slot: _Slot, ticket: Ticket, reservation: Reservation | None, started: float
    ) -> None:
        self.slot = slot
        self.ticket = ticket
        self.reservation = reservation
        self.started = started


class _Refused(Exception):
    """The model's breaker did not admit the call."""


class _Progress:
    """Per-request bookkeeping across attempts and fallbacks."""

    __slots__ = ("deadline_at", "last_error", "started")

    def __init__(self, started: float, deadline: float | None) -> None:
        self.started = started
        self.deadline_at = math.inf if deadline is None else started + deadline
        self.last_error: ProviderError | None = None


class Router:
    def __init__(
        self,
        models: Sequence[tuple[ModelSpec, Provider]],
        *,
        metrics: Metrics,
        strategy: str = "priority",
        retry: RetryPolicy | None = None,
        breaker: BreakerConfig | None = None,
        deadline: float | None = 300.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        token_counter: TokenCounter | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not models:
            raise ConfigurationError("the router needs at least one model")
        if deadline is not None and not (deadline > 0 and math.isfinite(deadline)):
            raise ConfigurationError(
                f"deadline must be a positive number of seconds or None, got {deadline!r}"
            )
        self._metrics = metrics
        self._clock = clock
        self._sleep = sleep
        self._retry = retry or RetryPolicy()
        self._deadline = deadline
        self._strategy = make_strategy(strategy, rng=rng)
        self.strategy = strategy
        cfg = breaker or BreakerConfig()
        self._tokens = token_counter
        self._slots: list[_Slot] = []
        for spec, provider in models:
            limited = spec.rpm or spec.input_tpm or spec.output_tpm
            if limited and self._tokens is None and (spec.input_tpm or spec.output_tpm):
                from ._tokens import TokenCounter as _Counter  # loads an encoding: only if needed

                self._tokens = _Counter()
            self._slots.append(
                _Slot(
                    spec,
                    provider,
                    CircuitBreaker(
                        spec.name,
                        **asdict(cfg),
                        clock=clock,
                        on_transition=self._on_transition,
                    ),
                    ModelRateLimiter(
                        spec.rpm, spec.input_tpm, spec.output_tpm, clock=clock, sleep=sleep
                    )
                    if limited
                    else None,
                )
            )
        self.transitions: list[tuple[float, str, str, str]] = []
        metrics.model_probes.append(self._model_state)

    # -- introspection -------------------------------------------------------------

    @property
    def model_names(self) -> list[str]:
        return [s.name for s in self._slots]

    def breaker_state(self, model: str) -> BreakerState:
        return next(s.breaker.state for s in self._slots if s.name == model)

    def _on_transition(self, name: str, old: BreakerState, new: BreakerState) -> None:
        self.transitions.append((self._clock(), name, str(old), str(new)))
        log.warning("breaker_transition", model=name, old=str(old), new=str(new))

    def _model_state(self) -> dict[str, dict[str, Any]]:
        state: dict[str, dict[str, Any]] = {}
        for s in self._slots:
            entry: dict[str, Any] = {
                "breaker": s.breaker.snapshot(),
                "in_flight": s.in_flight,
                "disabled": s.disabled,
                "latency_per_token": s.latency_per_token,
            }
            if s.limiter is not None:
                entry["rate_limits"] = s.limiter.snapshot()
            state[s.name] = entry
        return state

    # -- admission and bookkeeping, shared by complete() and stream() --------------

    def _estimate_input(self, request: Request) -> int:
        if self._tokens is None:
            return 0
        count: int = self._tokens.count_messages(request.messages, request.system)
        return count

    async def _admit(self, slot: _Slot, request: Request, progress: _Progress) -> _Admission:
        ticket = slot.breaker.try_acquire()
        if ticket is None:
            raise _Refused
        reservation: Reservation | None = None
        acquired = False
        try:
            limiter, semaphore = slot.limiter, slot.semaphore
            if limiter is not None:
                tokens_in = self._estimate_input(request)
                reservation = limiter.try_acquire(tokens_in, request.max_tokens)
            if semaphore is not None and semaphore.value > 0:
                semaphore.acquire_nowait()
                acquired = True
            if (limiter is not None and reservation is None) or (
                semaphore is not None and not acquired
            ):
                # must wait: within the request deadline only
                remaining = progress.deadline_at - self._clock()
                with anyio.move_on_after(remaining) as scope:
                    if limiter is not None and reservation is None:
                        reservation = await limiter.acquire(tokens_in, request.max_tokens)
                    if semaphore is not None and not acquired:
                        await semaphore.acquire()
                        acquired = True
                if scope.cancelled_caught:
                    raise APITimeoutError(
                        "request deadline passed while waiting for the client-side rate "
                        "limit or max_in_flight of the model; raise the limits or the deadline",
                        model=slot.name,
                    )
        except BaseException:
            slot.breaker.release(ticket)
            if reservation is not None and slot.limiter is not None:
                slot.limiter.release(reservation)
            if acquired and slot.semaphore is not None:
                slot.semaphore.release()
            raise
        slot.in_flight += 1
        return _Admission(slot, ticket, reservation, self._clock())

    def _leave(self, adm: _Admission) -> None:
        adm.slot.in_flight -= 1
        if adm.slot.semaphore is not None:
            adm.slot.semaphore.release()

    def _succeeded(
        self, adm: _Admission, usage: Usage, headers: Any, streamed_latency: float | None = None
    ) -> None:
        slot = adm.slot
        self._leave(adm)
        slot.breaker.record_success(adm.ticket)
        latency = self._clock() - adm.started
        if slot.limiter is not None:
            if adm.reservation is not None:
                slot.limiter.reconcile(
                    adm.reservation, usage.output_tokens, actual_input_tokens=usage.input_tokens
                )
            if headers:
                slot.limiter.update_from_headers(headers)
        per_token = latency / max(1, usage.output_tokens)
        prev = slot.latency_per_token
        slot.latency_per_token = (
            per_token if prev is None else prev + _EWMA_ALPHA * (per_token - prev)
        )
        spec = slot.spec
        self._metrics.attempt_succeeded(
            slot.name,
            latency,
            usage.input_tokens,
            usage.output_tokens,
            usage.input_tokens * spec.input_price + usage.output_tokens * spec.output_price,
        )

    def _abandoned(self, adm: _Admission) -> None:
        """The call ended with no verdict on the model (cancelled, closed early)."""
        self._leave(adm)
        adm.slot.breaker.release(adm.ticket)

    def _failed(
        self, adm: _Admission, exc: ProviderError, attempt: int, progress: _Progress
    ) -> float | None:
        """Book a failure; return the delay before retrying this model, or None to move on.

        Raises when the request must end here (a client error, or every key rejected).
        """
        slot = adm.slot
        self._leave(adm)
        exc.model = exc.model or slot.name
        progress.last_error = exc
        self._metrics.attempt_failed(slot.name, exc)
        if exc.provider_fault:
            slot.breaker.record_failure(adm.ticket, exc.retry_after)
        else:
            slot.breaker.release(adm.ticket)
        if slot.limiter is not None:
            if isinstance(exc, RateLimitedError):
                # with the reservation, 429s of calls sent before the last cut do not cut again
                slot.limiter.on_rate_limited(adm.reservation)
            if adm.reservation is not None:
                slot.limiter.release(adm.reservation)
        if isinstance(exc, AuthenticationError):
            if not slot.disabled:
                slot.disabled = True
                log.error("model_disabled", model=slot.name, reason=exc.message, status=exc.status)
            if all(s.disabled for s in self._slots):
                raise ConfigurationError(
                    "every model rejected its API key or permissions "
                    f"(last: {exc}); check ANTHROPIC_API_KEY / OPENAI_API_KEY or the api_key "
                    "of each ModelSpec. Stopping instead of failing every input."
                ) from exc
            return None
        if not exc.retryable:
            raise exc
        now = self._clock()
        delay = self._retry.next_delay(attempt, exc, elapsed=now - progress.started)
        if delay is None or now + delay > progress.deadline_at:
            return None
        if slot.breaker.state is BreakerState.OPEN:
            return None
        return delay

    def _with_deadline(self, slot: _Slot, request: Request, progress: _Progress) -> Request:
        """Shrink the per-call timeout when the request deadline is closer."""
        if progress.deadline_at == math.inf:
            return request
        remaining = progress.deadline_at - self._clock()
        timeout = request.timeout or slot.spec.timeout
        if timeout is None or remaining < timeout:
            if remaining <= 0:
                raise APITimeoutError("request deadline passed", model=slot.name)
            return request.with_timeout(remaining)
        return request

    async def _wait_for_reopen(self, progress: _Progress) -> bool:
        """Sleep until the earliest breaker admits probes; False if past the deadline."""
        reopen = [
            t for s in self._slots if not s.disabled and (t := s.breaker.reopens_at()) is not None
        ]
        if not reopen:
            return False
        wake = min(reopen)
        if wake > progress.deadline_at:
            return False
        await self._sleep(max(0.0, wake - self._clock()))
        return True

    def _give_up(self, routed: Routed, progress: _Progress) -> ProviderError:
        error = progress.last_error or NoModelAvailableError(
            "every model's circuit breaker is open and none reopens before the request "
            "deadline; raise Synth(deadline=...) or add a fallback model"
        )
        error.attempts = routed.attempts
        return error

    # -- the two request paths -----------------------------------------------------

    async def _drive(
        self,
        request: Request,
        routed: Routed,
        attempt: Callable[[_Slot, Request], Awaitable[T]],
    ) -> tuple[_Admission, T]:
        """Walk the models in strategy order, retrying and falling back, until
        ``attempt`` returns; the caller settles the returned admission."""
        progress = _Progress(self._clock(), self._deadline)
        fallbacks: list[str] = []
        while True:
            refused = False
            for index in self._strategy(self._slots):
                slot = self._slots[index]
                if slot.disabled:
                    continue
                tries = 0
                while True:
                    try:
                        call = self._with_deadline(slot, request, progress)
                        adm = await self._admit(slot, request, progress)
                    except _Refused:
                        refused = True
                        self._metrics.breaker_rejections += 1
                        break
                    tries += 1
                    routed.attempts += 1
                    try:
                        value = await attempt(slot, call)
                    except ProviderError as exc:
                        try:
                            delay = self._failed(adm, exc, tries, progress)
                        except BaseException:
                            exc.attempts = routed.attempts
                            routed.fallbacks = tuple(fallbacks)
                            raise
                        if delay is None:
                            break
                        self._metrics.retries += 1
                        await self._sleep(delay)
                        continue
                    except BaseException:
                        self._abandoned(adm)
                        raise
                    if fallbacks:
                        self._metrics.fallbacks += 1
                    routed.model = slot.name
                    routed.fallbacks = tuple(fallbacks)
                    return adm, value
                if tries:
                    fallbacks.append(slot.name)
            if not (refused and await self._wait_for_reopen(progress)):
                routed.fallbacks = tuple(fallbacks)
                raise self._give_up(routed, progress)

    async def complete(self, request: Request) -> Routed:
        """Send ``request`` and return the answer with how it was obtained."""
        routed = Routed(model="", attempts=0, fallbacks=())

        async def attempt(slot: _Slot, call: Request) -> ProviderResponse:
            return await slot.provider.complete(slot.spec.model, call)

        adm, response = await self._drive(request, routed, attempt)
        self._succeeded(adm, response.usage, response.headers)
        routed.response = response
        return routed

    async def stream(
        self, request: Request, routed: Routed
    ) -> AsyncIterator[TextDelta | ProviderStreamEnd]:
        """Stream from the first model that starts answering; fill in ``routed``.

        An attempt is "open the stream and receive its first event": a failure
        until then is retried or falls back. After text has been delivered a
        failure is raised, never silently restarted (no duplicate text).
        """

        async def attempt(slot: _Slot, call: Request) -> tuple[_Events, _Event]:
            events = slot.provider.stream(slot.spec.model, call)
            try:
                first = await anext(events)
            except StopAsyncIteration:
                raise APIConnectionError(
                    "the stream ended before its first event", model=slot.name
                ) from None
            except BaseException:
                await events.aclose()  # type: ignore[attr-defined]
                raise
            return events, first

        adm, (events, event) = await self._drive(request, routed, attempt)
        settled = False
        try:
            async with aclosing(events):  # type: ignore[type-var]
                while True:
                    if isinstance(event, ProviderStreamEnd):
                        settled = True
                        self._succeeded(adm, event.usage, event.headers)
                        yield event
                        return
                    yield event
                    try:
                        event = await anext(events)
                    except StopAsyncIteration:
                        raise APIConnectionError(
                            "the stream ended without its final event", model=adm.slot.name
                        ) from None
        except ProviderError as exc:
            if not settled:
                settled = True
                with contextlib.suppress(ProviderError):
                    # book the failure (breaker, limits); text was delivered: no retry
                    self._failed(adm, exc, 1, _Progress(self._clock(), None))
            exc.attempts = routed.attempts
            raise
        finally:
            if not settled:
                self._abandoned(adm)

    async def aclose(self) -> None:
        seen: set[int] = set()
        for slot in self._slots:
            if id(slot.provider) not in seen:
                seen.add(id(slot.provider))
                await slot.provider.aclose()
