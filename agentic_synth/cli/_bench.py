"""``synth bench``: suites of load runs, reports, and the CI gate.

Suites (:mod:`agentic_synth.monitor._bench`): throughput (the default), latency,
memory, cache, concurrency (a sweep, with its knee) and streaming; closed loop at
``-c`` or open loop at ``--rate``; on the simulator unless ``-m`` names a model,
or against ``synth mock-server`` in its own process (``--mock-server``).

Every flag, model, thresholds file, baseline and output path is checked before
the first request, so a long benchmark never fails at the end for a typo; a
report file is replaced only by a complete one (:mod:`._output`). The summary
goes to stdout (it is the data asked for); the live view of each run (:mod:`._live`),
FAIL lines and the bottleneck analysis ("why it was slow") go to stderr.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from .._exceptions import ConfigurationError
from .._spec import ModelSpec
from .._synth import Synth
from ..caching._cache import Cache
from ..monitor._bench import (
    DEFAULT_SWEEP,
    GATE_FIGURES,
    SAMPLE_LIMIT,
    SUITES,
    BenchConfig,
    Measurement,
    environment,
    figure_suites,
    measured_figures,
    median_figures,
    median_headline,
    profile_suite,
    run_bench,
)
from ..monitor._bench_report import (
    analyze_runs,
    build_report,
    by_design,
    render_markdown,
    render_summary,
)
from ..monitor._gate import (
    Baseline,
    Thresholds,
    gate,
    load_baseline,
    load_thresholds,
    machine_environment,
    min_repeats,
    save_baseline,
    smallest_p_value,
)
from ..monitor._load import ARRIVALS, Progress, ProgressHook
from ..monitor._plots import planned_plots, render_plots, require_matplotlib
from ..simulator import SimConfig, parse_latency, spawn_mock_server
from ._args import check_range
from ._common import (
    add_generation_arguments,
    check_generation_arguments,
    request_defaults,
    run_async,
)
from ._live import LiveDisplay, add_progress_arguments, check_progress_arguments
from ._output import End, Output
from ._settings import Settings, resolve_settings
from ._streams import say

__all__ = ["add_parser"]

_DEFAULT_REQUESTS = 2000
_MOCK_MODEL = "mock"

_EPILOG = f"""\
suites (several run in the order given; default: throughput):
  throughput    closed loop at -c (open loop with --rate): req/s, output tokens/s, CPU/request
  latency       one request at a time (or --rate): latency without queueing in the client
  memory        the throughput workload through iter_batch (which keeps no result), RSS
                sampled: the run's own peak RSS, RSS growth per 1,000 requests
  cache         Zipf-repeated prompts (--seed), without then with an in-memory cache: hit
                rate, speedup
  concurrency   closed loop at each --sweep level ({",".join(map(str, DEFAULT_SWEEP))}): the knee,
                the level past which doubling concurrency adds less than 10% throughput
  streaming     generate_stream: TTFT, TPOT, ITL (with --sim-tokens-per-s on the simulator)

Each run sends -n requests (2000), or starts requests for --duration seconds (those in
flight then finish; throughput counts what ended within it). Figures, each defined in
bench.md: throughput = succeeded / wall s; error rate = failed / (succeeded + failed);
TTFT = first text chunk - start; TPOT = (E2E - TTFT) / (output tokens - 1); ITL = gaps
between text chunks; percentiles p50 p90 p95 p99 p99.9 over every request, failures excluded.

Without -m, bench runs on the simulator whatever the config file or keys say: a
benchmark never spends money by accident.

While a run goes, stderr shows its progress, errors and the bottleneck analyzer's top
finding (on a terminal; else a line every --progress-every seconds); at the end, "why it
was slow" for each run with a finding of medium or high severity. -q: neither.

--out DIR writes bench.json (schema agentic-synth/bench/1), bench.md and, with --plots,
latency_cdf.png, timeline.png, throughput_vs_concurrency.png. --check FILE gates on
absolute thresholds and --baseline FILE on regressions (a one-sided Mann-Whitney U test
over --repeats samples per figure, confirmed by a rerun); --update-baseline records one.
Their figure names and the repeats are checked against the suites before anything runs.

