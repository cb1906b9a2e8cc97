"""What limits a job, with the evidence and the setting to change.

``BottleneckAnalyzer().analyze(snapshot)`` (or ``synth.analyze()``) applies the
rules of :mod:`._rules` to the signals of :mod:`._signals` and ranks what it finds
by estimated impact: the share of the job's time the fix would give back. Each
finding names the exact setting and a value, in the caller's terms.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from ._metrics import MetricsSnapshot
from ._rules import KINDS, RULES, Kind, Rule
from ._signals import WINDOWS, signals

__all__ = ["AnalysisReport", "Bottleneck", "BottleneckAnalyzer", "Evidence"]


@dataclass(frozen=True, slots=True)
class Evidence:
    """One rule that held: the signal, what was observed, the threshold, the window."""

    signal: str
    observed: float
    op: str
    threshold: float
    window: str
    note: str

    def __str__(self) -> str:
        return (
            f"{self.note}: {_fmt(self.observed)} ({self.op} {_fmt(self.threshold)}, {self.window})"
        )


@dataclass(frozen=True, slots=True)
class Bottleneck:
    kind: Kind
    #: ``high`` (fix this first), ``medium`` or ``low``.
    severity: str
    #: Estimated share of the job's time the recommendation would give back (0..1).
    impact: float
    evidence: tuple[Evidence, ...]
    recommendation: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class AnalysisReport:
    detected: bool
    #: Ranked by impact, the largest first.
    bottlenecks: tuple[Bottleneck, ...]
    signals: dict[str, float | None] = field(default_factory=dict)

    @property
    def top(self) -> Bottleneck | None:
        return self.bottlenecks[0] if self.bottlenecks else None

    @property
    def severe(self) -> bool:
        return any(b.severity == "high" for b in self.bottlenecks)

    def render(self) -> str:
        """The report as text, one finding per paragraph."""
        if not self.bottlenecks:
            return "no bottleneck detected"
        out = []
        for i, b in enumerate(self.bottlenecks, 1):
            out.append(
                f"{i}. {b.kind} ({b.severity}, ~{b.impact:.0%} of the time): {b.recommendation}"
            )
            out += [f"   - {e}" for e in b.evidence]
        return "\n".join(out)

    def to_dict(self) -> dict[str, Any]:
        return {
            "detected": self.detected,
            "bottlenecks": [b.to_dict() for b in self.bottlenecks],
            "signals": dict(self.signals),
        }


class BottleneckAnalyzer:
    """Applies ``rules`` (default: :data:`~._rules.RULES`) to a snapshot."""

    def __init__(self, rules: tuple[Rule, ...] = RULES) -> None:
        self.rules = rules

    def analyze(self, snapshot: MetricsSnapshot) -> AnalysisReport:
        values = signals(snapshot)
        found: list[Bottleneck] = []
        for kind in KINDS:
            rules = [r for r in self.rules if r.kind == kind]
            triggers = [r for r in rules if r.role == "trigger" and r.holds(values.get(r.signal))]
            guards = [r for r in rules if r.role == "guard"]
            if not triggers or not all(g.holds(values.get(g.signal)) for g in guards):
                continue
            held = [*triggers, *(g for g in guards if values.get(g.signal) is not None)]
            evidence = tuple(
                Evidence(
                    r.signal,
                    float(values[r.signal] or 0.0),
                    r.op,
                    r.threshold,
                    WINDOWS.get(r.signal, "whole run"),
                    r.note,
                )
                for r in held
            )
            impact, text = _ADVICE[kind](snapshot, values)
            impact = max(0.0, min(1.0, impact))
            found.append(
                Bottleneck(kind, _severity(kind, impact, snapshot), impact, evidence, text)
            )
        order = {k: i for i, k in enumerate(KINDS)}
        found.sort(key=lambda b: (-b.impact, order[b.kind]))
        return AnalysisReport(bool(found), tuple(found), values)


def _severity(kind: Kind, impact: float, s: MetricsSnapshot) -> str:
    if kind == "concurrency" and (s.concurrency_cap or 0) > 32:
        # a generous cap pinned: more may help, if the provider allows; never "fix first"
        return "medium" if impact >= 0.2 else "low"
    return "high" if impact >= 0.5 else "medium" if impact >= 0.2 else "low"


# -- advice per kind: (impact, recommendation) ------------------------------------------


def _concurrency(s: MetricsSnapshot, v: dict[str, float | None]) -> tuple[float, str]:
    cap = s.concurrency_cap or 1
    factor = 8.0 if cap <= 8 else 4.0 if cap <= 32 else 2.0
    cpu = v.get("cpu")
    if cpu:  # the client's CPU caps the gain: keep it under ~70% of a core
        factor = max(1.0, min(factor, 0.7 / cpu))
    target = max(cap + 1, math.ceil(cap * factor))
    latency = s.latency_mean or 0.0
    return 1.0 - 1.0 / factor, (
        f"in flight sits at the cap of {cap} for {s.at_cap:.0%} of the run while the "
        f"provider answers in {latency:.2f} s on average: raise max_concurrency to {target} "
        f"for about {factor:.1f}x throughput (Little's law: throughput = in flight / "
        "latency), if the provider's limits allow"
    )


def _rate_limit(s: MetricsSnapshot, v: dict[str, float | None]) -> tuple[float, str]:
    waiting, throttled = v.get("rate_limit_share") or 0.0, v.get("throttled_share") or 0.0
    recent = s.windows.get("10s", {}).get("throughput") or s.throughput
    if waiting >= throttled:
        limits = []
        for name, m in s.models.items():
            lanes = m.get("rate_limits")
            requests = lanes.get("requests") if isinstance(lanes, dict) else None
            if isinstance(requests, dict) and requests.get("limit"):
                limits.append(f"{name} (rpm {requests['limit']:,.0f})")
        where = ", ".join(limits) or ", ".join(s.models) or "the models"
        return waiting, (
            f"requests spend {waiting:.0%} of their time waiting for the client-side limits "
            f"of {where}; the job runs at {recent * 60:,.0f} requests/min over the last 10 s: "
            "raise that ModelSpec's rpm / input_tpm / output_tpm / max_in_flight if your "
            "account allows, or add a fallback deployment with strategy='least_busy'"
        )
    pace = max(1, int(recent * 60 * 0.9))
    return min(1.0, throttled * 2), (
        f"the provider answered 429 to {throttled:.0%} of attempts: set ModelSpec(rpm={pace}) "
        "(90% of the rate achieved) so the client paces itself instead of retrying, or lower "
        "max_concurrency"
    )


def _provider_latency(s: MetricsSnapshot, v: dict[str, float | None]) -> tuple[float, str]:
    slowdown, tail = v.get("slowdown"), v.get("tail_ratio")
    if slowdown is not None and slowdown >= 1.5:
        recent = s.windows.get("10s", {}).get("latency_mean") or 0.0
        return 1.0 - 1.0 / slowdown, (
            f"the provider slowed down (mean latency {recent:.2f} s in the last 10 s against "
            f"{s.latency_mean or 0.0:.2f} s over the run) while throughput stayed flat: more "
            "concurrency will not help; add a fallback model with strategy='least_latency', "
            "lower max_tokens, or lower max_concurrency until it recovers"
        )
    p50, p99 = s.latency_p50 or 0.0, s.latency_p99 or 0.0
    mean = s.latency_mean or p50
    timeout = max(1.0, round(4 * p50, 1))
    return (1.0 - p50 / mean) if mean else 0.0, (
        f"the slowest 1% of requests take {tail or 0.0:.0f}x the median ({p99:.2f} s against "
        f"{p50:.2f} s) and hold their slots meanwhile: set a per-request timeout "
        f"(timeout={timeout:g}, retried on another attempt) or add a fallback model with "
        "strategy='least_latency'"
    )


def _faults(s: MetricsSnapshot, v: dict[str, float | None]) -> tuple[float, str]:
    worst, worst_name, worst_errors = 0.0, "", {}
    for name, m in s.models.items():
        attempts = int(m.get("attempts") or 0)
        errors: dict[str, int] = m.get("errors") or {}
        rate = sum(errors.values()) / attempts if attempts else 0.0
        if rate >= worst:
            worst, worst_name, worst_errors = rate, name, errors
    top = max(worst_errors.items(), key=lambda kv: kv[1])[0] if worst_errors else "errors"
    wasted = (v.get("fault_wait_share") or 0.0) + (v.get("retry_rate") or 0.0) * (
        v.get("provider_share") or 0.0
    )
    impact = max(wasted, v.get("failure_rate") or 0.0)
    if len(s.models) > 1:
        fix = (
            f"move {worst_name} down the models list or give it a lower max_in_flight; "
            "the router already falls back"
        )
    else:
        fix = "add a fallback model (Synth(models=[primary, backup]))"
    return impact, (
        f"{worst:.0%} of attempts on {worst_name} failed (mostly {top}); "
        f"{v.get('retry_rate') or 0.0:.0%} of all attempts were retries: {fix}"
    )


def _client_cpu(s: MetricsSnapshot, v: dict[str, float | None]) -> tuple[float, str]:
    cpu, lag = v.get("cpu") or 0.0, v.get("loop_lag_p99") or 0.0
    impact = max(min(1.0, (cpu - 0.5) * 2), min(1.0, lag / 0.5))
    return impact, (
        f"the client is the limit: {cpu:.2f} CPU cores busy and the event loop {lag * 1000:.0f} "
        "ms late at p99; move synchronous work (parsing, file writes, a blocking input "
        "iterator) off the event loop, make sure uvloop is installed, or split the job over "
        "several processes (each with its own Synth)"
    )


def _input(s: MetricsSnapshot, v: dict[str, float | None]) -> tuple[float, str]:
    share = v.get("input_share") or 0.0
    rate = s.requests / s.elapsed if s.elapsed else 0.0
    return share, (
        f"workers waited for input {share:.0%} of the time (inputs arrived at {rate:,.1f}/s): "
        "the input iterator is the limit; build inputs ahead (a list, or a generator that "
        "does not await slow I/O per item)"
    )


def _output(s: MetricsSnapshot, v: dict[str, float | None]) -> tuple[float, str]:
    share = v.get("output_share") or 0.0
    return share, (
        f"workers waited {share:.0%} of the time for results to be taken: the consumer of "
        "iter_batch (or the output sink) is the limit; write results in batches, move slow "
        "work off the loop, or read results as they complete (ordered=False)"
    )


def _memory(s: MetricsSnapshot, v: dict[str, float | None]) -> tuple[float, str]:
    share, pressure = v.get("memory_share") or 0.0, v.get("memory_pressure")
    limit = (s.memory or {}).get("limit")
    limit_text = f" of {limit / 2**20:,.0f} MiB" if isinstance(limit, int | float) else ""
    return max(share, 0.2 if pressure and pressure >= 0.9 else 0.0), (
        f"the memory governor held workers back {share:.0%} of the time (RSS at "
        f"{(pressure or 0.0):.0%}{limit_text}): raise memory_limit, or lower max_concurrency "
        "or the cache's memory_entries"
    )


def _cache(s: MetricsSnapshot, v: dict[str, float | None]) -> tuple[float, str]:
    repeat = v.get("repeat_rate") or 0.0
    impact = repeat * (v.get("provider_share") or 1.0)
    if s.cache is None:
        fix = (
            "pass Synth(cache=Cache(mode='shared')) to serve identical requests once "
            "(or cache='runs/cache.db' to also resume for free)"
        )
    else:
        fix = (
            "the cache keeps repeats as separate samples (mode='samples', by design for "
            "temperature > 0); use Cache(mode='shared') if one answer per identical request "
            "is what you want, or raise memory_entries if entries are evicted"
        )
    return impact, f"{repeat:.0%} of requests repeat an earlier one exactly: {fix}"


_ADVICE = {
    "concurrency": _concurrency,
    "rate_limit": _rate_limit,
    "provider_latency": _provider_latency,
    "faults": _faults,
    "client_cpu": _client_cpu,
    "input": _input,
    "output": _output,
    "memory": _memory,
    "cache": _cache,
}


def _fmt(value: float) -> str:
    if value == int(value) and abs(value) >= 1:
        return f"{int(value)}"
    return f"{value:.3g}"
