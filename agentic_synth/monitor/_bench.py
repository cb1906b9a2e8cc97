"""The suites of ``synth bench``: which workloads run, and what each one adds.

=============  ==========================================================================
throughput     closed loop at ``concurrency`` (or open loop at ``rate``): req/s, output
               tokens/s, CPU per request, latency percentiles
latency        one request at a time (or open loop at ``rate``): the latency distribution
               without queueing in the client
memory         the throughput workload through ``iter_batch`` (which keeps no result),
               RSS sampled: the run's own peak RSS, RSS growth per 1,000 requests
cache          Zipf-repeated prompts (seeded), without then with an in-memory cache, in
               the same run: hit rate and speedup
concurrency    closed loop at each ``sweep`` level: throughput against concurrency, and
               the knee (:mod:`._knee`)
streaming      ``generate_stream``: TTFT, TPOT, ITL (definitions in :mod:`._load`)
=============  ==========================================================================

Every run gets a fresh Synth from ``make`` (its own metrics, connections and
cache), so runs never share state. CPU is this process's: a mock server's CPU is
its own.
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import itertools
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from ..caching._cache import Cache
from . import _load as _load_module
from ._knee import find_knee
from ._load import Api, Arrival, Load, ProgressHook, Recorder, run_load
from ._metrics import MetricsSnapshot

if TYPE_CHECKING:
    from .._synth import Synth

__all__ = [
    "DEFAULT_SWEEP",
    "GATE_FIGURES",
    "SAMPLE_LIMIT",
    "SUITES",
    "BenchConfig",
    "MakeSynth",
    "Measurement",
    "RunResult",
    "SuiteResult",
    "environment",
    "figure_suites",
    "measured_figures",
    "median_headline",
    "peak_rss_mb",
    "profile_suite",
    "reset_peak_rss",
    "rss_mb",
    "run_bench",
    "zipf_prompts",
]

SUITES = ("throughput", "latency", "memory", "cache", "concurrency", "streaming")
DEFAULT_SWEEP = (1, 2, 4, 8, 16, 32, 64, 128)
#: Per-request samples a run keeps for the report (a sweep shares it between levels).
SAMPLE_LIMIT = 10_000
#: The figures the CI gate reads, one value per repeat (see Measurement.gate_figures).
GATE_FIGURES = (
    "throughput",
    "cpu_vs_simulator",
    "latency_p50",
    "latency_p90",
    "latency_p95",
    "latency_p99",
    "cpu_us_per_request",
    "error_rate",
    "peak_rss_mb",
    "cache_hit_rate",
    "ttft_p50",
    "ttft_p99",
    "tpot_p50",
)
#: Suites a figure is taken from, first present wins.
_SOURCES: dict[str, tuple[str, ...]] = {
    "throughput": ("throughput", "memory", "streaming", "cache", "latency", "concurrency"),
    "cpu_us_per_request": ("throughput", "memory", "streaming", "cache", "latency", "concurrency"),
    "cpu_vs_simulator": ("throughput",),
    "error_rate": ("throughput", "memory", "streaming", "cache", "latency", "concurrency"),
    "latency_p50": ("latency", "throughput", "memory", "streaming", "cache", "concurrency"),
    "latency_p90": ("latency", "throughput", "memory", "streaming", "cache", "concurrency"),
    "latency_p95": ("latency", "throughput", "memory", "streaming", "cache", "concurrency"),
    "latency_p99": ("latency", "throughput", "memory", "streaming", "cache", "concurrency"),
    "peak_rss_mb": ("memory",),
    "cache_hit_rate": ("cache",),
    "ttft_p50": ("streaming",),
    "ttft_p99": ("streaming",),
    "tpot_p50": ("streaming",),
}
_ZIPF_S = 1.1
#: Left out of a profile: the bench's own drivers.
_OWN_FILES = frozenset({__file__, _load_module.__file__})
_CHECKPOINTS = 50  # RSS readings in a memory run of known length
_CLEAR_REFS = "/proc/self/clear_refs"
#: VmHWM may exceed VmRSS by this much (KiB) right after a reset that worked.
_RESET_SLACK_KB = 1024


#: ``make(concurrency, cache)``: a fresh, unopened Synth for one run.
MakeSynth = Callable[[int, Cache | None], "Synth"]


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """What to run; ``requests`` or ``duration`` sets the length of every run."""

    suites: tuple[str, ...] = ("throughput",)
    concurrency: int = 64
    requests: int | None = 2000
    duration: float | None = None
    rate: float | None = None
    arrival: Arrival = "constant"
    sweep: tuple[int, ...] = DEFAULT_SWEEP
    seed: int = 0
    samples: int = SAMPLE_LIMIT
    knee_threshold: float = 0.10

    def __post_init__(self) -> None:
        unknown = [s for s in self.suites if s not in SUITES]
        if unknown:
            raise ValueError(f"unknown suite {unknown[0]!r}; choose from {', '.join(SUITES)}")
        if (self.requests is None) == (self.duration is None):
            raise ValueError("set exactly one of requests and duration")

    def load(self, concurrency: int | None = None, *, api: Api = "generate_batch") -> Load:
        return Load(
            concurrency=self.concurrency if concurrency is None else concurrency,
            requests=self.requests,
            duration=self.duration,
            rate=self.rate,
            arrival=self.arrival,
            seed=self.seed,
            api=api,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "suites": list(self.suites),
            "concurrency": self.concurrency,
            "requests": self.requests,
            "duration": self.duration,
            "loop": "closed" if self.rate is None else "open",
            "rate": self.rate,
            "arrival": None if self.rate is None else self.arrival,
            "sweep": list(self.sweep) if "concurrency" in self.suites else None,
            "seed": self.seed,
            "samples_limit": self.samples,
            "knee_threshold": self.knee_threshold,
        }


@dataclass(slots=True)
class RunResult:
    """One run of a suite: its load, figures, timeline and kept samples."""

    label: str
    load: Load
    figures: dict[str, Any]
    timeline: list[dict[str, float]]
    samples: list[dict[str, Any]]
    #: Sorted E2E latencies of every success (the CDF plot); not written to the report.
    latencies: list[float] = field(repr=False)
    #: ``(requests started, probe value)`` readings (the memory suite's RSS).
    checkpoints: list[tuple[int, float]] = field(default_factory=list)
    #: Bytes the bench itself kept per request (its arrays).
    bookkeeping: float = 0.0
    #: The engine's metrics at the run's end: what the bottleneck analysis reads.
    metrics: MetricsSnapshot | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        total = self.figures["succeeded"] + self.figures["failed"]
        return {
            "label": self.label,
            "load": self.load.to_json(),
            "figures": self.figures,
            "timeline": self.timeline,
            "samples": {
                "kept": len(self.samples),
                "total": total,
                "selection": "all" if len(self.samples) >= total else "uniform random, seeded",
                "rows": self.samples,
            },
        }


@dataclass(slots=True)
class SuiteResult:
    """A suite: its headline figures, its runs and suite-specific details."""

    name: str
    figures: dict[str, Any]
    runs: list[RunResult]
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "figures": self.figures,
            "details": self.details,
            "runs": [run.to_json() for run in self.runs],
        }


@dataclass(slots=True)
class Measurement:
    """One repeat: every suite asked for, in order."""

    suites: dict[str, SuiteResult]
    #: The process's peak RSS at the end (startup and every suite included; a memory
    #: suite's reset of the high-water mark hides nothing of this repeat).
    peak_rss_mb: float | None
    event_loop: str

    def gate_figures(self) -> dict[str, float]:
        """The :data:`GATE_FIGURES` this repeat measured (a figure no suite measured
        is absent): each from the first suite of its list in ``_SOURCES``."""
        out: dict[str, float] = {}
        for name in GATE_FIGURES:
            for suite in _SOURCES[name]:
                value = self.suites[suite].figures.get(name) if suite in self.suites else None
                if value is not None:
                    out[name] = float(value)
                    break
        if "peak_rss_mb" not in out and self.peak_rss_mb is not None:
            out["peak_rss_mb"] = self.peak_rss_mb
        return out

    def headline(self) -> dict[str, Any]:
        """The figures of the first suite: what ``--json`` writes, as before suites."""
        return next(iter(self.suites.values())).figures

    def figures_only(self) -> Measurement:
        """This repeat without its runs (samples, latencies, timelines, metrics): all a
        repeat before the last needs to keep, so that the next repeat's memory suite
        does not start on top of this one's arrays."""
        suites = {
            name: SuiteResult(name, suite.figures, [], {}) for name, suite in self.suites.items()
        }
        return Measurement(suites, self.peak_rss_mb, self.event_loop)