exit status: 0 within the thresholds; 1 a threshold or the gate failed; 2 a usage problem
(one line on stderr; nothing was sent, an existing report is as it was).
"""


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "bench",
        help="measure throughput, latency, memory, cache and streaming; gate CI on them",
        description="Run benchmark suites through the engine and report the figures "
        "(on the embedded simulator unless -m or --mock-server says otherwise).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "suites",
        nargs="*",
        metavar="SUITE",
        help=f"{', '.join(SUITES)} (default: throughput)",
    )
    p.add_argument("-n", "--requests", type=int, help=f"requests per run ({_DEFAULT_REQUESTS:,})")
    p.add_argument(
        "--duration",
        type=float,
        metavar="SECONDS",
        help="seconds per run instead of -n (no request starts after it; those in flight finish)",
    )
    p.add_argument(
        "--rate",
        type=float,
        metavar="REQ_S",
        help="open loop: start requests at this rate whatever the completions (-c caps "
        "those in flight; late starts are reported as schedule lag)",
    )
    p.add_argument(
        "--arrival", choices=ARRIVALS, help="open-loop arrivals: constant (default) or poisson"
    )
    p.add_argument(
        "--sweep",
        metavar="LEVELS",
        help="concurrency levels of the concurrency suite "
        f"(default {','.join(map(str, DEFAULT_SWEEP))})",
    )
    p.add_argument(
        "--repeats",
        type=int,
        help="run the suites N times: per-repeat figures for the gate, medians in the "
        "report (default 1; with --check, the file's)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of Poisson arrivals, the cache suite's prompts and the kept samples (0)",
    )
    p.add_argument(
        "--samples",
        type=int,
        default=SAMPLE_LIMIT,
        metavar="N",
        help=f"per-request samples bench.json keeps per run ({SAMPLE_LIMIT:,})",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="write bench.json, bench.md (and the --plots) into this existing directory",
    )
    p.add_argument(
        "--json",
        metavar="FILE",
        help="also write the first suite's figures as one JSON object (the format before "
        "--out); with --repeats N > 1, each number is the median of the N repeats",
    )
    p.add_argument(
        "--plots",
        action="store_true",
        help="also write PNG plots into --out (needs pip install 'agentic-synth[plots]')",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="run the first suite once more under cProfile; the top functions by cumulative "
        "time go into the reports",
    )
    p.add_argument(
        "--mock-server",
        action="store_true",
        help="run against synth mock-server in its own process (OpenAI wire format; "
        "--sim-latency, --sim-tokens-per-s and --sim-seed set it up)",
    )
    p.add_argument(
        "--sim-tokens-per-s",
        type=float,
        metavar="TPS",
        help="streaming speed of sim: models and of --mock-server (default: instant)",
    )
    p.add_argument("--min-throughput", type=float, metavar="REQ_S")
    p.add_argument("--max-p99", type=float, metavar="SECONDS")
    p.add_argument("--max-cpu-us", type=float, metavar="US", help="CPU microseconds per request")
    p.add_argument("--max-error-rate", type=float, metavar="FRACTION")
    p.add_argument(
        "--check",
        metavar="TOML",
        help="gate on this thresholds file (absolute limits; regression settings)",
    )
    p.add_argument(
        "--baseline", metavar="JSON", help="gate on regressions against this baseline file"
    )
    p.add_argument(
        "--update-baseline",
        action="store_true",
        help="write this run's per-repeat figures to --baseline (when the thresholds hold)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no live view or analysis on stderr")
    add_progress_arguments(p)
    add_generation_arguments(p, max_tokens=64)
    p.set_defaults(run=run)


# -- checks ------------------------------------------------------------------------------


def _suites(names: Sequence[str]) -> tuple[str, ...]:
    for name in names:
        if name not in SUITES:
            raise ConfigurationError(
                f"unknown suite {name!r}; choose from {', '.join(SUITES)} (synth bench SUITE ...)"
            )
    return tuple(dict.fromkeys(names)) or ("throughput",)


def _sweep(text: str | None) -> tuple[int, ...]:
    if text is None:
        return DEFAULT_SWEEP
    try:
        levels = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        levels = []
    if not levels or levels[0] < 1:
        raise ConfigurationError(
            f"--sweep takes concurrency levels >= 1 separated by commas, such as 1,2,4,8; "
            f"got {text!r}"
        )
    return tuple(levels)


def _check(args: argparse.Namespace) -> None:
    """Every bench-specific flag; the shared ones are checked by :class:`_Engine`."""
    suites = _suites(args.suites)
    _sweep(args.sweep)
    check_range("--requests", args.requests, low=1)
    check_range("--duration", args.duration, low=0, low_open=True)
    check_range("--rate", args.rate, low=0, low_open=True)
    check_range("--repeats", args.repeats, low=1)
    check_range("--samples", args.samples, low=0)
    check_range("--sim-tokens-per-s", args.sim_tokens_per_s, low=0, low_open=True)
    check_range("--min-throughput", args.min_throughput, low=0, low_open=True)
    check_range("--max-p99", args.max_p99, low=0, low_open=True)
    check_range("--max-cpu-us", args.max_cpu_us, low=0, low_open=True)
    check_range("--max-error-rate", args.max_error_rate, low=0, high=1)
    check_progress_arguments(args)
    if args.requests is not None and args.duration is not None:
        raise ConfigurationError("--requests and --duration both set the length of a run; keep one")
    if args.arrival is not None and args.rate is None:
        raise ConfigurationError("--arrival applies to the open loop; add --rate REQ_S")
    if args.rate is not None and suites == ("concurrency",):
        raise ConfigurationError(
            "--rate sets an open loop, and the concurrency suite is a closed-loop sweep; "
            "drop --rate or add another suite"
        )
    if args.sweep is not None and "concurrency" not in suites:
        raise ConfigurationError(
            "--sweep sets the levels of the concurrency suite; add it: synth bench concurrency"
        )
    if args.plots and args.out is None:
        raise ConfigurationError("--plots writes PNG files into --out DIR; add --out DIR")
    if args.update_baseline and args.baseline is None:
        raise ConfigurationError("--update-baseline writes to --baseline FILE; add --baseline")
    if args.mock_server and args.models:
        raise ConfigurationError(
            "--mock-server picks the model (the mock server's); drop -m, or drop --mock-server"
        )


def _config(args: argparse.Namespace, concurrency: int) -> BenchConfig:
    return BenchConfig(
        suites=_suites(args.suites),
        concurrency=concurrency,
        requests=(
            args.requests
            if args.requests is not None or args.duration is not None
            else _DEFAULT_REQUESTS
        ),
        duration=args.duration,
        rate=args.rate,
        arrival=args.arrival or "constant",
        sweep=_sweep(args.sweep),
        seed=args.seed,
        samples=args.samples,
    )


def _out_dir(path: str) -> str:
    if not os.path.exists(path):
        raise ConfigurationError(f"--out {path}: no such directory; create it first (mkdir -p)")
    if not os.path.isdir(path):
        raise ConfigurationError(f"--out {path} is a file; name a directory")
    return path


def _baseline_target(path: str) -> None:
    """``--update-baseline`` will write ``path``: its directory must be there."""
    if os.path.isdir(path):
        raise ConfigurationError(f"--baseline {path} is a directory; name a JSON file")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ConfigurationError(
            f"--baseline {path}: directory {parent} does not exist; create it first"
        )


# -- the engine of each run ----------------------------------------------------------------


class _Engine:
    """Makes the Synth of each run from settings checked once, up front (every run has
    its own Synth: its own metrics, connections and cache)."""

    def __init__(self, args: argparse.Namespace) -> None:
        check_generation_arguments(args)
        self.mock: SimConfig | None = None
        tps = args.sim_tokens_per_s
        if args.mock_server:
            self.mock = self._mock_config(args)
            # the server takes the simulator's flags: no sim: model runs here
            args = argparse.Namespace(**{**vars(args), "sim_latency": None, "sim_seed": None})
        elif not args.models:
            args = argparse.Namespace(**{**vars(args), "models": ["sim:sim-1"]})
        self.settings: Settings = resolve_settings(args)
        if self.mock is not None:
            self.specs = [self._mock_spec("http://127.0.0.1:9/v1")]  # the real URL at start
        else:
            self.specs = self.settings.specs()
            if tps is not None:
                if not any(s.provider == "sim" for s in self.specs):
                    raise ConfigurationError(
                        "--sim-tokens-per-s applies to sim: models and none is selected; drop "
                        "it or add -m sim:sim-1"
                    )
                self.specs = [
                    replace(s, options={**s.options, "tokens_per_s": tps})
                    if s.provider == "sim"
                    else s
                    for s in self.specs
                ]
        settings = self.settings
        self.defaults = request_defaults(args, settings)
        self.make(settings.concurrency, None)  # models, keys, parameters: checked now

    @staticmethod
    def _mock_config(args: argparse.Namespace) -> SimConfig:
        """The mock server's behaviour, from the simulator's flags."""
        options: dict[str, Any] = {}
        if args.sim_latency is not None:
            try:
                options["latency"] = parse_latency(args.sim_latency)
            except ConfigurationError as exc:
                raise ConfigurationError(f"--sim-latency: {exc}") from None
        if args.sim_tokens_per_s is not None:
            options["tokens_per_s"] = args.sim_tokens_per_s
        if args.sim_seed is not None:
            options["seed"] = args.sim_seed
        return SimConfig.from_mapping(options)

    @staticmethod
    def _mock_spec(base_url: str) -> ModelSpec:
        return ModelSpec("openai", _MOCK_MODEL, base_url=base_url, api_key="synth-bench")

    @contextmanager
    def started(self) -> Iterator[None]:
        """Start the mock server, if any, for the ``with`` block."""
        if self.mock is None:
            yield
            return
        with spawn_mock_server(self.mock) as url:
            self.specs = [self._mock_spec(f"{url}/v1")]
            yield

    @property
    def simulator(self) -> bool:
        """Every model is an in-process sim: one (what ``cpu_vs_simulator`` needs)."""
        return self.mock is None and all(s.provider == "sim" for s in self.specs)

    @property
    def target(self) -> str:
        if self.mock is not None:
            return f"openai:{_MOCK_MODEL} on synth mock-server in its own process"
        names = ", ".join(s.name for s in self.specs)
        sim = all(s.provider == "sim" for s in self.specs)
        return f"{names}{' (in-process simulator)' if sim else ''}"

    def make(self, concurrency: int, cache: Cache | None) -> Synth:
        return Synth(
            self.specs,
            max_concurrency=concurrency,
            max_tokens=self.settings.max_tokens,
            strategy=self.settings.strategy,
            defaults=self.defaults,
            cache=cache,
        )


# -- the run ---------------------------------------------------------------------------------


class _RunView:
    """The bench's progress hook into the live display: one run at a time, each from its
    first report to its last (``final``)."""

    def __init__(self, display: LiveDisplay, config: BenchConfig) -> None:
        self.display = display
        self.total = config.requests
        self.closed_loop = config.rate is None
        self._run: tuple[str, float] | None = None  # label and elapsed, last seen

    def __call__(self, p: Progress) -> None:
        display = self.display
        if not display.shows:
            return
        last = self._run
        if not display.active or last is None or p.label != last[0] or p.elapsed < last[1]:
            display.start(
                self.total,
                label=p.label,
                elapsed=p.elapsed,
                ignore=by_design(p.label, closed_loop=self.closed_loop),
            )
        self._run = (p.label, p.elapsed)
        display.update(p.finished - p.failed, p.failed, p.metrics)
        if p.final:
            display.finish()
            self._run = None


async def _repeat(
    config: BenchConfig, engine: _Engine, repeats: int, hook: ProgressHook | None
) -> list[Measurement]:
    """The reports need every repeat's figures but only the last one's runs: an earlier
    repeat's runs are dropped before the next starts (so its memory suite's peak does
    not grow with the repeats before it)."""
    out: list[Measurement] = []
    for _ in range(repeats):
        if out:
            out[-1] = out[-1].figures_only()
        out.append(await run_bench(config, engine.make, on_progress=hook))
    return out


def _measure(
    config: BenchConfig, engine: _Engine, repeats: int, hook: ProgressHook | None = None
) -> list[Measurement]:
    """``repeats`` repeats of every suite, on one event loop."""
    return run_async(_repeat, config, engine, repeats, hook)


def _samples(measurements: Sequence[Measurement]) -> dict[str, list[float | None]]:
    """Per gate figure, one value per repeat (``None`` where a repeat lacks it)."""
    per_repeat = [m.gate_figures() for m in measurements]
    names = dict.fromkeys(name for figures in per_repeat for name in figures)
    return {name: [figures.get(name) for figures in per_repeat] for name in names}


def _measured_by(figure: str) -> str:
    suites = figure_suites(figure)
    if set(suites) == set(SUITES):
        return "every suite measures it"
    return f"the {' or '.join(suites)} suite measures it"


def _unknown(figure: str) -> str:
    # 0.75: a typo (latency_99), not another figure of a similar shape (itl_p50, ttft_p50)
    close = difflib.get_close_matches(figure, GATE_FIGURES, n=1, cutoff=0.75)
    if close:
        return f"not a figure the gate reads; did you mean {close[0]} ({_measured_by(close[0])})?"
    return f"not a figure the gate reads; choose from {', '.join(GATE_FIGURES)}"


def _unmeasured(figure: str, suites: Sequence[str], simulator: bool) -> str:
    if figure == "cpu_vs_simulator" and not simulator:
        return (
            "measured on the simulator only (CPU per request against the bare simulator's); "
            "bench a sim: model without --mock-server"
        )
    needed = figure_suites(figure)
    return (
        f"{_measured_by(figure)}, and this run leaves it out; add it: "
        f"synth bench {' '.join((*suites, needed[0]))}"
    )


def _short_why(figure: str, simulator: bool) -> str:
    if figure not in GATE_FIGURES:
        return "not a figure the gate reads"
    if figure == "cpu_vs_simulator" and not simulator:
        return "measured on the simulator only"
    return f"the {' or '.join(figure_suites(figure))} suite"


def _gate_figures(
    thresholds: Thresholds,
    baseline: Baseline | None,
    baseline_name: str | None,
    suites: Sequence[str],
    simulator: bool,
) -> Thresholds:
    """Every figure the gate will read, checked against what ``suites`` measure before
    anything runs: a typo, or a figure no chosen suite measures, would otherwise fail
    only after every repeat. Default limits (no [thresholds] table) are kept only on
    figures this run measures."""
    measured = measured_figures(suites, simulator=simulator)
    if thresholds.default_limits:
        kept = tuple(t for t in thresholds.limits if t.figure in measured)
        thresholds = replace(thresholds, limits=kept)
    source = thresholds.source or "--check"
    named: dict[str, str] = {}  # figure -> where it is named
    for limit in thresholds.limits:
        named.setdefault(limit.figure, f"{source}: [thresholds] {limit.figure}")
    for figure in thresholds.figures_for_regression or ():
        named.setdefault(figure, f"{source}: [regression] figures: {figure}")
    problems = []
    for figure, where in named.items():
        if figure not in GATE_FIGURES:
            problems.append(f"{where}: {_unknown(figure)}")
        elif figure not in measured:
            problems.append(f"{where}: {_unmeasured(figure, suites, simulator)}")
    if baseline is not None and thresholds.figures_for_regression is None:
        # each figure of the baseline is compared, so each must be measured
        unmeasured: dict[str, list[str]] = {}  # why -> figures
        for figure in baseline.figures:
            if figure not in measured:
                unmeasured.setdefault(_short_why(figure, simulator), []).append(figure)
        if unmeasured:
            listed = "; ".join(f"{', '.join(fs)} ({why})" for why, fs in unmeasured.items())
            problems.append(
                f"--baseline {baseline_name} holds figures this run does not measure: {listed}; "
                "add the suite, name the figures to compare in [regression] figures of "
                "--check FILE, or rerun with --update-baseline"
            )
    if problems:
        raise ConfigurationError("\n".join(problems))
    return thresholds


class _Gate:
    """``--check`` / ``--baseline`` / ``--update-baseline``, files read and checked
    against the suites up front."""

    def __init__(self, args: argparse.Namespace, suites: Sequence[str], simulator: bool) -> None:
        thresholds = (
            load_thresholds(args.check) if args.check is not None else Thresholds(limits=())
        )
        self.update = args.baseline if args.update_baseline else None
        if self.update is not None:
            _baseline_target(self.update)
        self.baseline = (
            load_baseline(args.baseline)
            if args.baseline is not None and not args.update_baseline
            else None
        )
        self.thresholds = _gate_figures(thresholds, self.baseline, args.baseline, suites, simulator)
        self.repeats: int = args.repeats or self.thresholds.repeats
        self._check_repeats(args)

    def _check_repeats(self, args: argparse.Namespace) -> None:
        """Refuse repeats too few for the U test to ever reach alpha (the check
        :func:`load_thresholds` makes on its own ``repeats``): such a gate passes
        whatever regressed."""
        t, n = self.thresholds, self.repeats
        alpha = t.alpha
        if args.repeats is not None:
            given = f"--repeats {n}"
        elif t.source is not None:
            given = f"[regression] repeats = {n} of {t.source}"
        else:
            given = f"the default {n} repeats"
        if self.baseline is not None:
            figures = self.baseline.figures
            compared = t.figures_for_regression or tuple(figures)
            sizes = [len(figures[f]) for f in compared if f in figures]
            if not sizes:
                return
            m = min(sizes)
            floor = smallest_p_value(n, m)
            if floor > alpha:
                fix = f"use --repeats {min_repeats(alpha, m)} or more"
                if m < min_repeats(alpha):
                    fix += f", or record a baseline of {min_repeats(alpha)} repeats or more"
                raise ConfigurationError(
                    f"{given} against the {m} samples per figure of {args.baseline} can never "
                    f"show a regression at alpha = {alpha:g} (the smallest one-sided p-value "
                    f"is {floor:.3g}); {fix}"
                )
        elif self.update is not None and smallest_p_value(n, n) > alpha:
            raise ConfigurationError(
                f"{given} would record a baseline against which {n} repeats can never show "
                f"a regression at alpha = {alpha:g} (the smallest one-sided p-value is "
                f"{smallest_p_value(n, n):.3g}); use --repeats {min_repeats(alpha)} or more"
            )

    def run(
        self, config: BenchConfig, engine: _Engine, repeats: int, hook: ProgressHook | None
    ) -> tuple[list[Measurement], Measurement, dict[str, Any], bool]:
        """Measure through the gate; ``(first measurements, the last repeat run, report,
        passed)``: the runs of a confirming rerun's last repeat when there was one."""
        calls: list[list[Measurement]] = []

        def measure() -> Mapping[str, Sequence[float | None]]:
            if calls:  # a rerun starts on what the first run's repeats start on
                last = calls[-1][-1]
                calls[-1][-1] = last.figures_only()
                del last
            calls.append(_measure(config, engine, repeats, hook))
            return _samples(calls[-1])

        machine = machine_environment()
        report = gate(
            measure, baseline=self.baseline, thresholds=self.thresholds, environment=machine
        )
        text = report.render()
        if self.update is not None:
            if report.passed:
                save_baseline(self.update, report.samples, machine)
                text += f"\nbaseline written to {self.update}"
            else:
                text += f"\nbaseline {self.update} not updated: the run failed the thresholds"
        return calls[0], calls[-1][-1], {**report.to_dict(), "text": text}, report.passed


