"""Live counters of an engine: what was asked, what came back, how fast, at what cost,
and where the time went.

One :class:`Metrics` object is created by :class:`~agentic_synth.Synth` and passed
down the request path (never imported as a global). Recording is plain attribute
arithmetic in the event loop thread: no locks, no allocation on the hot path.

Definitions (those of GuideLLM and vLLM's benchmarks):

- latency (end to end) = the request's finish - its start in the engine, retries,
  waits and fallbacks included; failed and cancelled requests never enter it.
- TTFT = the first non-empty text chunk's arrival - the start (streams only).
- TPOT = (latency - TTFT) / (output tokens - 1), for streams of >= 2 output tokens.
- ITL = the gap between consecutive text chunks of a stream.
- throughput = finished requests (succeeded + failed) / elapsed seconds; the
  windowed figures count the last 10 s and 60 s only.
- goodput = requests that met every SLO given (``slo={"latency": s, "ttft": s,
  "tpot": s}``) / elapsed seconds.
- waits: seconds summed over requests per stage (:data:`STAGES`); ``in_flight_mean``
  is the time-weighted mean of requests in flight, ``at_cap`` the share of the run
  with every concurrency slot taken.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .._log import get_logger
from ._histogram import LogHistogram

log = get_logger("agentic_synth.monitor")

__all__ = ["STAGES", "Metrics", "MetricsSnapshot"]

#: Where a request's time goes, in path order: waiting for input to pull, for the
#: memory governor, for a job-wide pause (no deployment can serve), for client-side
#: rate limits and max_in_flight, for the budget (a reservation waiting for calls in
#: flight to settle), for a breaker or throttle to reopen, in retry
#: backoff, for a pooled connection (all busy; the lean HTTP transport reports it),
#: at the provider (each attempt's call, less the pool wait), and for the consumer to
#: take the result (output backpressure).
STAGES = (
    "input",
    "memory",
    "paused",
    "rate_limit",
    "budget",
    "breaker",
    "backoff",
    "pool",
    "provider",
    "output",
)
#: SLO names ``Metrics(slo=...)`` accepts (seconds).
SLO_NAMES = ("latency", "ttft", "tpot")
_WINDOW = 60  # seconds of per-second buckets kept for the windowed rates
#: One request in this many is checked against earlier ones (repeat detection).
_REPEAT_SAMPLE = 8
_REPEAT_KEYS = 65_536  # keys remembered at most (about 5 MB)


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """A point-in-time copy of the engine's metrics (seconds, tokens, USD)."""

    elapsed: float
    requests: int
    succeeded: int
    failed: int
    cancelled: int
    in_flight: int
    errors_by_class: dict[str, int]
    attempts: int
    retries: int
    fallbacks: int
    breaker_rejections: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    latency_p50: float | None
    latency_p95: float | None
    latency_p99: float | None
    latency_mean: float | None
    ttft_p50: float | None
    ttft_p95: float | None
    ttft_p99: float | None
    throughput: float
    dedup_prompts_skipped: int
    dedup_prompts_resent: int
    dedup_outputs_flagged: int
    dedup_outputs_dropped: int
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The response cache: hits, misses, ``hit_rate`` = hits / (hits + misses),
    #: overall and per tier; ``None`` without a cache.
    cache: dict[str, Any] | None = None
    #: The memory governor: limit, RSS, pressure, evictions, backpressure; ``None``
    #: without a memory limit.
    memory: dict[str, Any] | None = None
    latency_p90: float | None = None
    latency_p999: float | None = None
    ttft_p90: float | None = None
    tpot_p50: float | None = None
    tpot_p90: float | None = None
    tpot_p99: float | None = None
    itl_p50: float | None = None
    itl_p99: float | None = None
    #: Seconds summed over requests per stage of :data:`STAGES`.
    waits: dict[str, float] = field(default_factory=dict)
    #: Time-weighted mean of requests in flight, the concurrency cap, and the share
    #: of the run spent at the cap.
    in_flight_mean: float = 0.0
    concurrency_cap: int | None = None
    at_cap: float = 0.0
    #: ``{"10s": {...}, "60s": {...}}``: throughput, error_rate, output_tokens_per_s,
    #: latency_mean over the last 10 and 60 seconds.
    windows: dict[str, dict[str, float | None]] = field(default_factory=dict)
    #: Requests that met every SLO, per second and as a share of those that succeeded;
    #: ``None`` without SLOs.
    goodput: float | None = None
    slo_attainment: float | None = None
    slo: dict[str, float] = field(default_factory=dict)
    #: The process, from the loop probe: event-loop lag (seconds late waking up), CPU
    #: seconds per wall second over the last 10 s (1.0 = one core busy), RSS bytes.
    loop_lag_p50: float | None = None
    loop_lag_p99: float | None = None
    loop_lag_max: float | None = None
    cpu_fraction: float | None = None
    rss_bytes: int | None = None
    peak_rss_bytes: int | None = None
    #: Share of sampled requests equal to an earlier one (``None``: none sampled).
    repeat_rate: float | None = None
    #: Successful calls whose cost is unknown (no price for their model): the run
    #: cost at least ``cost_usd``.
    unpriced_calls: int = 0
    #: The budget's account (``limit_usd``, ``spent_usd``, ``reserved_usd``,
    #: ``uncertain_usd``, ``period``, ``exhausted``...); ``None`` without a budget.
    budget: dict[str, Any] | None = None

    @property
    def cache_hit_rate(self) -> float | None:
        return None if self.cache is None else self.cache["hit_rate"]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _ModelStats:
    __slots__ = (
        "attempts",
        "cost_usd",
        "errors",
        "input_tokens",
        "latency",
        "output_tokens",
        "succeeded",
        "unpriced",
    )

    def __init__(self) -> None:
        self.attempts = 0
        self.succeeded = 0
        self.errors: Counter[str] = Counter()
        self.input_tokens = 0
        self.output_tokens = 0
        self.latency = LogHistogram()
        self.cost_usd = 0.0
        #: Calls whose cost is unknown (no price for the model).
        self.unpriced = 0


