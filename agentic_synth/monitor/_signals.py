"""Named statistics of a metrics snapshot, the vocabulary of the analyzer's rules.

Two denominators, so that shares mean what they say:

- *in-flight time* = time-weighted requests in flight x elapsed = the seconds all
  requests spent inside the engine. ``provider_share``, ``rate_limit_share`` and
  ``fault_wait_share`` divide a request stage's seconds by it.
- *worker time* = concurrency cap x elapsed = the seconds the scheduler's workers
  existed. ``input_share``, ``output_share`` and ``memory_share`` divide a worker
  stage's seconds by it.

A signal that could not be measured (no request finished, no probe reading) is
``None``; a rule on it does not fire.
"""

from __future__ import annotations

from typing import Any

from ._metrics import MetricsSnapshot

__all__ = ["WINDOWS", "signals"]

#: The window each signal is measured over, for the report's evidence.
WINDOWS: dict[str, str] = {
    "cpu": "last 10 s",
    "slowdown": "last 10 s vs the run",
    "loop_lag_p99": "whole run",
}


def _share(part: float, whole: float) -> float | None:
    return min(1.0, part / whole) if whole > 0 else None


def _throttled(s: MetricsSnapshot) -> int:
    return sum(int(m.get("errors", {}).get("RateLimitedError", 0)) for m in s.models.values())


def _open_breakers(s: MetricsSnapshot) -> int:
    count = 0
    for model in s.models.values():
        breaker = model.get("breaker")
        if isinstance(breaker, dict) and breaker.get("state") in ("open", "half_open"):
            count += 1
    return count


def signals(s: MetricsSnapshot) -> dict[str, float | None]:
    """Every signal the rules name, from one snapshot."""
    waits: dict[str, float] = s.waits
    in_flight_time = s.in_flight_mean * s.elapsed
    cap = s.concurrency_cap or 0
    worker_time = cap * s.elapsed
    finished = s.succeeded + s.failed
    attempts = s.attempts
    recent: dict[str, Any] = s.windows.get("10s", {})
    minute: dict[str, Any] = s.windows.get("60s", {})
    slowdown = None
    recent_latency, run_latency = recent.get("latency_mean"), s.latency_mean
    if recent_latency and run_latency and s.elapsed >= 20:
        recent_rate, minute_rate = recent.get("throughput") or 0.0, minute.get("throughput")
        flat = minute_rate is not None and recent_rate <= 1.1 * minute_rate
        slowdown = recent_latency / run_latency if flat else 1.0
    tail = None
    if s.latency_p50 and s.latency_p99 and s.succeeded >= 100:
        tail = s.latency_p99 / s.latency_p50
    memory = s.memory or {}
    pressure = memory.get("pressure")
    return {
        "at_cap": s.at_cap if cap else None,
        "provider_share": _share(waits.get("provider", 0.0), in_flight_time),
        "rate_limit_share": _share(waits.get("rate_limit", 0.0), in_flight_time),
        "fault_wait_share": _share(
            waits.get("backoff", 0.0) + waits.get("breaker", 0.0), in_flight_time
        ),
        "throttled_share": _throttled(s) / attempts if attempts else None,
        "retry_rate": s.retries / attempts if attempts else None,
        "failure_rate": s.failed / finished if finished >= 20 else None,
        "fallback_rate": s.fallbacks / s.succeeded if s.succeeded >= 20 else None,
        "open_breakers": float(_open_breakers(s)),
        "cpu": s.cpu_fraction,
        "loop_lag_p99": s.loop_lag_p99,
        "slowdown": slowdown,
        "tail_ratio": tail,
        "input_share": _share(waits.get("input", 0.0), worker_time),
        "output_share": _share(waits.get("output", 0.0), worker_time),
        "memory_share": _share(waits.get("memory", 0.0), worker_time),
        "memory_pressure": None if pressure is None else float(pressure),
        "repeat_rate": s.repeat_rate,
        "cache_hit_rate": s.cache_hit_rate,
    }
