"""The live view of a running job on stderr: one display for ``synth generate`` (every
mode) and ``synth bench``.

On a terminal, a few lines redrawn in place, at most 4 times a second::

    structured ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━ 6,412 valid, 3 failed of 10,000 (64%), 212/s, ETA 0:17
    0:30 · 64/64 in flight · p50 1.21 s · errors 3 (TimeoutError 3) · cost $1.2040
    bottleneck concurrency (medium): raise max_concurrency to 128 for about 2.0x throughput

Anywhere else (a CI log, a file) the same facts as one line every ``--progress-every``
seconds (10), so a log shows a long job alive without a line per result::

    structured 0:29 | 6,100 valid, 3 failed of 10,000 (61%), 212/s, ETA 0:18 | errors 3 | ...

The rate is that of the last 10 s. The bottleneck analyzer reads the engine's metrics at
most every 2 s; its top finding is shown only at medium or high severity, as its kind and
the first clause of its advice. :meth:`LiveDisplay.explain` prints the whole report at the
end, under ``why it was slow:``, when a finding reaches medium.

rich draws the terminal view and is imported only when one is shown (~30 ms): a piped
or quiet run never loads it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from typing import Any, TextIO

import anyio

from .._scheduler import single_error
from ..monitor._analyzer import AnalysisReport, Bottleneck, BottleneckAnalyzer
from ..monitor._metrics import MetricsSnapshot
from ._args import check_range

__all__ = [
    "DEFAULT_EVERY",
    "LiveDisplay",
    "add_progress_arguments",
    "check_progress_arguments",
    "clock_text",
    "first_clause",
]

#: Seconds between progress lines when stderr is not a terminal.
DEFAULT_EVERY = 10.0
_REDRAW = 0.25  # seconds between terminal redraws, at least (4 a second)
_ANALYZE = 2.0  # seconds between analyses, at least
_RATE_WINDOW = 10.0  # the rate shown is that of the last this many seconds
_SHOWN = ("high", "medium")  # the severities worth a line while the job runs
_BAR = 30  # the progress bar's widest, in columns
#: Seconds a job must have run for its end-of-run analysis: why a job of a fraction of a
#: second was slow is noise (the simulator's 0.1 s README job is output-bound).
_EXPLAIN_AFTER = 0.5

#: One line of the terminal view: ``(text, rich style)`` pieces.
Line = list[tuple[str, str]]


def add_progress_arguments(p: argparse.ArgumentParser) -> None:
    """``--progress-every``: the cadence of the progress line off a terminal."""
    p.add_argument(
        "--progress-every",
        type=float,
        default=DEFAULT_EVERY,
        metavar="SECONDS",
        help=f"when stderr is not a terminal, a progress line every SECONDS "
        f"({DEFAULT_EVERY:g}; 0: none)",
    )


def check_progress_arguments(args: argparse.Namespace) -> None:
    check_range("--progress-every", args.progress_every, low=0)


def clock_text(seconds: float) -> str:
    """``0:17``, ``1:02:03``."""
    seconds = int(seconds + 0.5)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def first_clause(recommendation: str) -> str:
    """The advice of a finding in a few words: what follows the first ``": "`` (the
    observation before it is the evidence), up to the first ``;``, `` (`` or ``, or``."""
    head, sep, advice = recommendation.partition(": ")
    clause = advice if sep else head
    for stop in ("; ", " (", ", or "):
        clause = clause.split(stop, 1)[0]
    return clause.strip()


def finding_text(b: Bottleneck) -> str:
    return f"bottleneck {b.kind} ({b.severity}): {first_clause(b.recommendation)}"


def _is_terminal(stream: TextIO | None) -> bool:
    """A terminal that can redraw lines in place (not ``TERM=dumb``)."""
    try:
        tty = stream is not None and stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False
    return tty and os.environ.get("TERM", "").lower() not in ("dumb", "unknown")


def _rate_text(rate: float) -> str:
    return f"{rate:,.1f}/s" if rate < 10 else f"{rate:,.0f}/s"


def _errors_text(s: MetricsSnapshot) -> str:
    count = sum(s.errors_by_class.values())
    text = f"errors {count:,}"
    if count:
        top = sorted(s.errors_by_class.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        text += " (" + ", ".join(f"{name} {n:,}" for name, n in top) + ")"
    if s.retries:
        text += f", {s.retries:,} retries"
    return text


def _seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


class LiveDisplay:
    """The live view of one job (or one bench run at a time); see the module's doc.

    ``start(total)`` before the job, ``update(ok, failed)`` as items end (cheap: a clock
    read unless a redraw is due), ``finish()`` after it, then ``explain(metrics)`` for the
    end-of-run analysis. The engine's metrics come with each update (``snapshot=``) or
    from ``metrics``, a callable given to :meth:`start` that is only called when drawing.
    ``tick`` (or ``ticking``) redraws on the clock, so a stalled job still shows its time,
    its falling rate and what holds it.
    """

    def __init__(
        self,
        label: str,
        *,
        noun: str = "ok",
        quiet: bool = False,
        every: float = DEFAULT_EVERY,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        terminal: bool | None = None,
        analyzer: BottleneckAnalyzer | None = None,
    ) -> None:
        self.label = label
        self.noun = noun
        self.quiet = quiet
        self.every = every
        self._stream = sys.stderr if stream is None else stream
        self._clock = clock
        self.terminal = (not quiet and _is_terminal(self._stream)) if terminal is None else terminal
        self._analyzer = analyzer or BottleneckAnalyzer()
        #: Whether anything is drawn or written while the job runs.
        self.shows = not quiet and (self.terminal or every > 0)
        self.active = False
        self.total: int | None = None
        self.ok = 0
        self.failed = 0
        self._t0 = 0.0
        self._metrics: Callable[[], MetricsSnapshot] | None = None
        self._snapshot: MetricsSnapshot | None = None
        self._finding: Bottleneck | None = None
        self._ignore: frozenset[str] = frozenset()
        self._redrawn = -float("inf")
        self._analyzed = 0.0
        self._line_at = 0.0
        self._samples: deque[tuple[float, int]] = deque()
        self._screen: _Screen | None = None
        if self.shows and self.terminal:
            _Screen.load()  # now, not inside a job or a bench run, whose CPU it would skew

    # -- the job's side ---------------------------------------------------------------

    def start(
        self,
        total: int | None,
        *,
        label: str | None = None,
        metrics: Callable[[], MetricsSnapshot] | None = None,
        elapsed: float = 0.0,
        ignore: Collection[str] = (),
    ) -> None:
        """A job (or run) of ``total`` items (``None``: unknown) begins; it has been
        running for ``elapsed`` seconds already (the bench hears of a run late).
        ``ignore``: kinds of bottleneck the job has on purpose, never shown."""
        if self.active:
            self.finish()
        if label is not None:
            self.label = label
        self.total, self.ok, self.failed = total, 0, 0
        self._metrics, self._snapshot, self._finding = metrics, None, None
        self._ignore = frozenset(ignore)
        now = self._clock()
        self._t0 = now - elapsed
        self._analyzed = self._line_at = self._t0  # the first finding comes after 2 s
        self._samples = deque([(self._t0, 0)])
        self._redrawn = -float("inf")
        self.active = self.shows
        if self.active and self.terminal:  # drawn at the first update or tick
            try:
                self._screen = _Screen(self._stream)
            except (OSError, ValueError):
                self._screen = None  # stderr gone: nothing to draw on

    def update(
        self,
        ok: int,
        failed: int,
        snapshot: MetricsSnapshot | None = None,
        *,
        total: int | None = None,
    ) -> None:
        """``ok`` and ``failed`` items so far (and the engine's metrics, if at hand)."""
        self.ok, self.failed = ok, failed
        if total is not None:
            self.total = total
        if snapshot is not None:
            self._snapshot = snapshot
        if not self.active:
            return
        now = self._clock()
        if now - self._redrawn >= _REDRAW or self._complete:
            self._refresh(now)

    def refresh(self) -> None:
        """Redraw if one is due, whether or not an item ended since."""
        if self.active:
            now = self._clock()
            if now - self._redrawn >= _REDRAW:
                self._refresh(now)

    async def tick(self) -> None:
        """Refresh on the clock until cancelled (returns at once when nothing shows)."""
        if not self.shows:
            return
        interval = _REDRAW if self.terminal else min(1.0, self.every)
        while True:
            await anyio.sleep(interval)
            self.refresh()

    @asynccontextmanager
    async def ticking(self) -> AsyncIterator[None]:
        """:meth:`tick` for the ``async with`` block; an error of the block comes out as
        itself, not wrapped in a task group's exception group."""
        if not self.shows:
            yield
            return
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self.tick)
                yield
                tg.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise single_error(group) from None

    def finish(self) -> None:
        """The job ended: clear the terminal view (the account follows). Idempotent."""
        self.active = False
        screen, self._screen = self._screen, None
        if screen is not None:
            screen.close()

    def explain(
        self,
        source: MetricsSnapshot | AnalysisReport,
        *,
        run: str | None = None,
        ignore: Collection[str] = (),
    ) -> bool:
        """The analyzer's report under ``why it was slow:``, when a finding reaches medium
        severity (and a job's metrics span half a second at least); ``run`` names the
        bench run, ``ignore`` the kinds the job has on purpose. Whether it printed."""
        if self.quiet:
            return False
        if isinstance(source, AnalysisReport):
            report = source
        elif source.elapsed < _EXPLAIN_AFTER:
            return False
        else:
            report = self._analyzer.analyze(source)
        if ignore:
            kept = tuple(b for b in report.bottlenecks if b.kind not in ignore)
            report = AnalysisReport(bool(kept), kept, report.signals)
        if not any(b.severity in _SHOWN for b in report.bottlenecks):
            return False
        heading = "why it was slow:" if run is None else f"why it was slow ({run}):"
        self._write(f"{heading}\n{report.render()}")
        return True

    # -- what is shown ----------------------------------------------------------------

    @property
    def elapsed(self) -> float:
        return self._clock() - self._t0

    @property
    def finding(self) -> Bottleneck | None:
        """The analyzer's top finding now, when at medium or high severity."""
        return self._finding

    @property
    def _complete(self) -> bool:
        return self.total is not None and self.ok + self.failed >= self.total

    def _refresh(self, now: float) -> None:
        self._redrawn = now
        done = self.ok + self.failed
        samples = self._samples
        samples.append((now, done))
        while len(samples) > 2 and now - samples[1][0] >= _RATE_WINDOW:
            samples.popleft()
        if self.terminal:
            self._observe(now)
            self._draw(now)
        elif self.every > 0 and now - self._line_at >= self.every:
            self._line_at = now
            self._observe(now)
            self._write(self.line(now))

    def _observe(self, now: float) -> None:
        """Fresh metrics, and a fresh analysis when 2 s have passed since the last."""
        if self._metrics is not None:
            self._snapshot = self._metrics()
        if self._snapshot is not None and now - self._analyzed >= _ANALYZE:
            self._analyzed = now
            found = self._analyzer.analyze(self._snapshot).bottlenecks
            top = next((b for b in found if b.kind not in self._ignore), None)
            self._finding = top if top is not None and top.severity in _SHOWN else None

    def _rate(self, now: float) -> float:
        """Items per second over the last :data:`_RATE_WINDOW` seconds (since the start,
        early on)."""
        then, done_then = self._samples[0]
        span = now - then
        return (self.ok + self.failed - done_then) / span if span > 0 else 0.0

    def counts(self, now: float) -> str:
        """``6,412 valid, 3 failed of 10,000 (64%), 212/s, ETA 0:17``."""
        done = self.ok + self.failed
        text = f"{self.ok:,} {self.noun}, {self.failed:,} failed"
        total = self.total
        if total is not None:
            text += f" of {total:,}" + (f" ({done / total:.0%})" if total else "")
        rate = self._rate(now)
        text += f", {_rate_text(rate)}"
        if total is not None:
            left = total - done
            text += f", ETA {clock_text(left / rate) if rate > 0 and left > 0 else '-'}"
        return text

    def line(self, now: float) -> str:
        """The one-line form, for a log: label, elapsed, counts, engine, finding."""
        parts = [f"{self.label} {clock_text(int(now - self._t0))}", self.counts(now)]
        s = self._snapshot
        if s is not None:
            parts.append(_errors_text(s))
            parts.append(cost_text(s))
            if s.cache is not None:
                parts.append(self._cache_text(s))
        if self._finding is not None:
            parts.append(finding_text(self._finding))
        return " | ".join(parts)

    @staticmethod
    def _cache_text(s: MetricsSnapshot) -> str:
        rate = s.cache_hit_rate
        return f"cache hit {'-' if rate is None else f'{rate:.1%}'}"

    def frame(self, now: float, width: int) -> list[Line]:
        """The terminal view, as styled pieces per line, for ``width`` columns."""
        counts = self.counts(now)
        head: Line = [(self.label, "bold")]
        if self.total:
            bar = min(_BAR, width - len(self.label) - len(counts) - 2)
            if bar >= 8:
                done = min(1.0, (self.ok + self.failed) / self.total)
                filled = round(bar * done)
                head += [(" ", ""), ("━" * filled, "green"), ("━" * (bar - filled), "grey37")]
        head += [(" ", ""), (counts, "")]
        lines = [head]
        details = [clock_text(int(now - self._t0))]
        s = self._snapshot
        if s is not None:
            cap = s.concurrency_cap
            details.append(f"{s.in_flight:,}{'' if cap is None else f'/{cap:,}'} in flight")
            if s.latency_p50 is not None:
                details.append(f"p50 {_seconds(s.latency_p50)}")
            details.append(_errors_text(s))
            details.append(cost_text(s))
            if s.cache is not None:
                details.append(self._cache_text(s))
        lines.append([(" · ".join(details), "dim")])
        if self._finding is not None:
            style = "bold red" if self._finding.severity == "high" else "yellow"
            lines.append([(finding_text(self._finding), style)])
        return lines

    def _draw(self, now: float) -> None:
        screen = self._screen
        if screen is None:
            return
        try:
            screen.show(self.frame(now, screen.width))
        except (OSError, ValueError):
            self._screen = None  # stderr went away: the job goes on without a view

    def _write(self, text: str) -> None:
        try:
            self._stream.write(text + "\n")
            self._stream.flush()
        except (OSError, ValueError, AttributeError):
            pass  # a closed stderr is not worth a traceback


class _Screen:
    """The terminal region, drawn by rich: imported here, so only a terminal pays for it."""

    @staticmethod
    def load() -> None:
        for module in ("rich.console", "rich.live", "rich.text"):
            importlib.import_module(module)

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.live import Live

        self._console = Console(file=stream, force_terminal=True, highlight=False)
        # no redirection: stdout carries data, never the view; no thread: redraws come
        # from the job's own loop, which owns the metrics
        self._live = Live(
            console=self._console,
            auto_refresh=False,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._live.start()

    @property
    def width(self) -> int:
        return self._console.width

    def show(self, lines: Sequence[Line]) -> None:
        from rich.console import Group
        from rich.text import Text

        texts: list[Any] = []
        for line in lines:
            text = Text(no_wrap=True, overflow="ellipsis")
            for piece, style in line:
                text.append(piece, style=style or None)
            texts.append(text)
        self._live.update(Group(*texts), refresh=True)

    def close(self) -> None:
        try:
            self._live.stop()
        except (OSError, ValueError):
            pass


def cost_text(s: MetricsSnapshot) -> str:
    """``cost $1.2040``; calls of a model without a price make it a lower bound
    (``cost $1.2040 + 12 unpriced calls``, or ``cost unknown``); with a budget, the
    share of it spent."""
    if s.unpriced_calls and not s.cost_usd:
        text = f"cost unknown ({s.unpriced_calls:,} calls without a price)"
    elif s.unpriced_calls:
        text = f"cost ${s.cost_usd:,.4f} + {s.unpriced_calls:,} unpriced calls"
    else:
        text = f"cost ${s.cost_usd:,.4f}"
    budget = s.budget
    if budget is not None:
        limit = budget["limit_usd"]
        text += f" of ${limit:,.2f} budget ({budget['spent_usd'] / limit:.0%})"
        if budget["exhausted"]:
            text += ", reached"
    return text
