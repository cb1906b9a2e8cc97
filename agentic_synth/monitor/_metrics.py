"""Live counters of an engine: what was asked, what came back, how fast, at what cost.

One :class:`Metrics` object is created by :class:`~agentic_synth.Synth` and passed
down the request path (never imported as a global). Recording is plain attribute
arithmetic in the event loop thread: no locks, no allocation on the hot path.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ._histogram import LogHistogram

__all__ = ["Metrics", "MetricsSnapshot"]


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

    @property
    def cache_hit_rate(self) -> float | None:
        return None if self.cache is None else self.cache["hit_rate"]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _ModelStats:
    __slots__ = ("attempts", "errors", "input_tokens", "latency", "output_tokens", "succeeded")

    def __init__(self) -> None:
        self.attempts = 0
        self.succeeded = 0
        self.errors: Counter[str] = Counter()
        self.input_tokens = 0
        self.output_tokens = 0
        self.latency = LogHistogram()


class Metrics:
    """Mutable counters; read them through :meth:`snapshot`."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.started_at = clock()
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
        self.latency = LogHistogram()
        self.ttft = LogHistogram()
        self.dedup_prompts_skipped = 0
        #: Near-duplicates sent anyway: their original's result was no longer kept.
        self.dedup_prompts_resent = 0
        self.dedup_outputs_flagged = 0
        self.dedup_outputs_dropped = 0
        self._models: dict[str, _ModelStats] = {}
        #: Extra per-model state contributed by other parts (breaker state, limits).
        self.model_probes: list[Callable[[], dict[str, dict[str, Any]]]] = []
        #: The response cache's counters, when there is a cache.
        self.cache_probe: Callable[[], dict[str, Any]] | None = None
        #: The memory governor's state, when there is a memory limit.
        self.memory_probe: Callable[[], dict[str, Any]] | None = None

    # -- recording (hot path) -------------------------------------------------

    def request_started(self) -> None:
        self.requests += 1
        self.in_flight += 1

    def request_finished(self, latency: float | None, error: BaseException | None = None) -> None:
        self.in_flight -= 1
        if error is None:
            self.succeeded += 1
            if latency is not None:
                self.latency.record(latency)
        else:
            self.failed += 1
            self.errors_by_class[type(error).__name__] += 1

    def request_cancelled(self) -> None:
        """The request was cancelled (or its stream closed early): neither outcome."""
        self.in_flight -= 1
        self.cancelled += 1

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
        cost: float = 0.0,
    ) -> None:
        self.attempts += 1
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        self.cost_usd += cost
        stats = self._model(model)
        stats.attempts += 1
        stats.succeeded += 1
        stats.input_tokens += input_tokens
        stats.output_tokens += output_tokens
        stats.latency.record(latency)

    def attempt_failed(self, model: str, error: BaseException) -> None:
        self.attempts += 1
        stats = self._model(model)
        stats.attempts += 1
        stats.errors[type(error).__name__] += 1

    def record_ttft(self, seconds: float) -> None:
        self.ttft.record(seconds)

    # -- reading ----------------------------------------------------------------

    def snapshot(self) -> MetricsSnapshot:
        elapsed = max(self._clock() - self.started_at, 1e-9)
        models: dict[str, dict[str, Any]] = {}
        for name, s in self._models.items():
            models[name] = {
                "attempts": s.attempts,
                "succeeded": s.succeeded,
                "errors": dict(s.errors),
                "input_tokens": s.input_tokens,
                "output_tokens": s.output_tokens,
                "latency_p50": s.latency.percentile(0.5),
                "latency_p99": s.latency.percentile(0.99),
            }
        for probe in self.model_probes:
            for name, extra in probe().items():
                models.setdefault(name, {}).update(extra)
        finished = self.succeeded + self.failed
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
        )