class _Window:
    """Per-second buckets of the last :data:`_WINDOW` seconds: O(1) to record."""

    __slots__ = ("_failed", "_latency", "_second", "_succeeded", "_tokens")

    def __init__(self) -> None:
        self._second = [-1] * _WINDOW  # the second each bucket holds
        self._succeeded = [0] * _WINDOW
        self._failed = [0] * _WINDOW
        self._tokens = [0] * _WINDOW
        self._latency = [0.0] * _WINDOW

    def add(self, now: float, ok: bool, latency: float, output_tokens: int) -> None:
        second = int(now)
        i = second % _WINDOW
        if self._second[i] != second:
            self._second[i] = second
            self._succeeded[i] = self._failed[i] = self._tokens[i] = 0
            self._latency[i] = 0.0
        if ok:
            self._succeeded[i] += 1
            self._latency[i] += latency
            self._tokens[i] += output_tokens
        else:
            self._failed[i] += 1

    def rates(self, now: float, seconds: int, elapsed: float) -> dict[str, float | None]:
        """Figures over the last ``seconds`` whole seconds (fewer early in a run)."""
        current = int(now)
        # the current second is partly over: the window spans seconds - 1 whole buckets
        # and the part of this one
        span = max(1e-9, min(seconds - 1 + (now - current), elapsed))
        ok = failed = tokens = 0
        latency = 0.0
        for i in range(_WINDOW):
            if current - seconds < self._second[i] <= current:
                ok += self._succeeded[i]
                failed += self._failed[i]
                tokens += self._tokens[i]
                latency += self._latency[i]
        done = ok + failed
        return {
            "throughput": done / span,
            "error_rate": failed / done if done else None,
            "output_tokens_per_s": tokens / span,
            "latency_mean": latency / ok if ok else None,
        }


