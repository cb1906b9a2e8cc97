"""``synth bench`` reports: the schema-versioned JSON, the Markdown and the terminal summary.

The JSON (``"schema": "agentic-synth/bench/1"``) holds everything; the Markdown is
rendered from that JSON alone, so ``bench.md`` can be rebuilt from ``bench.json``
and reads on its own (figures next to their definitions, configuration,
environment). Keys of the JSON:

* ``figures``: the gate's figures, the median over the repeats; ``repeats``: the
  same figures, one object per repeat (what ``--check`` compares);
* ``suites``: per suite, its headline ``figures``, ``details`` (knee, cache
  comparison, RSS curve) and ``runs`` (the load, figures, a throughput/in-flight
  ``timeline`` and up to ``samples_limit`` per-request ``samples``), last repeat
  (run last: a confirming rerun's);
* ``analysis``: per run of the last repeat (by label), the bottleneck analyzer's
  report on the engine's metrics at the run's end, with the ``suite`` and the kinds
  ``set_aside`` as the suite's own design (the latency suite's concurrency of 1);
* ``configuration``, ``environment``, ``definitions``, and ``profile``, ``gate``
  and ``checks`` when asked for.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._analyzer import AnalysisReport, Bottleneck, BottleneckAnalyzer, Evidence
from ._bench import GATE_FIGURES, Measurement, median_figures
from ._load import METRIC_DEFINITIONS

__all__ = [
    "SCHEMA",
    "RunAnalysis",
    "analyze_runs",
    "build_report",
    "by_design",
    "format_seconds",
    "render_markdown",
    "render_summary",
]

SCHEMA = "agentic-synth/bench/1"

_LATENCY_KEYS = ("p50", "p90", "p95", "p99", "p999")
_SUITE_INTRO = {
    "throughput": "Requests as fast as the load allows: req/s, output tokens/s, CPU per request.",
    "latency": "One request at a time (or the open-loop rate): latency without client queueing.",
    "memory": "The throughput workload with the resident set sampled as it goes.",
    "cache": "Zipf-repeated prompts, first without a cache, then with an in-memory one.",
    "concurrency": "The same closed-loop workload at each concurrency level of the sweep.",
    "streaming": "Streamed requests: time to first token, time per output token, chunk gaps.",
}


def format_seconds(value: float | None) -> str:
    """``17 us``, ``12.3 ms``, ``1.25 s``: the unit that keeps the digits readable."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if value < 1e-3:
        return f"{value * 1e6:.0f} us"
    if value < 1:
        return f"{value * 1e3:.1f} ms"
    return f"{value:.2f} s"


def _rate(value: float | None, unit: str = "req/s") -> str:
    if value is None:
        return "-"
    sep = "" if unit.startswith("/") else " "
    return f"{value:,.0f}{sep}{unit}" if value >= 100 else f"{value:.1f}{sep}{unit}"


def _fraction(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} MB"


def _figure(name: str, value: float | None) -> str:
    """A gate figure in its unit."""
    if name == "throughput":
        return _rate(value)
    if name.endswith("_rate"):
        return _fraction(value)
    if name.startswith(("latency", "ttft", "tpot", "itl")):
        return format_seconds(value)
    if name == "cpu_us_per_request":
        return "-" if value is None else f"{value:.1f} us"
    if name.endswith("_mb"):
        return _mb(value)
    return "-" if value is None else f"{value:g}"


# -- the bottleneck analysis of each run ------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunAnalysis:
    """The analyzer's report on one run, less what the suite causes on purpose."""

    suite: str
    report: AnalysisReport
    #: Kinds found but set aside: the suite's design, not a problem to fix.
    set_aside: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"suite": self.suite, **self.report.to_dict(), "set_aside": list(self.set_aside)}


def by_design(label: str, *, closed_loop: bool) -> frozenset[str]:
    """The kinds of bottleneck the run ``label`` has on purpose: the latency suite's
    closed loop and the sweep's levels fix the concurrency, the cache suite's first run
    goes without a cache. Advice to change either is noise."""
    if label.startswith("concurrency ") or (label == "latency" and closed_loop):
        return frozenset({"concurrency"})
    if label == "cache off":
        return frozenset({"cache"})
    return frozenset()