def figure_suites(figure: str) -> tuple[str, ...]:
    """The suites that measure gate figure ``figure`` (empty: not a gate figure)."""
    return _SOURCES.get(figure, ())


def measured_figures(suites: Iterable[str], *, simulator: bool = True) -> frozenset[str]:
    """The :data:`GATE_FIGURES` a repeat of ``suites`` measures, known before it runs:
    ``cpu_vs_simulator`` only on the simulator, ``peak_rss_mb`` always (without the
    memory suite, the process's peak stands in)."""
    chosen = set(suites)
    out = {name for name in GATE_FIGURES if chosen.intersection(_SOURCES[name])}
    if not simulator:
        out.discard("cpu_vs_simulator")
    out.add("peak_rss_mb")
    return frozenset(out)


def median_headline(measurements: Sequence[Measurement]) -> dict[str, Any]:
    """The first suite's figures over the repeats, for ``--json``: one repeat's as they
    are; of several, each number the median of the repeats that measured it (the
    summary's figures), anything else (models, errors by class) the last repeat's."""
    if len(measurements) == 1:
        return measurements[0].headline()
    heads = [m.headline() for m in measurements]
    out: dict[str, Any] = {}
    for name, last in heads[-1].items():
        values = [h.get(name) for h in heads]
        numbers = [v for v in values if _is_number(v)]
        if not numbers or len(numbers) < sum(v is not None for v in values):
            out[name] = last
            continue
        middle = statistics.median(numbers)
        whole = all(isinstance(v, int) for v in numbers) and float(middle).is_integer()
        out[name] = int(middle) if whole else middle
    out["repeats"] = len(measurements)
    return out


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