class Metrics:
    """Mutable counters; read them through :meth:`snapshot`.

    ``detailed=False`` keeps the counters and latency histograms only (no stage
    timings, windows or time-weighted concurrency): the baseline "monitoring off"
    figures are measured against.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        concurrency_cap: int | None = None,
        slo: Mapping[str, float] | None = None,
        detailed: bool = True,
    ) -> None:
        self._clock = clock
        self.detailed = detailed
        self.concurrency_cap = concurrency_cap
        self.slo: dict[str, float] = _check_slo(slo)
        #: Extra per-model state contributed by other parts (breaker state, limits).
        self.model_probes: list[Callable[[], dict[str, dict[str, Any]]]] = []
        #: The response cache's counters, when there is a cache.
        self.cache_probe: Callable[[], dict[str, Any]] | None = None
        #: The memory governor's state, when there is a memory limit.
        self.memory_probe: Callable[[], dict[str, Any]] | None = None
        #: The budget's account (limit, spent, reserved, alerts), when there is one.
        self.budget_probe: Callable[[], dict[str, Any]] | None = None
        #: Seconds requests queued for a pooled connection (from the providers).
        self.pool_probe: Callable[[], float] | None = None
        #: Called with each finished request's figures (OpenTelemetry, for one):
        #: ``(latency, error or None, ttft, output_tokens, model, input_tokens)``;
        #: a failure's latency is its time to failing (or None).
        self.listeners: list[
            Callable[[float | None, BaseException | None, float | None, int, str | None, int], None]
        ] = []
        self.reset()

    def reset(self) -> None:
        """Start counting afresh, from now (a Synth does so each time it is opened, so
        time before ``async with`` or between two blocks dilutes no rate). Probes and
        listeners stay."""
        self.started_at = self._clock()
        self.requests = 0
        self.succeeded = 0
        self.failed = 0
        self.cancelled = 0
        self.in_flight = 0
        self.errors_by_class: Counter[str] = Counter()
        self.attempts = 0
        self.retries = 0
        self.fallbacks = 0
        #: Times a model was skipped because its breaker was open.
        self.breaker_rejections = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost_usd = 0.0
        #: Successful calls whose cost is unknown (no price for their model): the
        #: cost is then "at least cost_usd", never a silent 0.
        self.unpriced_calls = 0
        self.latency = LogHistogram()
        self.ttft = LogHistogram()
        self.tpot = LogHistogram()
        self.itl = LogHistogram()
        self.dedup_prompts_skipped = 0
        #: Near-duplicates sent anyway: their original's result was no longer kept.
        self.dedup_prompts_resent = 0
        self.dedup_outputs_flagged = 0
        self.dedup_outputs_dropped = 0
        #: Seconds per stage of :data:`STAGES`, summed over requests.
        self.waits: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        self.good = 0
        self._failed_listeners: set[Any] = set()  # warned about once each
        #: Sampled requests, and those among them equal to an earlier sampled one.
        self.repeat_sampled = 0
        self.repeats = 0
        self._repeat_tick = 0
        self._repeat_keys: set[int] = set()
        self._window = _Window()
        self._in_flight_area = 0.0  # integral of in_flight over time
        self._at_cap = 0.0  # seconds with in_flight >= concurrency_cap
        self._changed_at = self.started_at
        self._models: dict[str, _ModelStats] = {}
        #: The loop probe's readings (see :mod:`._probe`).
        self.loop_lag = LogHistogram()
        self.cpu_fraction: float | None = None

    @property
    def clock(self) -> Callable[[], float]:
        return self._clock

    # -- recording (hot path) -------------------------------------------------

    def _in_flight_changed(self, now: float) -> None:
        span = now - self._changed_at
        if span > 0.0:
            self._in_flight_area += self.in_flight * span
            cap = self.concurrency_cap
            if cap is not None and self.in_flight >= cap:
                self._at_cap += span
        self._changed_at = now

    def request_started(self) -> None:
        self.requests += 1
        if self.detailed:
            self._in_flight_changed(self._clock())
        self.in_flight += 1

    def request_finished(
        self,
        latency: float | None,
        error: BaseException | None = None,
        *,
        ttft: float | None = None,
        output_tokens: int = 0,
        model: str | None = None,
        input_tokens: int = 0,
    ) -> None:
        """One request done. ``latency`` of a failure (the time it took to fail) goes
        to the listeners only; ``model`` (``provider:model``, the last one tried) and
        ``input_tokens`` are for them too."""
        if self.detailed:
            now = self._clock()
            self._in_flight_changed(now)
            self._window.add(now, error is None, latency or 0.0, output_tokens)
        self.in_flight -= 1
        tpot = None
        if error is None:
            self.succeeded += 1
            if latency is not None:
                self.latency.record(latency)
                if ttft is not None and output_tokens >= 2:
                    tpot = (latency - ttft) / (output_tokens - 1)
                    self.tpot.record(tpot)
                if self.slo and _meets(self.slo, latency, ttft, tpot):
                    self.good += 1
        else:
            self.failed += 1
            self.errors_by_class[type(error).__name__] += 1
        for listener in self.listeners:
            try:
                listener(latency, error, ttft, output_tokens, model, input_tokens)
            except Exception as exc:  # an exporter's hiccup never fails a request
                if listener not in self._failed_listeners:
                    self._failed_listeners.add(listener)
                    log.warning("metrics_listener_failed", listener=repr(listener), error=repr(exc))

    def request_cancelled(self) -> None:
        """The request was cancelled (or its stream closed early): neither outcome."""
        if self.detailed:
            self._in_flight_changed(self._clock())
        self.in_flight -= 1
        self.cancelled += 1

    def sent(self, request: Any) -> None:
        """A request goes to the router: one in :data:`_REPEAT_SAMPLE` is compared with
        earlier ones (a hash of what makes it the same request), so the analyzer can
        tell a job that pays again for the same request (a cache would serve it)."""
        self._repeat_tick += 1
        if self._repeat_tick < _REPEAT_SAMPLE:
            return
        self._repeat_tick = 0
        key = hash(
            (
                request.system,
                tuple(str(m.get("content")) for m in request.messages),
                request.max_tokens,
                request.temperature,
                request.top_p,
            )
        )
        self.repeat_sampled += 1
        if key in self._repeat_keys:
            self.repeats += 1
        elif len(self._repeat_keys) < _REPEAT_KEYS:
            self._repeat_keys.add(key)

    def waited(self, stage: str, seconds: float) -> None:
        """``seconds`` of one request spent in ``stage`` (one of :data:`STAGES`)."""
        self.waits[stage] += seconds

    def _model(self, model: str) -> _ModelStats:
        stats = self._models.get(model)
        if stats is None:
            stats = self._models[model] = _ModelStats()
        return stats

    def attempt_succeeded(
        self,
        model: str,
        latency: float,
        input_tokens: int,
        output_tokens: int,
        cost: float | None = 0.0,
    ) -> None:
        """A call that succeeded; ``cost`` ``None``: its price is unknown."""
        self.attempts += 1
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        stats = self._model(model)
        if cost is None:
            self.unpriced_calls += 1
            stats.unpriced += 1
        else:
            self.cost_usd += cost
            stats.cost_usd += cost
        if self.detailed:
            self.waits["provider"] += latency
        stats.attempts += 1
        stats.succeeded += 1
        stats.input_tokens += input_tokens
        stats.output_tokens += output_tokens
        stats.latency.record(latency)

    def attempt_failed(self, model: str, error: BaseException, seconds: float = 0.0) -> None:
        self.attempts += 1
        if self.detailed:
            self.waits["provider"] += seconds
        stats = self._model(model)
        stats.attempts += 1
        stats.errors[type(error).__name__] += 1

    def record_ttft(self, seconds: float) -> None:
        self.ttft.record(seconds)

    def record_itl(self, seconds: float) -> None:
        self.itl.record(seconds)

    # -- reading ----------------------------------------------------------------

    def _waits(self) -> dict[str, float]:
        waits = dict(self.waits)
        if self.detailed and self.pool_probe is not None:
            pool = self.pool_probe()  # inside the attempts' time: moved out of it
            waits["pool"] = pool
            waits["provider"] = max(0.0, waits["provider"] - pool)
        return waits

    def snapshot(self) -> MetricsSnapshot:
        now = self._clock()
        elapsed = max(now - self.started_at, 1e-9)
        models: dict[str, dict[str, Any]] = {}
        for name, s in self._models.items():
            models[name] = {
                "attempts": s.attempts,
                "succeeded": s.succeeded,
                "errors": dict(s.errors),
                "input_tokens": s.input_tokens,
                "output_tokens": s.output_tokens,
                # None when no call of this model could be priced
                "cost_usd": None if s.unpriced and not s.cost_usd else s.cost_usd,
                "unpriced_calls": s.unpriced,
                "latency_p50": s.latency.percentile(0.5),
                "latency_p99": s.latency.percentile(0.99),
            }
        for probe in self.model_probes:
            for name, extra in probe().items():
                models.setdefault(name, {}).update(extra)
        finished = self.succeeded + self.failed
        area, at_cap = self._in_flight_area, self._at_cap
        span = now - self._changed_at
        if self.detailed and span > 0.0:  # up to now, without moving the mark
            area += self.in_flight * span
            if self.concurrency_cap is not None and self.in_flight >= self.concurrency_cap:
                at_cap += span
        windows = (
            {
                "10s": self._window.rates(now, 10, elapsed),
                "60s": self._window.rates(now, 60, elapsed),
            }
            if self.detailed
            else {}
        )
        rss, peak = _rss()
        return MetricsSnapshot(
            elapsed=elapsed,
            requests=self.requests,
            succeeded=self.succeeded,
            failed=self.failed,
            cancelled=self.cancelled,
            in_flight=self.in_flight,
            errors_by_class=dict(self.errors_by_class),
            attempts=self.attempts,
            retries=self.retries,
            fallbacks=self.fallbacks,
            breaker_rejections=self.breaker_rejections,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cost_usd=self.cost_usd,
            latency_p50=self.latency.percentile(0.5),
            latency_p95=self.latency.percentile(0.95),
            latency_p99=self.latency.percentile(0.99),
            latency_mean=self.latency.mean,
            ttft_p50=self.ttft.percentile(0.5),
            ttft_p95=self.ttft.percentile(0.95),
            ttft_p99=self.ttft.percentile(0.99),
            throughput=finished / elapsed,
            dedup_prompts_skipped=self.dedup_prompts_skipped,
            dedup_prompts_resent=self.dedup_prompts_resent,
            dedup_outputs_flagged=self.dedup_outputs_flagged,
            dedup_outputs_dropped=self.dedup_outputs_dropped,
            models=models,
            cache=None if self.cache_probe is None else self.cache_probe(),
            memory=None if self.memory_probe is None else self.memory_probe(),
            latency_p90=self.latency.percentile(0.9),
            latency_p999=self.latency.percentile(0.999),
            ttft_p90=self.ttft.percentile(0.9),
            tpot_p50=self.tpot.percentile(0.5),
            tpot_p90=self.tpot.percentile(0.9),
            tpot_p99=self.tpot.percentile(0.99),
            itl_p50=self.itl.percentile(0.5),
            itl_p99=self.itl.percentile(0.99),
            waits=self._waits(),
            in_flight_mean=area / elapsed,
            concurrency_cap=self.concurrency_cap,
            at_cap=min(1.0, at_cap / elapsed),
            windows=windows,
            goodput=self.good / elapsed if self.slo else None,
            slo_attainment=(self.good / self.succeeded if self.succeeded else None)
            if self.slo
            else None,
            slo=dict(self.slo),
            loop_lag_p50=self.loop_lag.percentile(0.5),
            loop_lag_p99=self.loop_lag.percentile(0.99),
            loop_lag_max=self.loop_lag.max if self.loop_lag.count else None,
            cpu_fraction=self.cpu_fraction,
            rss_bytes=rss,
            peak_rss_bytes=peak,
            repeat_rate=self.repeats / self.repeat_sampled if self.repeat_sampled else None,
            unpriced_calls=self.unpriced_calls,
            budget=None if self.budget_probe is None else self.budget_probe(),
        )


def _check_slo(slo: Mapping[str, float] | None) -> dict[str, float]:
    from .._exceptions import ConfigurationError

    out: dict[str, float] = {}
    for name, value in (slo or {}).items():
        if name not in SLO_NAMES:
            raise ConfigurationError(
                f"slo: unknown objective {name!r}; use any of {', '.join(SLO_NAMES)} "
                "(seconds), e.g. slo={'latency': 2.0, 'ttft': 0.5}"
            )
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ConfigurationError(f"slo: {name} must be a positive number of seconds")
        out[name] = float(value)
    return out


def _meets(slo: dict[str, float], latency: float, ttft: float | None, tpot: float | None) -> bool:
    limit = slo.get("latency")
    if limit is not None and latency > limit:
        return False
    # TTFT and TPOT exist for streams only: a non-streamed request is judged on latency
    limit = slo.get("ttft")
    if limit is not None and ttft is not None and ttft > limit:
        return False
    limit = slo.get("tpot")
    return limit is None or tpot is None or tpot <= limit


def _rss() -> tuple[int | None, int | None]:
    """Resident and peak resident bytes of this process (Linux /proc; else None)."""
    try:
        with open("/proc/self/status", "rb") as f:
            text = f.read()
    except OSError:
        return None, None
    rss = peak = None
    for line in text.splitlines():
        if line.startswith(b"VmRSS:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith(b"VmHWM:"):
            peak = int(line.split()[1]) * 1024
    return rss, peak
