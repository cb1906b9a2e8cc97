"""PNG plots of a bench (``synth bench --plots``), with matplotlib, an optional extra.

Figures are drawn with matplotlib's object API (``Figure`` and its Agg canvas, no
pyplot): no global state, no display needed, nothing left open between plots.
Each plot is returned as PNG bytes, written by the caller like any other report
file (an existing file is replaced only by a complete one).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .._exceptions import ConfigurationError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ._bench import Measurement

__all__ = ["INSTALL_HINT", "planned_plots", "render_plots", "require_matplotlib"]

INSTALL_HINT = "pip install 'agentic-synth[plots]'"
LATENCY_CDF = "latency_cdf.png"
TIMELINE = "timeline.png"
SWEEP = "throughput_vs_concurrency.png"


def require_matplotlib() -> None:
    """Raise the one-line fix unless matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ConfigurationError(f"--plots needs matplotlib; install it: {INSTALL_HINT}") from None


def planned_plots(suites: Sequence[str]) -> list[str]:
    """The PNG files a bench of ``suites`` writes, known before it runs."""
    names = [LATENCY_CDF, TIMELINE]
    if "concurrency" in suites:
        names.append(SWEEP)
    return names


def render_plots(measurement: Measurement) -> dict[str, bytes]:
    """File name -> PNG bytes, for :func:`planned_plots` of the measurement's suites."""
    plots = {LATENCY_CDF: _png(_latency_cdf(measurement)), TIMELINE: _png(_timeline(measurement))}
    if "concurrency" in measurement.suites:
        plots[SWEEP] = _png(_sweep(measurement))
    return plots


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def _new(title: str) -> Figure:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4.5), layout="constrained")
    figure.suptitle(title)
    return figure


def _latency_cdf(measurement: Measurement) -> Figure:
    figure = _new("E2E latency, cumulative distribution")
    ax = figure.add_subplot()
    for name, suite in measurement.suites.items():
        runs = suite.runs
        if name == "concurrency":  # one curve per level is a thicket: the knee's only
            at = suite.figures.get("knee_concurrency") or suite.figures["peak_concurrency"]
            runs = [r for r in runs if r.load.concurrency == at]
        for run in runs:
            values = run.latencies
            if not values:
                continue
            n = len(values)
            ranks = range(0, n, max(1, n // 2000))  # 2,000 points draw the same curve
            ax.step(
                [max(values[i], 1e-9) * 1e3 for i in ranks],
                [(i + 1) / n for i in ranks],
                where="post",
                label=f"{run.label} (n={n:,})",
            )
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("fraction of requests at or below")
    ax.set_ylim(0, 1.0)
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right")
    return figure


def _timeline(measurement: Measurement) -> Figure:
    suite = next(iter(measurement.suites.values()))
    run = suite.runs[-1]
    figure = _new(f"{run.label}: throughput and requests in flight over time")
    ax = figure.add_subplot()
    t = [row["t"] for row in run.timeline]
    ax.plot(t, [row["throughput"] for row in run.timeline], color="tab:blue")
    ax.set_xlabel("seconds since the run started")
    ax.set_ylabel("throughput (req/s)", color="tab:blue")
    ax.grid(True, alpha=0.3)
    twin = ax.twinx()
    twin.plot(t, [row["in_flight"] for row in run.timeline], color="tab:orange")
    twin.set_ylabel("in flight", color="tab:orange")
    return figure


def _sweep(measurement: Measurement) -> Figure:
    suite = measurement.suites["concurrency"]
    levels = [r.load.concurrency for r in suite.runs]
    throughput = [r.figures["throughput"] for r in suite.runs]
    figure = _new("throughput against concurrency")
    ax = figure.add_subplot()
    ax.plot(levels, throughput, marker="o", color="tab:blue")
    knee = suite.figures.get("knee_concurrency")
    if knee is not None:
        ax.axvline(knee, color="tab:red", linestyle="--", alpha=0.7)
        ax.annotate(
            f"knee: {knee}",
            (knee, suite.figures["knee_throughput"]),
            textcoords="offset points",
            xytext=(8, -16),
            color="tab:red",
        )
    ax.set_xscale("log", base=2)
    ax.set_xticks(levels, [str(level) for level in levels])
    ax.set_xlabel("concurrency (log 2 scale)")
    ax.set_ylabel("throughput (req/s)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    return figure