def analyze_runs(
    measurement: Measurement, analyzer: BottleneckAnalyzer | None = None
) -> dict[str, RunAnalysis]:
    """Per run (by label), the analysis of the engine's metrics at its end."""
    analyzer = analyzer or BottleneckAnalyzer()
    out: dict[str, RunAnalysis] = {}
    for name, suite in measurement.suites.items():
        for run in suite.runs:
            if run.metrics is None:
                continue
            full = analyzer.analyze(run.metrics)
            design = by_design(run.label, closed_loop=run.load.rate is None)
            kept = tuple(b for b in full.bottlenecks if b.kind not in design)
            aside = tuple(dict.fromkeys(b.kind for b in full.bottlenecks if b.kind in design))
            report = AnalysisReport(bool(kept), kept, full.signals)
            out[run.label] = RunAnalysis(name, report, aside)
    return out


def analysis_from_dict(data: Mapping[str, Any]) -> AnalysisReport:
    """An :class:`AnalysisReport` back from its ``to_dict()`` (bench.json alone renders)."""
    bottlenecks = tuple(
        Bottleneck(
            b["kind"],
            b["severity"],
            float(b["impact"]),
            tuple(Evidence(**e) for e in b["evidence"]),
            b["recommendation"],
        )
        for b in data.get("bottlenecks", ())
    )
    return AnalysisReport(bool(data.get("detected")), bottlenecks, dict(data.get("signals", {})))