def _check_figures(args: argparse.Namespace, figures: Mapping[str, float]) -> list[str]:
    """The flag thresholds, on the median figures."""
    failures = []
    throughput = figures.get("throughput", math.nan)
    if args.min_throughput is not None and not throughput >= args.min_throughput:
        failures.append(f"throughput {throughput:.0f} < {args.min_throughput:g} req/s")
    p99 = figures.get("latency_p99")
    if args.max_p99 is not None and (p99 is None or p99 > args.max_p99):
        failures.append(f"p99 latency {p99} > {args.max_p99:g} s")
    cpu = figures.get("cpu_us_per_request", math.nan)
    if args.max_cpu_us is not None and not cpu <= args.max_cpu_us:
        failures.append(f"CPU {cpu:.1f} > {args.max_cpu_us:g} us/request")
    errors = figures.get("error_rate", math.nan)
    if args.max_error_rate is not None and not errors <= args.max_error_rate:
        failures.append(f"error rate {errors:.4f} > {args.max_error_rate:g}")
    return failures


class _Reports:
    """The report files, opened (so checked) before anything runs."""

    def __init__(self, args: argparse.Namespace, suites: Sequence[str]) -> None:
        self.plot_names: list[str] = []
        if args.plots:
            require_matplotlib()
            self.plot_names = planned_plots(suites)
        out = None if args.out is None else _out_dir(args.out)
        self.files: dict[str, Output] = {}
        try:
            if args.json is not None:
                self.files["--json"] = Output.open("--json", args.json)
            if out is not None:
                for name in ("bench.json", "bench.md", *self.plot_names):
                    self.files[name] = Output.open("--out", os.path.join(out, name))
        except BaseException:
            self.close(End.FAILED)
            raise

    def write(self, name: str, data: bytes) -> None:
        output = self.files.get(name)
        if output is not None:
            output.add(data)

    def close(self, end: End) -> None:
        for output in self.files.values():
            output.close(end)


