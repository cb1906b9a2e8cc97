"""Progress and the final summary, on stderr only: stdout may be the results stream."""

from __future__ import annotations

import time

from .._synth import Synth
from ..monitor import MetricsSnapshot
from ._live import LiveDisplay, cost_text
from ._streams import say

__all__ = ["Summary"]


class Summary:
    """Counts results into the live display (:mod:`._live`); the account at the end."""

    def __init__(self, display: LiveDisplay) -> None:
        self.display = display
        self.quiet = display.quiet
        self.done = 0
        self.failed = 0
        self.started = time.monotonic()

    def add(self, ok: bool) -> None:
        self.done += 1
        self.failed += not ok
        self.display.update(self.done - self.failed, self.failed)

    def finish(self, synth: Synth) -> None:
        self.display.finish()
        if self.quiet:
            return
        m = synth.metrics()
        p50 = f"{m.latency_p50 * 1000:.1f} ms" if m.latency_p50 is not None else "-"
        p99 = f"{m.latency_p99 * 1000:.1f} ms" if m.latency_p99 is not None else "-"
        elapsed = time.monotonic() - self.started
        say(
            f"{self.done} done, {self.failed} failed in {elapsed:.1f}s "
            f"({self.done / max(elapsed, 1e-9):,.0f}/s); latency p50 {p50}, p99 {p99}; "
            f"tokens in {m.input_tokens:,}, out {m.output_tokens:,}"
        )
        say(_cost_line(m))
        if m.cache is not None:
            say(
                f"cache: {m.cache['hits']:,} replayed, {m.cache['misses']:,} sent "
                f"(hit rate {m.cache['hit_rate'] or 0:.1%})"
            )
        if m.errors_by_class:
            errors = ", ".join(f"{k}: {v}" for k, v in sorted(m.errors_by_class.items()))
            say(f"errors: {errors}")


def _cost_line(m: MetricsSnapshot) -> str:
    """The money: spent, by model when there are several, and the budget's account."""
    line = cost_text(m)
    priced = {k: v for k, v in m.models.items() if v.get("succeeded")}
    if len(priced) > 1:
        parts = []
        for name, stats in sorted(priced.items()):
            cost = stats.get("cost_usd")
            parts.append(f"{name} {'unknown' if cost is None else f'${cost:,.4f}'}")
        line += f" ({', '.join(parts)})"
    budget = m.budget
    if budget is not None:
        if budget["uncertain_usd"]:
            line += f"; ${budget['uncertain_usd']:,.4f} of it for calls lost in flight"
        if budget["refused"]:
            line += f"; {budget['refused']:,} inputs not sent (budget reached)"
    return line