# -- memory --------------------------------------------------------------------------


def rss_mb() -> float | None:
    """This process's resident set now (MiB); ``None`` without /proc."""
    try:
        with open("/proc/self/statm", "rb") as f:
            resident = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return resident * os.sysconf("SC_PAGE_SIZE") / 2**20


def _status_kb(*keys: bytes) -> dict[bytes, int]:
    """Fields of /proc/self/status in KiB (those present), read at one instant."""
    out: dict[bytes, int] = {}
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                key = line.split(b":", 1)[0]
                if key in keys:
                    out[key] = int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return {}
    return out


def peak_rss_mb() -> float | None:
    """This process's peak resident set (MiB) since it started or since
    :func:`reset_peak_rss`: VmHWM, else ru_maxrss (which cannot be reset)."""
    hwm = _status_kb(b"VmHWM").get(b"VmHWM")
    if hwm is not None:
        return hwm / 1024
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes there, KiB here


def reset_peak_rss() -> bool:
    """Make VmHWM the current RSS, so :func:`peak_rss_mb` is the peak from now on.

    Linux 4.0+: "5" written to /proc/self/clear_refs. False where that is missing or
    not permitted (containers, other systems), or VmHWM did not drop to VmRSS: then
    only RSS readings taken along the way tell a later peak from an earlier one.
    """
    try:
        with open(_CLEAR_REFS, "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        return False
    status = _status_kb(b"VmHWM", b"VmRSS")
    hwm, rss = status.get(b"VmHWM"), status.get(b"VmRSS")
    return hwm is not None and rss is not None and hwm <= rss + _RESET_SLACK_KB


def _growth_per_1k(points: list[tuple[int, float]]) -> float | None:
    """Least-squares slope of RSS against requests done, per 1,000 requests, after the
    first 10% of readings (allocator and cache warm-up)."""
    points = points[len(points) // 10 :]
    if len(points) < 3:
        return None
    n = len(points)
    mx = math.fsum(x for x, _ in points) / n
    my = math.fsum(y for _, y in points) / n
    sxx = math.fsum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    sxy = math.fsum((x - mx) * (y - my) for x, y in points)
    return sxy / sxx * 1000


# -- workloads -----------------------------------------------------------------------


async def simulator_cpu_us(n: int, max_tokens: int = 64) -> float:
    """CPU microseconds per request of the bare simulator (no engine): the same-run
    baseline of ``cpu_vs_simulator``. Best of three passes over ``n`` prompts."""
    from .._request import GenerationParams, build_request
    from .._spec import ModelSpec
    from ..providers import create_provider

    provider = create_provider(ModelSpec("sim", "baseline"), max_connections=1)
    params = GenerationParams(max_tokens=max_tokens)
    requests = [build_request(_prompt(i), params) for i in range(max(1, n))]
    best = math.inf
    try:
        for _ in range(3):
            started = time.process_time()
            for request in requests:
                await provider.complete("baseline", request)
            best = min(best, time.process_time() - started)
    finally:
        await provider.aclose()
    return best / len(requests) * 1e6


def _prompt(i: int) -> str:
    return f"Write one sentence about topic {i}."


def _distinct_prompts() -> Iterator[str]:
    return map(_prompt, itertools.count())


def zipf_prompts(unique: int, s: float = _ZIPF_S, seed: int = 0) -> Iterator[str]:
    """Prompts drawn forever from ``unique`` topics, topic k with weight 1 / k**s
    (seeded): a few hot prompts and a long tail, as repeated work looks."""
    cum = list(itertools.accumulate(1.0 / (k**s) for k in range(1, unique + 1)))
    rng = random.Random(seed)
    topics = range(unique)
    while True:
        yield from map(_prompt, rng.choices(topics, cum_weights=cum, k=1024))


class _Bench:
    def __init__(
        self,
        config: BenchConfig,
        make: MakeSynth,
        on_progress: ProgressHook | None,
        *,
        collect: bool = True,
    ) -> None:
        self.config = config
        self.make = make
        self.on_progress = on_progress
        self.collect = collect
        #: The process's peak before a memory suite reset the high-water mark.
        self.peak_before_reset: float | None = None

    async def run(
        self,
        label: str,
        load: Load,
        prompts: Iterable[str],
        *,
        cache: Cache | None = None,
        checkpoint: tuple[int, Callable[[], float | None]] | None = None,
        samples: int | None = None,
    ) -> RunResult:
        if self.collect:
            gc.collect()  # garbage of the run before is not this run's CPU
        synth = self.make(load.concurrency, cache)
        recorder = Recorder(checkpoint=checkpoint)
        async with synth:
            await run_load(
                synth, prompts, load, recorder, label=label, on_progress=self.on_progress
            )
            engine = synth.metrics()
        figures = recorder.figures(streams=load.stream)
        if load.rate is not None:
            figures["offered_rate"] = load.rate
        figures.update(
            {
                "concurrency": load.concurrency,
                "models": synth.models,
                "cancelled": engine.cancelled,
                "input_tokens": engine.input_tokens,
                "output_tokens": engine.output_tokens,
                "cache_hit_rate": engine.cache_hit_rate,
            }
        )
        latencies = recorder.latencies()
        latencies.sort()
        limit = self.config.samples if samples is None else samples
        return RunResult(
            label,
            load,
            figures,
            recorder.timeline(),
            recorder.samples(limit, self.config.seed),
            latencies,
            recorder.checkpoints,
            recorder.nbytes() / max(1, len(recorder.starts)),
            metrics=engine,
        )

    async def suite(self, name: str) -> SuiteResult:
        run: Callable[[], Any] = getattr(self, f"_{name}")
        result: SuiteResult = await run()
        return result

    async def _throughput(self) -> SuiteResult:
        run = await self.run("throughput", self.config.load(), _distinct_prompts())
        figures = dict(run.figures)
        models = figures.get("models") or []
        if models and all(str(m).startswith("sim:") for m in models):
            # CPU per request as a multiple of the bare simulator's, measured in this
            # run: a figure a CI gate can compare across machines of different speed
            simulator = await simulator_cpu_us(min(int(figures.get("requests") or 2000), 5000))
            figures["simulator_cpu_us"] = simulator
            figures["cpu_vs_simulator"] = figures["cpu_us_per_request"] / simulator
        return SuiteResult("throughput", figures, [run])

    async def _latency(self) -> SuiteResult:
        load = self.config.load()
        if load.rate is None:
            load = replace(load, concurrency=1)
        run = await self.run("latency", load, _distinct_prompts())
        return SuiteResult("latency", run.figures, [run])

    async def _streaming(self) -> SuiteResult:
        run = await self.run(
            "streaming", self.config.load(api="generate_stream"), _distinct_prompts()
        )
        return SuiteResult("streaming", run.figures, [run])

    async def _memory(self) -> SuiteResult:
        """The run's own peak: the high-water mark reset before it where the kernel
        allows (exact), else the largest RSS reading along the way (a lower bound):
        never the peak of a suite or repeat before it."""
        requests = self.config.requests
        every = max(1, requests // _CHECKPOINTS) if requests is not None else 200
        if self.collect:
            gc.collect()  # the garbage of the suites before is not this run's peak
        before = peak_rss_mb()
        reset = reset_peak_rss()
        if reset and before is not None:
            self.peak_before_reset = max(before, self.peak_before_reset or 0.0)
        start = rss_mb()
        # iter_batch keeps no result: what grows is the engine's, not a list of answers
        load = self.config.load(api="iter_batch")
        run = await self.run("memory", load, _distinct_prompts(), checkpoint=(every, rss_mb))
        end = rss_mb()
        readings = [mb for _, mb in run.checkpoints] + [v for v in (start, end) if v is not None]
        sampled = max(readings, default=None)
        peak = peak_rss_mb() if reset else sampled
        figures = dict(run.figures)
        figures.update(
            {
                "peak_rss_mb": peak,
                "rss_start_mb": start,
                "rss_end_mb": end,
                "rss_growth_mb_per_1k": _growth_per_1k(run.checkpoints),
                "bench_mb_per_1k": run.bookkeeping * 1000 / 2**20,
            }
        )
        details = {
            "peak_rss": (
                "VmHWM, reset before the run"
                if reset
                else f"the largest of {len(readings)} RSS readings (VmHWM could not be reset)"
            ),
            "rss_mb_by_requests": [[n, round(mb, 3)] for n, mb in run.checkpoints],
        }
        return SuiteResult("memory", figures, [run], details)

    async def _cache(self) -> SuiteResult:
        config = self.config
        unique = max(1, (config.requests or 4000) // 4)
        cache = Cache(("memory",), mode="shared", memory_entries=max(1000, unique))
        load = config.load()
        plain = await self.run("cache off", load, zipf_prompts(unique, seed=config.seed))
        cached = await self.run(
            "cache on", load, zipf_prompts(unique, seed=config.seed), cache=cache
        )
        sent = cached.figures["requests"]
        distinct = len(set(itertools.islice(zipf_prompts(unique, seed=config.seed), sent)))
        before = plain.figures["throughput"]
        figures = dict(cached.figures)
        figures.update(
            {
                "ideal_hit_rate": 1 - distinct / sent if sent else None,
                "speedup": figures["throughput"] / before if before else None,
                "throughput_uncached": before,
                "latency_p50_uncached": plain.figures["latency_p50"],
                "latency_p99_uncached": plain.figures["latency_p99"],
            }
        )
        details = {"unique_prompts": unique, "zipf_s": _ZIPF_S, "cache": "memory, shared mode"}
        return SuiteResult("cache", figures, [plain, cached], details)

    async def _concurrency(self) -> SuiteResult:
        config = self.config
        share = max(1, config.samples // len(config.sweep))
        runs = []
        for level in config.sweep:
            load = replace(config.load(level), rate=None)
            runs.append(
                await self.run(f"concurrency {level}", load, _distinct_prompts(), samples=share)
            )
        knee = find_knee(
            ((r.load.concurrency, r.figures["throughput"]) for r in runs), config.knee_threshold
        )
        assert knee is not None  # the sweep is never empty
        at = knee.concurrency if knee.concurrency is not None else knee.peak_concurrency
        figures = dict(next(r.figures for r in runs if r.load.concurrency == at))
        figures.update(
            {
                "knee_concurrency": knee.concurrency,
                "knee_throughput": knee.throughput,
                "peak_concurrency": knee.peak_concurrency,
                "peak_throughput": knee.peak_throughput,
            }
        )
        details = {
            "knee": {
                "concurrency": knee.concurrency,
                "throughput": knee.throughput,
                "threshold": knee.threshold,
                "rule": "smallest level c with X(c') < X(c) * (1 + threshold * log2(c'/c)) "
                "for every higher level c'",
                "text": knee.describe(),
            },
            "levels": [
                {
                    "concurrency": r.load.concurrency,
                    **{
                        k: r.figures[k]
                        for k in (
                            "throughput",
                            "latency_p50",
                            "latency_p99",
                            "error_rate",
                            "cpu_us_per_request",
                        )
                    },
                }
                for r in runs
            ],
        }
        return SuiteResult("concurrency", figures, runs, details)


async def run_bench(
    config: BenchConfig, make: MakeSynth, *, on_progress: ProgressHook | None = None
) -> Measurement:
    """Run every suite of ``config`` once, in order (one repeat).

    ``on_progress`` is called about twice a second while a run goes, with the run's
    label, counts and the engine's live metrics, and once when it ends (``final``):
    the place for a live display.
    """
    bench = _Bench(config, make, on_progress)
    suites = {name: await bench.suite(name) for name in config.suites}
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    peaks = [p for p in (bench.peak_before_reset, peak_rss_mb()) if p is not None]
    return Measurement(suites, max(peaks, default=None), loop)


async def profile_suite(
    config: BenchConfig, make: MakeSynth, suite: str, top: int = 25
) -> dict[str, Any]:
    """Run ``suite`` once more under cProfile; the ``top`` functions by cumulative time.

    A separate run, so the profiler's overhead (2-3x the CPU) never reaches the
    figures. The bench's own drivers (this module and :mod:`._load`) are left out of
    the list: they would top it without saying anything about the engine.
    """
    profiler = cProfile.Profile()
    bench = _Bench(config, make, None, collect=False)
    started = time.perf_counter()
    profiler.enable()
    try:
        await bench.suite(suite)
    finally:
        profiler.disable()
    wall = time.perf_counter() - started
    rows = []
    for entry in profiler.getstats():
        code = entry.code
        if isinstance(code, str):  # a built-in
            function = code
        elif code.co_filename in _OWN_FILES:
            continue
        else:
            function = f"{_short_path(code.co_filename)}:{code.co_firstlineno}({code.co_name})"
        rows.append((function, entry.callcount, entry.inlinetime, entry.totaltime))
    rows.sort(key=lambda row: row[3], reverse=True)
    return {
        "suite": suite,
        "seconds": wall,
        "sort": "cumulative",
        "top": [
            {"function": function, "calls": calls, "tottime": own_s, "cumtime": cumulative}
            for function, calls, own_s, cumulative in rows[:top]
        ],
    }


def _short_path(path: str) -> str:
    """``agentic_synth/_synth.py`` rather than the whole site-packages path."""
    for marker in ("/site-packages/", "/dist-packages/", "/lib/python"):
        if marker in path:
            return path.split(marker, 1)[1]
    root = str(Path(__file__).resolve().parents[2]) + os.sep
    return path[len(root) :] if path.startswith(root) else path


# -- environment ---------------------------------------------------------------------


def environment(event_loop: str | None = None) -> dict[str, Any]:
    """Where the figures were measured: the gate's machine description (CPU model,
    usable CPUs, OS, Python) plus the platform, the commit and the event loop."""
    from .. import __version__
    from ._gate import machine_environment

    commit, dirty = _git_commit()
    return {
        **machine_environment(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "package_version": __version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "event_loop": event_loop,
    }


def _git_commit() -> tuple[str | None, bool | None]:
    """The commit of the checkout this package runs from (an editable install), else
    ``(None, None)``: a package installed under some other repository is not it."""
    root = Path(__file__).resolve().parents[2]
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        lines = top.stdout.split()
        if top.returncode != 0 or len(lines) != 2 or Path(lines[0]).resolve() != root:
            return None, None
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None, None
    return lines[1], bool(status.stdout.strip()) if status.returncode == 0 else None


def median_figures(repeats: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Per figure, the median over the repeats that measured it."""
    by_name: dict[str, list[float]] = {}
    for figures in repeats:
        for name, value in figures.items():
            by_name.setdefault(name, []).append(value)
    out = {}
    for name, values in by_name.items():
        values.sort()
        mid = len(values) // 2
        out[name] = values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
    return out