def run(args: argparse.Namespace) -> int:
    _check(args)
    engine = _Engine(args)
    config = _config(args, engine.settings.concurrency)
    gating = args.check is not None or args.baseline is not None
    checker = _Gate(args, config.suites, engine.simulator) if gating else None
    repeats = checker.repeats if checker is not None else args.repeats or 1
    reports = _Reports(args, config.suites)
    display = LiveDisplay("bench", quiet=args.quiet, every=args.progress_every)
    hook = _RunView(display, config) if display.shows else None  # else no metrics read
    end = End.FAILED  # an unfinished run leaves old reports as they were
    try:
        with engine.started():
            gate_report: dict[str, Any] | None = None
            passed = True
            if checker is not None:
                measurements, last, gate_report, passed = checker.run(config, engine, repeats, hook)
            else:
                measurements = _measure(config, engine, repeats, hook)
                last = measurements[-1]
            display.finish()
            profile = (
                run_async(profile_suite, config, engine.make, config.suites[0])
                if args.profile
                else None
            )
        report = _report(args, config, engine, repeats, measurements, last, profile, gate_report)
        failures = report["checks"]["failures"] if "checks" in report else []
        reports.write("--json", _json(median_headline(measurements)))
        reports.write("bench.json", _json(report))
        reports.write("bench.md", render_markdown(report, reports.plot_names).encode())
        if reports.plot_names:
            for name, png in render_plots(last).items():
                reports.write(name, png)
        end = End.COMPLETE
    finally:
        display.finish()
        reports.close(end)
    summary = render_summary(report)
    if gate_report is not None:
        summary += "\n" + gate_report["text"]
    if args.json == "-":
        say(summary)  # stdout carries the JSON alone
    else:
        print(summary, flush=True)
    for failure in failures:
        say(f"FAIL: {failure}")
    for label, analysis in analyze_runs(last).items():
        display.explain(analysis.report, run=label)
    return 1 if failures or not passed else 0


def _json(value: Any) -> bytes:
    return json.dumps(value, indent=2, default=str).encode() + b"\n"


def _report(
    args: argparse.Namespace,
    config: BenchConfig,
    engine: _Engine,
    repeats: int,
    measurements: list[Measurement],
    last: Measurement,
    profile: dict[str, Any] | None,
    gate_report: dict[str, Any] | None,
) -> dict[str, Any]:
    settings = engine.settings
    configuration = {
        "target": engine.target,
        **config.to_json(),
        "repeats": repeats,
        "max_tokens": settings.max_tokens,
        "models": [s.name for s in engine.specs],
        "sim_latency": args.sim_latency,
        "sim_tokens_per_s": args.sim_tokens_per_s,
        "mock_server": bool(args.mock_server),
    }
    thresholds_given = any(
        v is not None
        for v in (args.min_throughput, args.max_p99, args.max_cpu_us, args.max_error_rate)
    )
    figures = median_figures(m.gate_figures() for m in measurements)
    return build_report(
        measurements=measurements,
        runs_of=last,
        configuration=configuration,
        environment=environment(last.event_loop),
        samples_limit=config.samples,
        profile=profile,
        gate=gate_report,
        checks=_check_figures(args, figures) if thresholds_given else None,
    )
