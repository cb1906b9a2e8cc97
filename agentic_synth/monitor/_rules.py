"""The bottleneck analyzer's rules, as data: readable in one place, tested row by row.

A rule compares one *signal* (a named statistic of a metrics snapshot, defined in
:mod:`._signals`) with a threshold. A kind of bottleneck is detected when any of
its ``trigger`` rules holds and all of its ``guard`` rules hold: a guard rules out
a cause that would make the advice wrong (more concurrency does not help a job
held back by rate limits or by its own CPU). Every rule that held goes into the
finding's evidence, with the value observed and the window it was measured over.

Thresholds are shares of time unless a note says otherwise: ``*_share`` signals are
seconds spent in a stage divided by the time requests were in flight (request
stages) or the time workers existed (worker stages); see :mod:`._signals`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["KINDS", "RULES", "Rule"]

Kind = Literal[
    "concurrency",
    "rate_limit",
    "provider_latency",
    "faults",
    "client_cpu",
    "input",
    "output",
    "cache",
    "memory",
]
#: Every kind the analyzer knows, in the order ties are broken.
KINDS: tuple[Kind, ...] = (
    "faults",
    "rate_limit",
    "client_cpu",
    "input",
    "output",
    "memory",
    "concurrency",
    "provider_latency",
    "cache",
)


@dataclass(frozen=True, slots=True)
class Rule:
    kind: Kind
    signal: str
    op: Literal[">=", "<", "<="]
    threshold: float
    role: Literal["trigger", "guard"]
    #: What the rule means, in the report's words.
    note: str

    def holds(self, value: float | None) -> bool:
        if value is None:
            return self.role == "guard"  # a guard on what was not measured stands aside
        if self.op == ">=":
            return value >= self.threshold
        if self.op == "<":
            return value < self.threshold
        return value <= self.threshold


RULES: tuple[Rule, ...] = (
    # -- concurrency: the cap, not the provider, sets the pace (Little's law) --------
    Rule("concurrency", "at_cap", ">=", 0.7, "trigger", "in flight sits at max_concurrency"),
    Rule("concurrency", "provider_share", ">=", 0.5, "guard",
         "in-flight time is spent at the provider, not waiting on limits or faults"),
    Rule("concurrency", "cpu", "<", 0.7, "guard", "the client has CPU to spare (cores)"),
    Rule("concurrency", "rate_limit_share", "<", 0.25, "guard", "client-side limits do not bind"),
    Rule("concurrency", "throttled_share", "<", 0.05, "guard", "the provider does not throttle"),
    # -- rate_limit: waiting for client-side limits, or the provider's 429s -----------
    Rule("rate_limit", "rate_limit_share", ">=", 0.25, "trigger",
         "requests wait for client-side rpm/tpm limits or max_in_flight"),
    Rule("rate_limit", "throttled_share", ">=", 0.05, "trigger",
         "the provider answers 429 (rate limited) to attempts"),
    # -- provider_latency: the provider got slower, or has a long tail -----------------
    Rule("provider_latency", "slowdown", ">=", 1.5, "trigger",
         "mean latency of the last 10 s over the run's, with throughput flat"),
    Rule("provider_latency", "tail_ratio", ">=", 8.0, "trigger", "p99 latency over p50"),
    Rule("provider_latency", "provider_share", ">=", 0.5, "guard",
         "in-flight time is spent at the provider"),
    # -- faults: retries, fallbacks, failures, open breakers ---------------------------
    Rule("faults", "retry_rate", ">=", 0.1, "trigger", "attempts that were retries"),
    Rule("faults", "failure_rate", ">=", 0.02, "trigger", "finished requests that failed"),
    Rule("faults", "fallback_rate", ">=", 0.1, "trigger", "requests served by a fallback model"),
    Rule("faults", "fault_wait_share", ">=", 0.2, "trigger",
         "in-flight time spent in retry backoff or waiting for a breaker to reopen"),
    Rule("faults", "open_breakers", ">=", 1, "trigger", "models with an open breaker (count)"),
    # -- client_cpu: the process itself is the limit -----------------------------------
    Rule("client_cpu", "cpu", ">=", 0.85, "trigger",
         "process CPU seconds per wall second over the last 10 s (1.0 = a core)"),
    Rule("client_cpu", "loop_lag_p99", ">=", 0.1, "trigger",
         "event-loop lag at p99 (seconds late waking up)"),
    # -- input / output / memory: the job's own ends -----------------------------------
    Rule("input", "input_share", ">=", 0.3, "trigger", "worker time spent waiting for input"),
    Rule("output", "output_share", ">=", 0.3, "trigger",
         "worker time spent waiting for the consumer to take results"),
    Rule("memory", "memory_share", ">=", 0.1, "trigger",
         "worker time held back by the memory governor"),
    Rule("memory", "memory_pressure", ">=", 0.9, "trigger", "RSS as a share of memory_limit"),
    # -- cache: paying again for requests already answered -----------------------------
    Rule("cache", "repeat_rate", ">=", 0.2, "trigger",
         "sampled requests identical to an earlier one"),
    Rule("cache", "cache_hit_rate", "<", 0.5, "guard", "the cache's hit rate"),
)  # fmt: skip
