"""Rate limits shared by every process and machine of a job, through Redis.

:class:`SharedLimits` holds one Redis connection pool; :meth:`SharedLimits.limiter`
makes a :class:`SharedRateLimiter` per deployment, with the interface of
:class:`~._ratelimit.ModelRateLimiter` so the router can use either. Each
acquire is one Lua script call (:mod:`._shared_script`) covering the requests,
input-token and output-token lanes at once, on the server's clock.

The router settles reservations, 429s and response headers synchronously; those
calls queue a small merged settlement that rides on this client's next script
call, and a background task sends it at once when no acquire comes first.

Fail closed: when Redis is unreachable or refuses scripts (a proxy may disable
EVAL/EVALSHA), :meth:`SharedLimits.open` raises :class:`SharedLimitsUnavailableError`,
and mid-job an acquire keeps trying for ``outage_grace`` seconds without granting
anything, then raises it. Only ``fallback="local"`` runs with per-process limits
instead, and says so in a warning each time Redis goes away.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Mapping
from typing import Any, Literal, Protocol, runtime_checkable
from urllib.parse import urlsplit

import anyio
from redis.exceptions import RedisError, ResponseError

from .._exceptions import ConfigurationError, redact, redact_url
from .._log import get_logger
from .._redis_client import open_redis
from .._spec import ModelSpec
from ._ratelimit import ModelRateLimiter, Reservation, _parse_headers, _reset_seconds
from ._shared_script import LUA, Pending, Reply, decode, encode

__all__ = ["RateLimiter", "SharedLimits", "SharedLimitsUnavailableError", "SharedRateLimiter"]

log = get_logger("agentic_synth.routing")

Fallback = Literal["refuse", "local"]

#: Lane indexes in the script's layout.
_REQUESTS, _INPUT, _OUTPUT = 0, 1, 2
_LANE_NAMES = ("requests", "input_tokens", "output_tokens")
#: Seconds between tries of an acquire while Redis is away (within the grace).
_RETRY_EVERY = 0.1
#: Seconds before a local-fallback limiter asks Redis again; doubles up to the max.
_PROBE_FIRST, _PROBE_MAX = 1.0, 30.0


class SharedLimitsUnavailableError(ConfigurationError):
    """Shared limits cannot be enforced (Redis unreachable or refusing scripts) and
    ``fallback="local"`` was not chosen: the job stops rather than exceed them.

    A :class:`~agentic_synth.ConfigurationError`: the engine stops the job on it.
    """


@runtime_checkable
class RateLimiter(Protocol):
    """What the router calls on a deployment's limiter (local or shared)."""

    @property
    def enabled(self) -> bool: ...

    async def acquire(self, input_tokens: int, output_tokens: int) -> Reservation: ...

    def try_acquire(self, input_tokens: int, output_tokens: int) -> Reservation | None: ...

    def reconcile(
        self,
        reservation: Reservation,
        actual_output_tokens: int,
        actual_input_tokens: int | None = None,
    ) -> None: ...

    def release(self, reservation: Reservation) -> None: ...

    def on_rate_limited(
        self, reservation: Reservation | None = None, *, retry_after: float | None = None
    ) -> None: ...

    def update_from_headers(
        self, headers: Mapping[str, str], *, now: float | None = None
    ) -> None: ...

    def snapshot(self) -> dict[str, Any]: ...


class _SharedReservation(Reservation):
    """A reservation granted by Redis (``acquired_at``: server time of its slot);
    the local fallback's are plain :class:`Reservation` and settle locally."""

    __slots__ = ()