def build_report(
    *,
    measurements: Sequence[Measurement],
    runs_of: Measurement | None = None,
    configuration: Mapping[str, Any],
    environment: Mapping[str, Any],
    samples_limit: int,
    profile: Mapping[str, Any] | None = None,
    gate: Mapping[str, Any] | None = None,
    checks: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The JSON report of one bench: ``measurements`` are its repeats, in order;
    ``runs_of`` the repeat whose suites and runs it details (default: the last; the
    gate's confirming rerun keeps only its own last repeat whole)."""
    per_repeat = [m.gate_figures() for m in measurements]
    last = measurements[-1] if runs_of is None else runs_of
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "figures": median_figures(per_repeat),
        "repeats": per_repeat,
        "suites": {name: suite.to_json() for name, suite in last.suites.items()},
        "configuration": dict(configuration),
        "environment": dict(environment),
        "samples_limit": samples_limit,
        "definitions": dict(METRIC_DEFINITIONS),
        "analysis": {label: a.to_dict() for label, a in analyze_runs(last).items()},
    }
    if profile is not None:
        report["profile"] = dict(profile)
    if gate is not None:
        report["gate"] = dict(gate)
    if checks is not None:
        report["checks"] = {"passed": not checks, "failures": list(checks)}
    return report


# -- the terminal summary --------------------------------------------------------------


def _latency_line(figures: Mapping[str, Any], name: str) -> str:
    return ", ".join(
        f"{key.replace('p999', 'p99.9')} {format_seconds(figures.get(f'{name}_{key}'))}"
        for key in _LATENCY_KEYS
    )


def _length(load: Mapping[str, Any]) -> str:
    if load["requests"] is not None:
        return f"{load['requests']:,} requests"
    return f"{load['duration']:g} s"


def _load_text(load: Mapping[str, Any]) -> str:
    length = _length(load)
    if load["loop"] == "open":
        return (
            f"{length}, open loop at {load['rate']:g} req/s ({load['arrival']} arrivals), "
            f"at most {load['concurrency']} in flight"
        )
    return f"{length}, closed loop at concurrency {load['concurrency']}"


def render_summary(report: Mapping[str, Any]) -> str:
    """A few lines per suite, for the terminal."""
    lines: list[str] = []
    for name, suite in report["suites"].items():
        figures = suite["figures"]
        run = suite["runs"][-1]
        models = ", ".join(figures.get("models", []))
        if name == "concurrency":
            lines += _sweep_summary(suite, models)
            continue
        lines.append(f"{name}: {_load_text(run['load'])}, on {models}")
        lines.append(
            f"  throughput   {_rate(figures['throughput'])} ({figures['seconds']:.2f} s), "
            f"{_rate(figures['output_tokens_per_s'], 'output tokens/s')}"
        )
        lines.append(f"  latency      {_latency_line(figures, 'latency')}")
        if name == "streaming":
            lines.append(f"  TTFT         {_latency_line(figures, 'ttft')}")
            lines.append(f"  TPOT         {_latency_line(figures, 'tpot')}")
            lines.append(f"  ITL          {_latency_line(figures, 'itl')}")
        if figures.get("offered_rate") is not None:
            lines.append(
                f"  rate         offered {figures['offered_rate']:g}/s, achieved "
                f"{_rate(figures.get('achieved_rate'), '/s')}; start lag p50 "
                f"{format_seconds(figures.get('lag_p50'))}, p99 "
                f"{format_seconds(figures.get('lag_p99'))}, max "
                f"{format_seconds(figures.get('lag_max'))}"
            )
        if name == "memory":
            growth = figures.get("rss_growth_mb_per_1k")
            lines.append(
                f"  memory       peak RSS {_mb(figures.get('peak_rss_mb'))}, growth "
                + ("-" if growth is None else f"{growth:+.3f} MB")
                + " per 1,000 requests"
            )
        if name == "cache":
            speedup = figures.get("speedup")
            lines.append(
                f"  cache        hit rate {_fraction(figures.get('cache_hit_rate'))} (ideal "
                f"{_fraction(figures.get('ideal_hit_rate'))}), "
                + ("-" if speedup is None else f"{speedup:.2f}x")
                + f" the throughput without it ({_rate(figures.get('throughput_uncached'))})"
            )
        lines.append(f"  CPU          {figures['cpu_us_per_request']:.1f} us/request")
        lines.append(
            f"  errors       {_fraction(figures['error_rate'])}"
            + (f" ({_errors(figures)})" if figures.get("errors_by_class") else "")
        )
    if len(report["repeats"]) > 1:
        shown = ", ".join(
            f"{name} {_figure(name, value)}" for name, value in report["figures"].items()
        )
        lines.append(f"median of {len(report['repeats'])} repeats: {shown}")
    return "\n".join(lines)


def _errors(figures: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(figures["errors_by_class"].items()))


def _sweep_summary(suite: Mapping[str, Any], models: str) -> list[str]:
    runs = suite["runs"]
    lines = [f"concurrency: sweep, {_length(runs[0]['load'])} per level, closed loop, on {models}"]
    rows = [("level", "req/s", "p50", "p99", "errors", "CPU/request")]
    for level in suite["details"]["levels"]:
        rows.append(
            (
                str(level["concurrency"]),
                f"{level['throughput']:,.0f}",
                format_seconds(level["latency_p50"]),
                format_seconds(level["latency_p99"]),
                _fraction(level["error_rate"]),
                f"{level['cpu_us_per_request']:.1f} us",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        lines.append("  " + "  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)))
    lines.append(f"  {suite['details']['knee']['text']}")
    return lines


# -- Markdown ----------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def _figure_rows(figures: Mapping[str, Any], streaming: bool) -> list[list[str]]:
    defs = METRIC_DEFINITIONS
    rows = [
        ["throughput", _rate(figures["throughput"]), defs["throughput"]],
        [
            "output tokens/s",
            _rate(figures["output_tokens_per_s"], "tokens/s"),
            defs["output_tokens_per_s"],
        ],
        ["E2E latency", _latency_line(figures, "latency"), defs["latency"]],
    ]
    if streaming:
        rows += [
            ["TTFT", _latency_line(figures, "ttft"), defs["ttft"]],
            ["TPOT", _latency_line(figures, "tpot"), defs["tpot"]],
            ["ITL", _latency_line(figures, "itl"), defs["itl"]],
        ]
    rows += [
        ["CPU per request", f"{figures['cpu_us_per_request']:.1f} us", defs["cpu_us_per_request"]],
        [
            "error rate",
            f"{_fraction(figures['error_rate'])} ({figures['failed']:,} of "
            f"{figures['succeeded'] + figures['failed']:,})",
            defs["error_rate"],
        ],
        [
            "requests",
            f"{figures['requests']:,} started, {figures['succeeded']:,} succeeded, "
            f"{figures['cancelled']:,} cancelled in {figures['seconds']:.2f} s",
            "",
        ],
    ]
    if figures.get("offered_rate") is not None:
        rows += [
            [
                "rate",
                f"offered {figures['offered_rate']:g}/s, achieved "
                f"{_rate(figures.get('achieved_rate'), '/s')}",
                defs["achieved_rate"],
            ],
            [
                "schedule lag",
                f"p50 {format_seconds(figures.get('lag_p50'))}, p99 "
                f"{format_seconds(figures.get('lag_p99'))}, max "
                f"{format_seconds(figures.get('lag_max'))}",
                defs["lag"],
            ],
        ]
    if figures.get("errors_by_class"):
        rows.append(["errors by class", _errors(figures), ""])
    return rows


def render_markdown(report: Mapping[str, Any], plots: Sequence[str] = ()) -> str:
    """The report as Markdown; ``plots``: PNG file names written next to it."""
    config = report["configuration"]
    env = report["environment"]
    commit = env.get("git_commit")
    lines = [
        "# synth bench",
        "",
        f"{report['created']}; agentic-synth {env.get('package_version')}"
        + (
            f" at commit {commit[:12]}{' (modified)' if env.get('git_dirty') else ''}"
            if commit
            else ""
        )
        + f"; {config.get('target', '')}; suites: {', '.join(report['suites'])}.",
        "",
        "## Figures",
        "",
    ]
    repeats = report["repeats"]
    if len(repeats) > 1:
        header = ["figure", f"median of {len(repeats)}", "min", "max"]
        rows = []
        for name, value in report["figures"].items():
            values = [r[name] for r in repeats if name in r]
            rows.append(
                [name, _figure(name, value), _figure(name, min(values)), _figure(name, max(values))]
            )
    else:
        header = ["figure", "value"]
        rows = [[name, _figure(name, value)] for name, value in report["figures"].items()]
    lines += _table(header, rows)
    lines += [
        "",
        "Each figure comes from the first suite that measures it "
        f"({', '.join(GATE_FIGURES)}); latency percentiles prefer the latency suite.",
    ]
    for name, suite in report["suites"].items():
        lines += ["", f"## {name}", "", _SUITE_INTRO[name], ""]
        lines += _suite_markdown(name, suite)
    if report.get("analysis"):
        lines += ["", *_analysis_markdown(report["analysis"])]
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{p.removesuffix('.png').replace('_', ' ')}]({p})" for p in plots]
    if "profile" in report:
        lines += ["", *_profile_markdown(report["profile"])]
    if "checks" in report:
        lines += ["", "## Thresholds", ""]
        failures = report["checks"]["failures"]
        lines += [f"- FAIL: {f}" for f in failures] or ["All flag thresholds hold."]
    if "gate" in report:
        lines += ["", "## Gate", "", "```text", report["gate"].get("text", ""), "```"]
    lines += ["", "## Definitions", ""]
    lines += [f"- {text}" for text in report["definitions"].values()]
    lines += [
        "",
        f"bench.json keeps up to {report['samples_limit']:,} per-request samples per run "
        "(a concurrency sweep shares them between its levels), chosen uniformly at random "
        "(seeded) when a run had more; figures are computed over every request.",
        "",
        "## Configuration",
        "",
    ]
    lines += _table(["setting", "value"], [[k, _plain(v)] for k, v in config.items()])
    lines += ["", "## Environment", ""]
    lines += _table(["", "value"], [[k, _plain(v)] for k, v in env.items()])
    return "\n".join(lines) + "\n"


def _plain(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value))
    return str(value).replace("|", "\\|")


def _suite_markdown(name: str, suite: Mapping[str, Any]) -> list[str]:
    figures = suite["figures"]
    details = suite["details"]
    runs = suite["runs"]
    if name == "concurrency":
        lines = [f"{_length(runs[0]['load'])} per level, closed loop.", ""]
        rows = [
            [
                str(level["concurrency"]),
                _rate(level["throughput"]),
                format_seconds(level["latency_p50"]),
                format_seconds(level["latency_p99"]),
                _fraction(level["error_rate"]),
                f"{level['cpu_us_per_request']:.1f} us",
            ]
            for level in details["levels"]
        ]
        lines += _table(["concurrency", "throughput", "p50", "p99", "errors", "CPU/request"], rows)
        knee = details["knee"]
        lines += [
            "",
            f"**{knee['text']}.** Rule: {knee['rule']}, threshold {knee['threshold']:g}.",
        ]
        return lines
    lines = [f"{_load_text(runs[-1]['load'])}, on {', '.join(figures.get('models', []))}.", ""]
    rows = _figure_rows(figures, streaming=name == "streaming")
    if name == "memory":
        growth = figures.get("rss_growth_mb_per_1k")
        rows += [
            [
                "peak RSS",
                _mb(figures.get("peak_rss_mb")),
                (
                    "the highest RSS during this run alone, earlier suites and repeats "
                    f"excluded: {details['peak_rss']}"
                    if "peak_rss" in details
                    else "VmHWM (ru_maxrss): the process so far"  # a report of an older version
                ),
            ],
            [
                "RSS growth",
                ("-" if growth is None else f"{growth:+.3f} MB") + " per 1,000 requests",
                "least-squares slope of RSS against requests started, first 10% left out; "
                f"the bench's own arrays: {figures.get('bench_mb_per_1k', 0):.3f} MB of it",
            ],
            [
                "RSS start / end",
                f"{_mb(figures.get('rss_start_mb'))} / {_mb(figures.get('rss_end_mb'))}",
                "",
            ],
        ]
    if name == "cache":
        speedup = figures.get("speedup")
        rows += [
            [
                "hit rate",
                _fraction(figures.get("cache_hit_rate")),
                "hits / (hits + misses), the engine's metrics",
            ],
            [
                "ideal hit rate",
                _fraction(figures.get("ideal_hit_rate")),
                "1 - distinct prompts / requests",
            ],
            [
                "speedup",
                "-" if speedup is None else f"{speedup:.2f}x",
                "throughput with the cache / throughput without it, same prompts",
            ],
            [
                "without the cache",
                f"{_rate(figures.get('throughput_uncached'))}, p50 "
                f"{format_seconds(figures.get('latency_p50_uncached'))}, p99 "
                f"{format_seconds(figures.get('latency_p99_uncached'))}",
                "",
            ],
        ]
        lines = [
            f"{lines[0]} {details['unique_prompts']:,} distinct prompts, Zipf s = "
            f"{details['zipf_s']:g}; {details['cache']}.",
            "",
        ]
    lines += _table(["figure", "value", "definition"], rows)
    return lines


def _analysis_markdown(analysis: Mapping[str, Any]) -> list[str]:
    lines = [
        "## Why it was slow",
        "",
        "The bottleneck analyzer on the engine's metrics at the end of each run, findings "
        "ranked by the share of the run's time their fix would give back.",
    ]
    for label, data in analysis.items():
        aside = data.get("set_aside") or []
        note = f" ({', '.join(aside)}: set aside, the suite's design)" if aside else ""
        lines += ["", f"**{label}**{note}", "", analysis_from_dict(data).render()]
    return lines


def _profile_markdown(profile: Mapping[str, Any]) -> list[str]:
    lines = [
        "## Profile",
        "",
        f"One extra run of the {profile['suite']} suite under cProfile ({profile['seconds']:.2f} s "
        "with the profiler's overhead; the figures above come from runs without it). Top "
        f"{len(profile['top'])} functions by cumulative time:",
        "",
    ]
    rows = [
        [
            f"`{row['function']}`",
            str(row["calls"]),
            f"{row['tottime'] * 1e3:.1f}",
            f"{row['cumtime'] * 1e3:.1f}",
        ]
        for row in profile["top"]
    ]
    return lines + _table(["function", "calls", "own ms", "cumulative ms"], rows)
