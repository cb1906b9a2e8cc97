"""The router: pick a model, pass its breaker and rate limits, retry, fall back.

For each request the strategy orders the models; the router walks that order.
Each failed call is settled by the failure policy (:mod:`._policy`, one table):
retry here, fall back, take the deployment out for a cooldown, fail this input,
or stop the job. When no deployment can take a request now (breakers open,
half-open probes in flight, a long Retry-After), the request waits, within its
deadline, until one can: woken by any change of a breaker's state or at the
earliest reopening (with jitter, so waiters do not come back as one herd).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import anyio

from .._budget import BudgetAccount, Hold, failed_call_charge
from .._exceptions import (
    APIConnectionError,
    APITimeoutError,
    ConfigurationError,
    ProviderError,
)
from .._log import get_logger
from .._pricing import Prices, prices_for, worst_case_input_tokens, worst_case_output_tokens
from .._spec import ModelSpec
from .._types import ProviderResponse, ProviderStreamEnd, Request, TextDelta, Usage
from ..monitor import Metrics
from ..providers import Provider
from ._backoff import RetryPolicy
from ._breaker import BreakerConfig, BreakerState, CircuitBreaker, Ticket, Trip
from ._policy import (
    REJECTED_AFTER,
    STREAK_KINDS,
    ErrorKind,
    Outcome,
    Situation,
    classify,
    decide,
)
from ._ratelimit import ModelRateLimiter, Reservation
from ._strategy import make_strategy

if TYPE_CHECKING:
    # imported only for types: redis.asyncio loads only for jobs that share limits
    from ._shared_limits import RateLimiter, SharedLimits
    from ._tokens import TokenCounter

__all__ = ["BreakerConfig", "NoModelAvailableError", "Routed", "Router"]

T = TypeVar("T")
_Event = TextDelta | ProviderStreamEnd
_Events = AsyncIterator[_Event]

log = get_logger("agentic_synth.routing")

_EWMA_ALPHA = 0.2
#: A call whose timeout was cut to the request's deadline and that failed this close to
#: it (timers fire a little early or late) ran out of the request's time.
_DEADLINE_SLACK = 0.05
#: Seconds closing one provider's connections may take.
_CLOSE_SECONDS = 5.0
#: ``throttled_until`` of a deployment no 429 has asked to wait.
_NEVER = -math.inf
#: Longest random extra wait (seconds) added to a timed wait for a deployment; the
#: jitter is up to 10% of the wait, so waiters of a long cooldown come back spread out.
_MAX_JITTER = 30.0
#: ``spent`` mark of a deployment a request must not try again (the policy took it
#: out because of this request's answer).
_BARRED = -1
#: Kinds that say nothing about the provider's health: no breaker verdict.
_NO_VERDICT = frozenset(
    {
        ErrorKind.DEADLINE,
        ErrorKind.CLIENT_SIDE,
        ErrorKind.UNREACHABLE,
        # up, but not for this key or prompt: the policy's streak decides, and a probe
        # refused so must not let every waiting request in
        ErrorKind.AUTH,
        ErrorKind.FORBIDDEN,
    }
)
#: Kinds whose COOLDOWN does not bar the deployment for the request that caused it:
#: a host that went away may come back within the request's deadline.
_WAIT_FOR_RETURN = frozenset({ErrorKind.UNREACHABLE})
#: Kinds whose cooldown is ``BreakerConfig.long_cooldown``: nothing changes soon.
_LONG_OUT = frozenset({ErrorKind.QUOTA, ErrorKind.NOT_FOUND, ErrorKind.REDIRECT})
#: What a deployment taken out for each kind cannot do, for messages.
_OUT_REASONS = {
    ErrorKind.AUTH: "its API key was rejected",
    ErrorKind.FORBIDDEN: "every request was refused (403 permission denied)",
    ErrorKind.QUOTA: "its account is out of credit or quota",
    ErrorKind.NOT_FOUND: "the model was not found at its base URL",
    ErrorKind.REDIRECT: "its base URL redirects elsewhere",
    ErrorKind.UNREACHABLE: "its host cannot be reached",
}


class NoModelAvailableError(ProviderError):
    """Every model is out of rotation (breakers open past the deadline)."""

    retryable = True


@dataclass(slots=True)
class Routed:
    """Which model answered, after how many attempts and fallbacks."""

    model: str
    attempts: int
    fallbacks: tuple[str, ...]
    response: ProviderResponse | None = None
    #: USD the successful call cost (``None``: the model has no known price).
    cost: float | None = None


class _Slot:
    """One model deployment and its health, limits and load."""

    __slots__ = (
        "breaker",
        "in_flight",
        "last_error",
        "latency_per_token",
        "limiter",
        "marked",
        "name",
        "out_kind",
        "out_strikes",
        "prices",
        "provider",
        "reported",
        "semaphore",
        "served",
        "spec",
        "streak_since",
        "streaks",
        "throttled_until",
        "weight",
    )

    def __init__(
        self,
        spec: ModelSpec,
        provider: Provider,
        breaker: CircuitBreaker,
        limiter: RateLimiter | None,
    ) -> None:
        self.spec = spec
        self.provider = provider
        self.name = spec.name
        self.weight = spec.weight
        self.breaker = breaker
        self.limiter = limiter
        #: USD per token of every kind (``None``: unknown, the cost is not counted).
        self.prices: Prices | None = prices_for(spec)
        self.semaphore = anyio.Semaphore(spec.max_in_flight) if spec.max_in_flight else None
        self.in_flight = 0
        self.latency_per_token: float | None = None
        #: Whether it answered any request since the engine opened.
        self.served = False
        #: Whether a success must reset something (streaks, out_kind, never served):
        #: one flag read on the hot path instead of several.
        self.marked = True
        #: Failures in a row of the kinds the policy counts (STREAK_KINDS), no success between.
        self.streaks: dict[ErrorKind, int] = {}
        #: When each of those runs started.
        self.streak_since: dict[ErrorKind, float] = {}
        #: Whether its host was reported unreachable (once, until it answers again).
        self.reported = False
        #: Why the policy last took it out of rotation (cleared by a success), and how
        #: many times in a row for that reason.
        self.out_kind: ErrorKind | None = None
        self.out_strikes = 0
        #: A 429 asked to wait until then (long Retry-After): other deployments go first.
        self.throttled_until = _NEVER
        self.last_error: ProviderError | None = None

    def available(self, now: float) -> bool:
        """Whether a request could be admitted now (without taking anything)."""
        if self.throttled_until > now:
            return False
        state = self.breaker.state
        return state is BreakerState.CLOSED or (
            state is BreakerState.HALF_OPEN and not self.breaker.probing
        )

    def rejected(self) -> bool:
        """Out of rotation for a reason that means it cannot serve this job (see
        :data:`._policy.REJECTED_AFTER`)."""
        kind = self.out_kind
        if kind is None or kind not in REJECTED_AFTER:
            return False
        limit = REJECTED_AFTER[kind]
        return not self.served or (limit is not None and self.out_strikes >= limit)


class _Admission:
    __slots__ = ("hold", "reservation", "slot", "started", "ticket")

    def __init__(
        self,
        slot: _Slot,
        ticket: Ticket,
        reservation: Reservation | None,
        started: float,
        hold: Hold | None,
    ) -> None:
        self.slot = slot
        self.ticket = ticket
        self.reservation = reservation
        self.started = started
        #: The budget's reservation of this call's worst-case cost.
        self.hold = hold


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
        budget: BudgetAccount | None = None,
        shared_limits: SharedLimits | None = None,
    ) -> None:
        if not models:
            raise ConfigurationError("the router needs at least one model")
        if deadline is not None and not (deadline > 0 and math.isfinite(deadline)):
            raise ConfigurationError(
                f"deadline must be a positive number of seconds or None, got {deadline!r}"
            )
        if breaker is not None and not isinstance(breaker, BreakerConfig):
            raise ConfigurationError("breaker must be a BreakerConfig(...)")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigurationError("retry must be a RetryPolicy(...)")
        self._metrics = metrics
        self._clock = clock
        self._sleep = sleep
        self._retry = retry or RetryPolicy()
        self._deadline = deadline
        self._rng = rng or random.Random()
        self._strategy = make_strategy(strategy, rng=self._rng)
        self.strategy = strategy
        self._config = cfg = breaker or BreakerConfig()
        self._tokens = token_counter
        self._budget = budget
        #: Set (and replaced) whenever any breaker changes state or frees a probe slot.
        self._changed = anyio.Event()
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
                        **cfg.breaker_settings(),
                        clock=clock,
                        on_transition=self._on_transition,
                    ),
                    (
                        shared_limits.limiter(spec)  # one limit for every process
                        if shared_limits is not None
                        else ModelRateLimiter(
                            spec.rpm, spec.input_tpm, spec.output_tpm, clock=clock, sleep=sleep
                        )
                    )
                    if limited
                    else None,
                )
            )
        self.transitions: list[tuple[float, str, str, str]] = []
        #: While no deployment can serve before a request's deadline: new inputs wait
        #: (see :meth:`admit`) instead of each failing at once.
        self._paused_until = _NEVER
        metrics.model_probes.append(self._model_state)
        providers = list({id(s.provider): s.provider for s in self._slots}.values())
        metrics.pool_probe = lambda: sum(
            float(getattr(p, "pool_wait_seconds", 0.0)) for p in providers
        )

    # -- introspection -------------------------------------------------------------

    @property
    def model_names(self) -> list[str]:
        return [s.name for s in self._slots]

    def breaker_state(self, model: str) -> BreakerState:
        return next(s.breaker.state for s in self._slots if s.name == model)

    def _on_transition(self, name: str, old: BreakerState, new: BreakerState) -> None:
        self.transitions.append((self._clock(), name, str(old), str(new)))
        log.warning("breaker_transition", model=name, old=str(old), new=str(new))
        self._notify()

    def _notify(self) -> None:
        """Wake every request waiting for a deployment to become available."""
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    def _model_state(self) -> dict[str, dict[str, Any]]:
        state: dict[str, dict[str, Any]] = {}
        now = self._clock()
        for s in self._slots:
            entry: dict[str, Any] = {
                "breaker": s.breaker.snapshot(),
                "in_flight": s.in_flight,
                "out_of_rotation": None if s.out_kind is None else str(s.out_kind),
                "rejected": s.rejected(),
                "throttled_for": max(0.0, s.throttled_until - now) or None,
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

    async def _hold(self, budget: BudgetAccount, amount: float) -> Hold:
        """Reserve ``amount`` when it does not fit at once: wait while other calls may
        settle; BudgetExceededError when it cannot fit."""
        waiting_since = self._clock()
        hold = await budget.reserve(amount)
        if self._metrics.detailed:
            self._metrics.waited("budget", self._clock() - waiting_since)
        return hold

    async def _admit(self, slot: _Slot, request: Request, progress: _Progress) -> _Admission:
        if slot.throttled_until != _NEVER and slot.throttled_until > self._clock():
            raise _Refused
        hold = None
        budget = self._budget
        if budget is not None:  # the call's worst case at this deployment's prices
            prices = slot.prices
            assert prices is not None
            amount = prices.worst_case(
                worst_case_input_tokens(request), worst_case_output_tokens(request)
            )
            hold = budget.try_reserve(amount) or await self._hold(budget, amount)
        ticket = slot.breaker.try_acquire()
        if ticket is None:
            if hold is not None:
                self._budget.release(hold)  # type: ignore[union-attr]
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
                waiting_since = self._clock()
                remaining = progress.deadline_at - waiting_since
                with anyio.move_on_after(remaining) as scope:
                    if limiter is not None and reservation is None:
                        reservation = await limiter.acquire(tokens_in, request.max_tokens)
                    if semaphore is not None and not acquired:
                        await semaphore.acquire()
                        acquired = True
                if self._metrics.detailed:
                    self._metrics.waited("rate_limit", self._clock() - waiting_since)
                if scope.cancelled_caught:
                    raise APITimeoutError(
                        "request deadline passed while waiting for the client-side rate "
                        "limit or max_in_flight of the model; raise the limits or the deadline",
                        model=slot.name,
                    )
        except BaseException:
            self._release_ticket(slot, ticket)
            if reservation is not None and slot.limiter is not None:
                slot.limiter.release(reservation)
            if acquired and slot.semaphore is not None:
                slot.semaphore.release()
            if hold is not None:
                self._budget.release(hold)  # type: ignore[union-attr]
            raise
        slot.in_flight += 1
        return _Admission(slot, ticket, reservation, self._clock(), hold)

    def _release_ticket(self, slot: _Slot, ticket: Ticket) -> None:
        if slot.breaker.release(ticket):
            self._notify()  # a probe slot is free: a waiting request may take it

    def _leave(self, adm: _Admission) -> None:
        adm.slot.in_flight -= 1
        if adm.slot.semaphore is not None:
            adm.slot.semaphore.release()

    def _succeeded(
        self, adm: _Admission, usage: Usage, headers: Any, streamed_latency: float | None = None
    ) -> float | None:
        """Account for a successful call; returns its cost (``None``: unknown)."""
        slot = adm.slot
        self._leave(adm)
        slot.breaker.record_success(adm.ticket)
        if slot.marked:  # a failure left a mark (or it never served): wipe it
            slot.marked = False
            slot.served = True
            slot.streaks.clear()
            slot.streak_since.clear()
            slot.out_kind = None
            slot.out_strikes = 0
            slot.reported = False
        latency = self._clock() - adm.started if streamed_latency is None else streamed_latency
        if slot.limiter is not None:
            if adm.reservation is not None:
                # tokens read from the provider's prompt cache do not count toward the
                # input-tokens-per-minute limit of current models
                slot.limiter.reconcile(
                    adm.reservation,
                    usage.output_tokens,
                    actual_input_tokens=usage.input_tokens - usage.cache_read_input_tokens,
                )
            if headers:
                slot.limiter.update_from_headers(headers)
        per_token = latency / max(1, usage.output_tokens)
        prev = slot.latency_per_token
        slot.latency_per_token = (
            per_token if prev is None else prev + _EWMA_ALPHA * (per_token - prev)
        )
        prices = slot.prices
        cost = None if prices is None else prices.cost(usage)
        if adm.hold is not None:
            self._budget.settle(adm.hold, cost)  # type: ignore[union-attr]
        self._metrics.attempt_succeeded(
            slot.name, latency, usage.input_tokens, usage.output_tokens, cost
        )
        return cost

    def _abandoned(self, adm: _Admission) -> None:
        """The call ended with no verdict on the model (cancelled, closed early)."""
        self._leave(adm)
        self._release_ticket(adm.slot, adm.ticket)
        if adm.hold is not None:
            # it may have been sent and answered: charged at its worst case
            self._budget.settle(adm.hold, None)  # type: ignore[union-attr]

    def _book_failure(
        self,
        adm: _Admission,
        exc: ProviderError,
        kind: ErrorKind,
        billed: Literal["none", "unknown"] | None = None,
    ) -> None:
        """Account for a failed call: limits, streaks, metrics. The breaker's verdict
        is given apart (:meth:`_breaker_verdict`), once the policy has decided."""
        slot = adm.slot
        self._leave(adm)
        slot.marked = True
        exc.model = exc.model or slot.name
        slot.last_error = exc
        if adm.hold is not None:
            budget = self._budget
            assert budget is not None
            charge = failed_call_charge(exc) if billed is None else billed
            budget.settle(adm.hold, 0.0 if charge == "none" else None)
        self._metrics.attempt_failed(slot.name, exc, self._clock() - adm.started)
        limiter = slot.limiter
        if limiter is not None:
            if kind is ErrorKind.THROTTLED:
                # with the reservation, 429s of calls sent before the last cut do not cut again
                limiter.on_rate_limited(adm.reservation, retry_after=exc.retry_after)
            if exc.headers:
                limiter.update_from_headers(exc.headers)
            if adm.reservation is not None:
                limiter.release(adm.reservation)
        if (
            kind is ErrorKind.THROTTLED
            and exc.retry_after is not None
            and exc.retry_after > self._retry.fallback_after
        ):
            # a long wait asked for: new requests go elsewhere until then
            until = self._clock() + exc.retry_after
            if until > slot.throttled_until:
                slot.throttled_until = until
                log.warning("model_throttled", model=slot.name, seconds=exc.retry_after)
        if kind in STREAK_KINDS:
            count = slot.streaks.get(kind, 0)
            if not count:
                slot.streak_since[kind] = self._clock()
            slot.streaks[kind] = count + 1
        if kind is ErrorKind.UNREACHABLE and not slot.reported:
            slot.reported = True  # one clear line per host, at once
            log.error("model_unreachable", model=slot.name, error=exc.message)

    def _breaker_verdict(self, adm: _Admission, exc: ProviderError, kind: ErrorKind) -> None:
        """Tell the breaker what the failed call says about the provider's health."""
        breaker = adm.slot.breaker
        if kind in _NO_VERDICT:
            # our own budget ran out, or the host's reachability is judged by the
            # failure policy's streak instead of the breaker
            self._release_ticket(adm.slot, adm.ticket)
        elif exc.provider_fault:
            breaker.record_failure(adm.ticket, exc.retry_after)
        elif exc.status is not None and kind is not ErrorKind.DO_NOT_RETRY:
            # it answered (a 4xx, a 429): the server is up, whatever it thought of this
            # request. A probe answered so closes the breaker.
            breaker.record_success(adm.ticket)
        else:
            self._release_ticket(adm.slot, adm.ticket)

    def _situation(
        self,
        slot: _Slot,
        kind: ErrorKind,
        exc: ProviderError,
        tries: int,
        progress: _Progress,
        tried: Sequence[str],
    ) -> tuple[Situation, float | None]:
        """Where this failure leaves the request; with the retry delay when one applies."""
        now = self._clock()
        field = STREAK_KINDS.get(kind)
        if field is not None and slot.streaks.get(kind, 0) >= getattr(self._config, field):
            span = now - slot.streak_since.get(kind, now)
            if kind is not ErrorKind.UNREACHABLE or span >= self._config.unreachable_after:
                return Situation.REPEATED, None
        delay = self._retry.delay(tries, exc.retry_after, elapsed=now - progress.started)
        if (
            delay is None
            or now + delay > progress.deadline_at
            or slot.breaker.state is BreakerState.OPEN
        ):
            return Situation.NO_RETRY_HERE, None
        if delay > self._retry.fallback_after and any(
            other is not slot and other.name not in tried and other.available(now)
            for other in self._slots
        ):
            return Situation.RETRY_LATER, delay
        return Situation.RETRY_SOON, delay

    def _take_out(self, slot: _Slot, ticket: Ticket, kind: ErrorKind, exc: ProviderError) -> None:
        """The policy's COOLDOWN: open the deployment's breaker for the kind's cooldown."""
        cfg = self._config
        cooldown = cfg.long_cooldown if kind in _LONG_OUT else cfg.cooldown
        if exc.retry_after is not None and math.isfinite(exc.retry_after):
            cooldown = max(cooldown, exc.retry_after)
        trip = slot.breaker.trip(ticket, cooldown)
        if trip is Trip.STALE:
            return  # admitted before the breaker last changed: a newer verdict stands
        # the next run of this kind starts afresh (one blocked prompt after the
        # cooldown is not a second strike)
        slot.streaks.pop(kind, None)
        if trip is Trip.EXTENDED and slot.out_kind is kind:
            return  # a call of the same wave got here first
        slot.out_strikes = slot.out_strikes + 1 if slot.out_kind is kind else 1
        slot.out_kind = kind
        log.error(
            "model_out_of_rotation",
            model=slot.name,
            reason=_OUT_REASONS.get(kind, str(kind)),
            cooldown=cooldown,
            error=exc.message,
            status=exc.status,
        )

    def _stop_error(self, exc: ProviderError) -> ConfigurationError:
        lines = [
            f"{s.name}: {_OUT_REASONS.get(s.out_kind, 'out') if s.out_kind else 'out'}"
            + (f" ({s.last_error})" if s.last_error is not None else "")
            for s in self._slots
        ]
        return ConfigurationError(
            "no model can serve this job: "
            + "; ".join(lines)
            + ". Check the API keys (ANTHROPIC_API_KEY / OPENAI_API_KEY or ModelSpec(api_key=)), "
            "billing, model names and base URLs. Stopping instead of failing every input."
        )

    def _after_failure(
        self,
        adm: _Admission,
        exc: ProviderError,
        tries: int,
        progress: _Progress,
        spent: dict[str, tuple[int, bool]],
        tried: Sequence[str],
        *,
        cut_short: bool,
    ) -> float | None:
        """Settle a failed call by the failure policy: the delay before retrying this
        deployment, or None to move on to the next. Raises when the input (FAIL_INPUT)
        or the job (STOP_JOB) must end here."""
        slot = adm.slot
        kind = classify(exc, cut_short=cut_short)
        self._book_failure(adm, exc, kind)
        progress.last_error = exc
        situation, delay = self._situation(slot, kind, exc, tries, progress, tried)
        outcome = decide(kind, situation)
        if outcome is Outcome.COOLDOWN:
            self._take_out(slot, adm.ticket, kind, exc)
            if kind not in _WAIT_FOR_RETURN:
                spent[slot.name] = (_BARRED, False)
            if all(s.rejected() for s in self._slots):
                outcome = decide(kind, Situation.EVERY_DEPLOYMENT)
        else:
            self._breaker_verdict(adm, exc, kind)
        if outcome is Outcome.RETRY:
            return delay
        if outcome is Outcome.FAIL_INPUT:
            raise exc
        if outcome is Outcome.STOP_JOB:
            raise self._stop_error(exc) from exc
        return None  # FALLBACK, or COOLDOWN then fall back

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

    def _eligible(self, slot: _Slot, spent: dict[str, tuple[int, bool]], now: float) -> bool:
        """Whether the request may try ``slot`` (again): never tried, or given up on
        while it was unavailable and something has changed since."""
        given_up = spent.get(slot.name)
        if given_up is None:
            return True
        epoch, was_unavailable = given_up
        if epoch == _BARRED:
            return False
        return slot.breaker.epoch != epoch or (was_unavailable and slot.available(now))

    def _next_wake(
        self, now: float, spent: dict[str, tuple[int, bool]] | None
    ) -> tuple[bool, float, bool]:
        """``(available now, earliest time one may be, a probe's verdict is pending)``."""
        wake = math.inf
        probing = False
        for slot in self._slots:
            if spent is not None and spent.get(slot.name, (0, False))[0] == _BARRED:
                continue
            if slot.available(now):
                if spent is None or self._eligible(slot, spent, now):
                    return True, now, False  # freed while we walked the list: go again now
                continue  # tried and given up on, and nothing changed: no use waiting
            if slot.throttled_until > now:
                wake = min(wake, slot.throttled_until)
            reopen = slot.breaker.reopens_at()
            if reopen is not None:
                wake = min(wake, max(reopen, slot.throttled_until))
            elif slot.breaker.probing:
                probing = True  # its probe's verdict will wake us
        return False, wake, probing

    async def _wait_for_a_deployment(
        self, progress: _Progress, spent: dict[str, tuple[int, bool]]
    ) -> bool:
        """Wait until some deployment may take the request: woken by any breaker change
        (a probe's verdict) or at the earliest reopening, plus jitter. False when none
        can before the request's deadline."""
        now = self._clock()
        if now >= progress.deadline_at:
            return False
        ready, wake, probing = self._next_wake(now, spent)
        if ready:
            return True
        if not probing and (math.isinf(wake) or wake > progress.deadline_at):
            if math.isfinite(wake) and not any(s.available(now) for s in self._slots):
                self._pause(wake)
            return False
        seconds = min(wake, progress.deadline_at) - now
        if wake <= progress.deadline_at:
            seconds += self._rng.uniform(0.0, min(_MAX_JITTER, 0.1 * seconds))
        await self._wait_changed(max(0.0, seconds))
        return True

    def _pause(self, until: float) -> None:
        """No deployment can serve before requests' deadlines: hold new inputs."""
        if until > self._paused_until:
            if self._paused_until == _NEVER:
                log.error(
                    "job_paused",
                    seconds=round(until - self._clock(), 1),
                    reason="no model can take requests before their deadline; new inputs "
                    "wait until one can (in-flight requests end with their errors)",
                )
            self._paused_until = until

    def admit(self) -> Awaitable[None] | None:
        """The scheduler's gate before each new input: ``None`` (go) unless the job is
        paused (no deployment can serve before a request's deadline); then an
        awaitable that waits, so a long outage costs at most ``max_concurrency``
        failed inputs instead of failing every one."""
        if self._paused_until == _NEVER:
            return None  # the hot path: no coroutine per input
        return self._wait_unpaused()

    async def _wait_unpaused(self) -> None:
        while self._paused_until != _NEVER:
            now = self._clock()
            ready, wake, _ = self._next_wake(now, None)
            if ready or now >= self._paused_until:
                self._paused_until = _NEVER
                if ready:
                    log.warning("job_resumed")
                return
            await self._wait_changed(min(wake, self._paused_until) - now)

    async def _wait_changed(self, seconds: float) -> None:
        """Sleep ``seconds`` (on the router's clock), or less if a breaker changes."""
        changed = self._changed
        async with anyio.create_task_group() as tg:

            async def timer() -> None:
                await self._sleep(seconds)
                tg.cancel_scope.cancel()

            tg.start_soon(timer)
            await changed.wait()
            tg.cancel_scope.cancel()

    def _give_up(self, routed: Routed, progress: _Progress) -> ProviderError:
        error = progress.last_error
        if error is None:
            now = self._clock()
            states = []
            for s in self._slots:
                reopen = s.breaker.reopens_at()
                state = s.breaker.state.value
                if s.out_kind is not None:
                    state += f" ({_OUT_REASONS.get(s.out_kind, s.out_kind)})"
                if reopen is not None:
                    state += f", reopens in {max(0.0, reopen - now):.0f} s"
                if s.throttled_until > now:
                    state += f", throttled for {s.throttled_until - now:.0f} s"
                states.append(f"{s.name}: {state}")
            error = NoModelAvailableError(
                "no model could take the request before its deadline ("
                + "; ".join(states)
                + "); raise Synth(deadline=...) or add a fallback model"
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
        #: deployments given up on: (breaker epoch, was it unavailable) at that moment
        spent: dict[str, tuple[int, bool]] = {}
        while True:
            for index in self._strategy(self._slots):
                slot = self._slots[index]
                if spent and not self._eligible(slot, spent, self._clock()):
                    continue
                tries = 0
                while True:
                    try:
                        adm = await self._admit(slot, request, progress)
                    except _Refused:
                        self._metrics.breaker_rejections += 1
                        break
                    except ProviderError as exc:  # the deadline passed while waiting
                        exc.attempts = routed.attempts
                        routed.fallbacks = tuple(fallbacks)
                        raise
                    try:
                        # after admission: time spent waiting for limits counts too
                        call = self._with_deadline(slot, request, progress)
                    except BaseException:
                        self._abandoned(adm)
                        raise
                    tries += 1
                    routed.attempts += 1
                    try:
                        value = await attempt(slot, call)
                    except ProviderError as exc:
                        try:
                            delay = self._after_failure(
                                adm,
                                exc,
                                tries,
                                progress,
                                spent,
                                fallbacks,
                                cut_short=call is not request
                                and self._clock() >= progress.deadline_at - _DEADLINE_SLACK,
                            )
                        except BaseException as final:
                            if isinstance(final, ProviderError):
                                final.attempts = routed.attempts
                            routed.fallbacks = tuple(fallbacks)
                            raise
                        if delay is None:
                            break
                        self._metrics.retries += 1
                        backoff_since = self._clock()
                        await self._sleep(delay)
                        if self._metrics.detailed:
                            self._metrics.waited("backoff", self._clock() - backoff_since)
                        continue
                    except BaseException:
                        self._abandoned(adm)
                        raise
                    if slot.name in fallbacks:  # back to a model it had given up on
                        fallbacks.remove(slot.name)
                    if fallbacks:
                        self._metrics.fallbacks += 1
                    routed.model = slot.name
                    routed.fallbacks = tuple(fallbacks)
                    return adm, value
                if tries:
                    if slot.name not in fallbacks:
                        fallbacks.append(slot.name)
                    if spent.get(slot.name, (0, False))[0] != _BARRED:
                        spent[slot.name] = (slot.breaker.epoch, not slot.available(self._clock()))
            waiting_since = self._clock()
            found = await self._wait_for_a_deployment(progress, spent)
            if self._metrics.detailed:
                self._metrics.waited("breaker", self._clock() - waiting_since)
            if not found:
                routed.fallbacks = tuple(fallbacks)
                raise self._give_up(routed, progress)

    async def complete(self, request: Request) -> Routed:
        """Send ``request`` and return the answer with how it was obtained."""
        routed = Routed(model="", attempts=0, fallbacks=())

        async def attempt(slot: _Slot, call: Request) -> ProviderResponse:
            return await slot.provider.complete(slot.spec.model, call)

        adm, response = await self._drive(request, routed, attempt)
        routed.cost = self._succeeded(adm, response.usage, response.headers)
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
        clock = self._clock
        consumer = 0.0  # time suspended at ``yield``: the reader's, not the provider's
        try:
            async with aclosing(events):  # type: ignore[type-var]
                while True:
                    if isinstance(event, ProviderStreamEnd):
                        settled = True
                        attempt_time = clock() - adm.started - consumer
                        routed.cost = self._succeeded(adm, event.usage, event.headers, attempt_time)
                        yield event
                        return
                    handed = clock()
                    yield event
                    consumer += clock() - handed
                    try:
                        event = await anext(events)
                    except StopAsyncIteration:
                        raise APIConnectionError(
                            "the stream ended without its final event", model=adm.slot.name
                        ) from None
        except ProviderError as exc:
            if not settled:
                settled = True
                # book the failure (breaker, limits); text was delivered: no retry. The
                # model was generating: it may bill what it made, whatever the error
                kind = classify(exc)
                self._book_failure(adm, exc, kind, billed="unknown")
                self._breaker_verdict(adm, exc, kind)
            exc.attempts = routed.attempts
            raise
        finally:
            if not settled:
                self._abandoned(adm)

    async def flush_limits(self) -> None:
        """Send what shared limiters still owe their store (reconciled usage, cuts)."""
        for slot in self._slots:
            flush = getattr(slot.limiter, "flush", None)
            if flush is not None:
                await flush()

    async def aclose(self) -> None:
        """Close every provider at once, each bounded in time (one that hangs cannot
        keep the others open)."""
        if self._model_state in self._metrics.model_probes:
            self._metrics.model_probes.remove(self._model_state)
        providers = list({id(s.provider): s.provider for s in self._slots}.values())

        async def close(provider: Provider) -> None:
            with anyio.move_on_after(_CLOSE_SECONDS, shield=True):
                await provider.aclose()

        async with anyio.create_task_group() as tg:
            for provider in providers:
                tg.start_soon(close, provider)