class SharedLimits:
    """One Redis for the limits of every deployment of a job, under ``namespace``.

    Every process of the job must use the same ``url``, ``namespace`` and
    settings (``burst_seconds`` and the AIMD parameters, which mirror
    :class:`ModelRateLimiter`'s). ``fallback="refuse"`` (the default) refuses to
    run without Redis; ``"local"`` then uses per-process limits, loudly.
    ``timeout`` bounds each Redis call; ``outage_grace`` is how long an acquire
    waits for Redis to come back (granting nothing) before it raises.
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str,
        fallback: Fallback = "refuse",
        burst_seconds: float = 60.0,
        timeout: float = 1.0,
        outage_grace: float = 5.0,
        decrease_factor: float = 0.5,
        min_fraction: float = 0.05,
        recovery_step: float = 0.05,
        recovery_interval: float = 5.0,
        idle_ttl: float = 3600.0,
    ) -> None:
        if fallback not in ("refuse", "local"):
            raise ConfigurationError(f"fallback must be 'refuse' or 'local', got {fallback!r}")
        if not isinstance(namespace, str) or not namespace.strip():
            raise ConfigurationError("namespace must be a non-empty string (one per job)")
        for name, value in (
            ("burst_seconds", burst_seconds),
            ("timeout", timeout),
            ("recovery_step", recovery_step),
            ("recovery_interval", recovery_interval),
            ("idle_ttl", idle_ttl),
        ):
            if not (value > 0 and math.isfinite(value)):
                raise ConfigurationError(f"{name} must be a positive number, got {value!r}")
        if not (outage_grace >= 0 and math.isfinite(outage_grace)):
            raise ConfigurationError(f"outage_grace must be >= 0 seconds, got {outage_grace!r}")
        # the local limiter validates decrease_factor and min_fraction the same way
        ModelRateLimiter(
            None, None, None, decrease_factor=decrease_factor, min_fraction=min_fraction
        )
        self.namespace = namespace
        self.fallback: Fallback = fallback
        self.burst_seconds = burst_seconds
        self.outage_grace = outage_grace
        self._aimd = (decrease_factor, min_fraction, recovery_step, recovery_interval)
        self._ttl_ms = math.ceil(idle_ttl * 1000)
        self._url = redact_url(url)
        self._password = urlsplit(url).password
        try:
            self._client: Any = open_redis(url, timeout=timeout)  # retries: ours only
        except ValueError as exc:
            raise ConfigurationError(
                f"shared rate limits: bad Redis URL {self._url!r}: {self._clean(exc)}"
            ) from None
        self._script = self._client.register_script(LUA)
        self._state: Literal["unchecked", "shared", "local"] = "unchecked"
        self._open_lock = asyncio.Lock()
        # outage bookkeeping (monotonic seconds)
        self._down_since: float | None = None
        self._probe_at = 0.0
        self._probe_delay = _PROBE_FIRST
        self._probing = False
        self.outages = 0
        self._limiters: list[SharedRateLimiter] = []

    def __repr__(self) -> str:
        return (
            f"SharedLimits({self._url!r}, namespace={self.namespace!r}, fallback={self.fallback!r})"
        )

    @property
    def backend(self) -> str:
        """``"redis"`` while limits are shared (or failing closed), ``"local"`` while
        the opt-in fallback is in use, ``"unchecked"`` before :meth:`open`."""
        if self._state == "unchecked":
            return "unchecked"
        return "local" if self._down_since is not None and self.fallback == "local" else "redis"

    async def open(self) -> None:
        """Check that Redis answers and runs the limits' script (EVALSHA).

        Raises :class:`SharedLimitsUnavailableError` naming the fix, unless
        ``fallback="local"``: then it warns and the limiters start per-process.
        """
        async with self._open_lock:
            if self._state != "unchecked":
                return
            problem = fix = ""
            try:
                await self._client.ping()
                args = encode((1.0, 0.0, 0.0), 1.0, self._aimd, 10_000, "flush", 0, 0, Pending())
                decode(await self._script(keys=[f"{self.namespace}:rl1:check"], args=args))
            except ResponseError as exc:
                problem = f"refuses the limits' Lua script ({self._clean(exc)})"
                fix = (
                    "Shared limits run one script per acquire (EVALSHA, SCRIPT LOAD): point "
                    "the URL at a Redis >= 5 that allows them (a proxy, ACL or managed "
                    "service may disable or rename them, and a replica refuses writes)"
                )
            except (RedisError, OSError, ValueError) as exc:
                problem = f"cannot be reached ({self._clean(exc)})"
                fix = "Start Redis or correct the URL (and its password)"
            if not problem:
                self._state = "shared"
                return
            if self.fallback == "refuse":
                raise SharedLimitsUnavailableError(
                    f"shared rate limits: Redis at {self._url} {problem}. {fix}; or pass "
                    "SharedLimits(fallback='local') to run with per-process limits instead "
                    "(N processes then send up to N times the configured rates)."
                )
            self._state = "shared"
            self._went_down(f"{problem}. {fix}")

    async def aclose(self) -> None:
        """Send what the limiters still owe Redis, then close the connections."""
        for limiter in self._limiters:
            await limiter.aclose()
        await self._client.aclose()

    async def __aenter__(self) -> SharedLimits:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def limiter(self, spec: ModelSpec, *, identity: str | None = None) -> SharedRateLimiter:
        """The shared limiter of ``spec``'s deployment (its rpm / input_tpm / output_tpm).

        Deployments are told apart by ``provider:model@base_url`` (hashed; the API
        key never enters Redis): pass ``identity`` to tell apart two keys with
        separate provider quotas on one URL.
        """
        who = identity if identity is not None else f"{spec.name}@{spec.base_url or ''}"
        digest = hashlib.sha256(who.encode()).hexdigest()[:32]
        limiter = SharedRateLimiter(
            self,
            f"{self.namespace}:rl1:{digest}",
            spec.rpm,
            spec.input_tpm,
            spec.output_tpm,
            name=spec.name,
        )
        self._limiters.append(limiter)
        return limiter

    # -- for the limiters ----------------------------------------------------------

    def _clean(self, exc: BaseException) -> str:
        return redact(f"{type(exc).__name__}: {exc}", self._password)

    async def _ensure_open(self) -> None:
        if self._state == "unchecked":
            await self.open()

    def _use_local(self) -> bool:
        """Whether calls go to the local fallback now: Redis away and no probe due
        (or another call is probing)."""
        return (
            self.fallback == "local"
            and self._down_since is not None
            and (self._probing or time.monotonic() < self._probe_at)
        )

    async def _run(self, key: str, args: list[str]) -> Reply:
        """One script call; shielded, so a grant is never lost to a cancellation
        (``timeout`` bounds it). During a fallback outage one call at a time probes."""
        probe = self._down_since is not None and self.fallback == "local"
        if probe:
            self._probing = True
        try:
            with anyio.CancelScope(shield=True):
                reply = decode(await self._script(keys=[key], args=args))
        except BaseException:
            if probe:
                self._probing = False
                self._probe_delay = min(self._probe_delay * 2, _PROBE_MAX)
                self._probe_at = time.monotonic() + self._probe_delay
            raise
        if probe:
            self._probing = False
        if self._down_since is not None:
            self._down_since = None
            log.warning("shared_rate_limits_restored", url=self._url, namespace=self.namespace)
        return reply

    def _went_down(self, error: str) -> None:
        if self._down_since is not None:
            return  # known (a failed probe set its own back-off)
        self._down_since = time.monotonic()
        self.outages += 1
        self._probe_delay = _PROBE_FIRST
        self._probe_at = self._down_since + _PROBE_FIRST
        if self.fallback == "local":
            log.warning(
                "SHARED RATE LIMITS OFF: per-process limits only; processes together "
                "may exceed the configured rates until Redis is back",
                url=self._url,
                namespace=self.namespace,
                error=error,
            )
        else:
            log.error(
                "shared_rate_limits_unreachable",
                url=self._url,
                error=error,
                failing_in_s=self.outage_grace,
            )

    def _refuse_after(self, error: str) -> float:
        """Seconds to wait before trying again, or raise once the grace is over."""
        assert self._down_since is not None
        left = self._down_since + self.outage_grace - time.monotonic()
        if left <= 0:
            raise SharedLimitsUnavailableError(
                f"shared rate limits: Redis at {self._url} went away ({error}) and did not "
                f"come back within {self.outage_grace:g} s; stopping rather than exceed the "
                "limits (SharedLimits(fallback='local') runs on with per-process limits)"
            )
        return min(_RETRY_EVERY, left)


class SharedRateLimiter:
    """One deployment's limits in Redis; :class:`ModelRateLimiter`'s interface.

    Differences, all because a Redis call must be awaited:

    * :meth:`try_acquire` answers ``None`` while limits are shared (the caller
      then awaits :meth:`acquire`, one script call when there is room); the
      awaitable non-waiting form is :meth:`try_acquire_async`.
    * :meth:`acquire` books a slot in one cross-process FIFO queue: it takes the
      amounts at once and sleeps until its slot. A booking that cannot be used
      before the caller's anyio deadline is given back at once; a cancelled one
      is given back when cancelled.
    * reconcile, release, on_rate_limited and update_from_headers are applied
      by the next script call of this limiter (or its flush task, started at
      once): ``await flush()`` to wait for them.

    ``on_rate_limited(reservation, retry_after=s)`` also sets a cooldown every
    process's acquire waits out (a 429's Retry-After).
    """

    def __init__(
        self,
        limits: SharedLimits,
        key: str,
        rpm: float | None,
        input_tpm: float | None,
        output_tpm: float | None,
        *,
        name: str = "",
    ) -> None:
        decrease, floor_, step, interval = limits._aimd
        # validates the rates as the local limiter does; also the fallback
        self._local = ModelRateLimiter(
            rpm,
            input_tpm,
            output_tpm,
            decrease_factor=decrease,
            min_fraction=floor_,
            recovery_step=step,
            recovery_interval=interval,
        )
        self._limits = limits
        self._key = key
        self.name = name
        self._rates = (float(rpm or 0), float(input_tpm or 0), float(output_tpm or 0))
        self._pending = Pending()
        self._flusher: asyncio.Task[None] | None = None
        self._last: Reply | None = None
        self._sleeping = 0

    def __repr__(self) -> str:
        return f"SharedRateLimiter({self.name!r}, backend={self._limits.backend!r})"

    @property
    def enabled(self) -> bool:
        """Whether any limit is configured."""
        return self._local.enabled

    # -- acquisition ---------------------------------------------------------------

    def try_acquire(self, input_tokens: int, output_tokens: int) -> Reservation | None:
        """A reservation with no I/O: when unlimited or on the local fallback only;
        ``None`` otherwise (await :meth:`acquire`)."""
        if not self.enabled or self._limits._use_local():
            return self._local.try_acquire(input_tokens, output_tokens)
        _check_amounts(input_tokens, output_tokens)
        return None

    async def try_acquire_async(self, input_tokens: int, output_tokens: int) -> Reservation | None:
        """Take the amounts now if every lane has room and no cooldown runs, else None."""
        if not self.enabled:
            return self._local.try_acquire(input_tokens, output_tokens)
        _check_amounts(input_tokens, output_tokens)
        reply = await self._call("try", input_tokens, output_tokens)
        if reply is None:
            return self._local.try_acquire(input_tokens, output_tokens)
        return _SharedReservation(input_tokens, output_tokens, reply.now) if reply.granted else None

    async def acquire(self, input_tokens: int, output_tokens: int) -> Reservation:
        """Book the amounts in the shared queue and wait for the slot."""
        if not self.enabled:
            return Reservation(input_tokens, output_tokens, 0.0)
        _check_amounts(input_tokens, output_tokens)
        while True:
            reply = await self._call("book", input_tokens, output_tokens)
            if reply is None:
                return await self._local.acquire(input_tokens, output_tokens)
            reservation = _SharedReservation(input_tokens, output_tokens, reply.now + reply.wait)
            if reply.wait <= 0:
                return reservation
            self._sleeping += 1
            try:
                if anyio.current_time() + reply.wait > anyio.current_effective_deadline():
                    # the caller's deadline comes first: others may use the slot
                    self.release(reservation)
                    await anyio.sleep(reply.wait)
                    continue  # the deadline did not cancel us after all: book again
                await anyio.sleep(reply.wait)
            except BaseException:
                self.release(reservation)
                raise
            finally:
                self._sleeping -= 1
            return reservation

    async def wait_time(self, input_tokens: int, output_tokens: int) -> float:
        """Seconds until these amounts could be taken (0.0: now); takes nothing."""
        if not self.enabled:
            return 0.0
        _check_amounts(input_tokens, output_tokens)
        reply = await self._call("peek", input_tokens, output_tokens)
        if reply is None:
            raise SharedLimitsUnavailableError(
                "shared rate limits are on the local fallback: no shared wait time to tell"
            )
        return reply.wait

    async def _call(self, mode: str, input_tokens: int, output_tokens: int) -> Reply | None:
        """One script call carrying the pending settlements; None: use the local
        fallback. Fails closed: never a grant without Redis' answer."""
        limits = self._limits
        await limits._ensure_open()
        while True:
            if limits._use_local():
                return None
            sent, self._pending = self._pending, Pending()
            args = encode(
                self._rates,
                limits.burst_seconds,
                limits._aimd,
                limits._ttl_ms,
                mode,
                input_tokens,
                output_tokens,
                sent,
            )
            try:
                reply = await limits._run(self._key, args)
            except (RedisError, OSError, ValueError) as exc:
                self._pending.restore(sent)
                error = limits._clean(exc)
                limits._went_down(error)
                if limits.fallback == "local":
                    return None
                await anyio.sleep(limits._refuse_after(error))
                continue
            self._last = reply
            return reply

    # -- settling ------------------------------------------------------------------

    def reconcile(
        self,
        reservation: Reservation,
        actual_output_tokens: int,
        actual_input_tokens: int | None = None,
    ) -> None:
        """Return what the estimate over-reserved, charge what it missed (queued)."""
        if not isinstance(reservation, _SharedReservation):
            self._local.reconcile(reservation, actual_output_tokens, actual_input_tokens)
            return
        if reservation.settled:
            return
        reservation.settled = True
        adjust = self._pending.adjust
        adjust[_OUTPUT] += reservation.output_tokens - actual_output_tokens
        if actual_input_tokens is not None:
            adjust[_INPUT] += reservation.input_tokens - actual_input_tokens
        self._schedule_flush()

    def release(self, reservation: Reservation) -> None:
        """The request was never sent: give everything back (queued)."""
        if not isinstance(reservation, _SharedReservation):
            self._local.release(reservation)
            return
        if reservation.settled:
            return
        reservation.settled = True
        adjust = self._pending.adjust
        adjust[_REQUESTS] += 1
        adjust[_INPUT] += reservation.input_tokens
        adjust[_OUTPUT] += reservation.output_tokens
        self._schedule_flush()

    def on_rate_limited(
        self, reservation: Reservation | None = None, *, retry_after: float | None = None
    ) -> None:
        """A 429: cut every process's rates (once for a burst of 429s of requests
        granted before the last cut); ``retry_after`` also pauses every process."""
        if not self.enabled:
            return
        if self._limits.backend == "local":
            self._local.on_rate_limited(
                None if isinstance(reservation, _SharedReservation) else reservation
            )
            return
        granted = reservation.acquired_at if isinstance(reservation, _SharedReservation) else None
        self._pending.add_cut(granted, retry_after)
        self._schedule_flush()

    def update_from_headers(self, headers: Mapping[str, str], *, now: float | None = None) -> None:
        """Follow the server's limit and remaining counts, for every process (queued)."""
        if not self.enabled:
            return
        if self._limits.backend == "local":
            self._local.update_from_headers(headers, now=now)
            return
        groups = _parse_headers(headers)
        if not groups:
            return
        pending = self._pending
        for kind, (limit, remaining, reset) in groups.items():
            lanes = {
                "requests": (_REQUESTS,),
                "input": (_INPUT,),
                "output": (_OUTPUT,),
            }.get(kind, (_INPUT, _OUTPUT))
            for lane in lanes:
                if not self._rates[lane]:
                    continue
                if limit is not None and limit > 0:
                    pending.limit[lane] = limit
                if remaining is not None:
                    seconds = _reset_seconds(reset, now) if reset is not None else None
                    pending.remaining[lane] = remaining
                    pending.reset[lane] = (
                        min(seconds, 86400.0)
                        if seconds is not None and math.isfinite(seconds) and seconds > 0
                        else 0.0
                    )
        if pending:
            self._schedule_flush()

    async def flush(self) -> None:
        """Send the queued settlements now (returns once Redis has them).

        Raises like an acquire when Redis is away (after the grace, unless the
        local fallback is on: then they stay queued for its return)."""
        if self._pending and self.enabled:
            await self._call("flush", 0, 0)

    def _schedule_flush(self) -> None:
        if self._flusher is not None and not self._flusher.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no event loop: the next acquire or flush() carries them
        self._flusher = loop.create_task(self._flush_in_background())

    async def _flush_in_background(self) -> None:
        limits = self._limits
        while self._pending:
            if limits._use_local():  # kept for Redis' return
                await anyio.sleep(max(_RETRY_EVERY, limits._probe_at - time.monotonic()))
                continue
            try:
                await self.flush()
            except SharedLimitsUnavailableError:
                return  # still owed: the next acquire (failing closed) or aclose() retries
            except Exception as exc:  # never an unretrieved task exception
                log.error("shared_rate_limits_flush_failed", error=limits._clean(exc))
                return

    async def aclose(self) -> None:
        """Stop the flush task and send what is still owed (once, bounded by the timeout)."""
        task, self._flusher = self._flusher, None
        if task is not None and not task.done():
            task.cancel()
            with anyio.CancelScope(shield=True):
                await asyncio.gather(task, return_exceptions=True)
        if not self._pending:
            return
        sent, self._pending = self._pending, Pending()
        args = encode(
            self._rates,
            self._limits.burst_seconds,
            self._limits._aimd,
            self._limits._ttl_ms,
            "flush",
            0,
            0,
            sent,
        )
        try:
            await self._limits._run(self._key, args)
        except (RedisError, OSError, ValueError) as exc:
            log.warning(
                "shared_rate_limits_unsettled",
                model=self.name,
                error=self._limits._clean(exc),
                detail="settlements of this process were not sent; the shared limit "
                "is off by them until its buckets refill",
            )

    # -- introspection ---------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The limiter's state as of its last script call (no I/O)."""
        backend = self._limits.backend
        if backend == "local" or not self.enabled:
            return {**self._local.snapshot(), "backend": backend, "pending": bool(self._pending)}
        last = self._last
        lanes: dict[str, Any] = {}
        for k, name in enumerate(_LANE_NAMES):
            configured = self._rates[k]
            if not configured:
                lanes[name] = None
                continue
            limit = last.limits[k] if last is not None else None
            ceiling = min(configured, limit) if limit is not None else configured
            rate = ceiling * (last.multiplier if last is not None else 1.0)
            lanes[name] = {
                "configured": configured,
                "limit": ceiling,
                "rate": rate,
                "capacity": rate * self._limits.burst_seconds / 60.0,
                "available": last.levels[k] if last is not None else None,
            }
        return {
            "enabled": True,
            "backend": backend,
            "multiplier": last.multiplier if last is not None else 1.0,
            "rate_limited": last.rate_limited if last is not None else 0,
            "cooled_for": (
                (max(0.0, last.cooled_until - last.now) or None) if last is not None else None
            ),
            "waiting": self._sleeping,
            "pending": bool(self._pending),
            **lanes,
        }


def _check_amounts(input_tokens: int, output_tokens: int) -> None:
    if input_tokens < 0 or output_tokens < 0:
        raise ValueError(f"token amounts must be >= 0, got {input_tokens}, {output_tokens}")
