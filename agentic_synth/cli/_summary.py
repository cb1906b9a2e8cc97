"""Progress and the final summary, on stderr only: stdout may be the results stream."""

from __future__ import annotations

import sys
import time

from .._synth import Synth
from ._streams import say

__all__ = ["Summary"]


class Summary:
    """Counts results; a live progress line only when stderr is a terminal."""

    def __init__(self, *, quiet: bool) -> None:
        self.quiet = quiet
        self.live = not quiet and sys.stderr is not None and sys.stderr.isatty()
        self.done = 0
        self.failed = 0
        self.started = time.monotonic()
        self._last = 0.0

    def add(self, ok: bool) -> None:
        self.done += 1
        self.failed += not ok
        if self.live:
            now = time.monotonic()
            if now - self._last >= 1.0:
                self._last = now
                rate = self.done / max(now - self.started, 1e-9)
                say(f"\r{self.done} done, {self.failed} failed, {rate:,.0f}/s", end="")

    def finish(self, synth: Synth) -> None:
        if self.quiet:
            return
        m = synth.metrics()
        p50 = f"{m.latency_p50 * 1000:.1f} ms" if m.latency_p50 is not None else "-"
        p99 = f"{m.latency_p99 * 1000:.1f} ms" if m.latency_p99 is not None else "-"
        elapsed = time.monotonic() - self.started
        start = "\r" if self.live else ""
        say(
            f"{start}{self.done} done, {self.failed} failed in {elapsed:.1f}s "
            f"({self.done / max(elapsed, 1e-9):,.0f}/s); latency p50 {p50}, p99 {p99}; "
            f"tokens in {m.input_tokens:,}, out {m.output_tokens:,}"
        )
        if m.cache is not None:
            say(
                f"cache: {m.cache['hits']:,} replayed, {m.cache['misses']:,} sent "
                f"(hit rate {m.cache['hit_rate'] or 0:.1%})"
            )
        if m.errors_by_class:
            errors = ", ".join(f"{k}: {v}" for k, v in sorted(m.errors_by_class.items()))
            say(f"errors: {errors}")
