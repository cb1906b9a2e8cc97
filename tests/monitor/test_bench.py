"""The suites of ``synth bench`` on the simulator, and the reports made of them."""

from __future__ import annotations

import gc
import json
from itertools import islice
from typing import Any

import anyio
import pytest

from agentic_synth import Synth
from agentic_synth.caching._cache import Cache
from agentic_synth.monitor import _bench
from agentic_synth.monitor._bench import (
    GATE_FIGURES,
    SUITES,
    BenchConfig,
    Measurement,
    SuiteResult,
    environment,
    figure_suites,
    measured_figures,
    median_figures,
    median_headline,
    peak_rss_mb,
    profile_suite,
    reset_peak_rss,
    rss_mb,
    run_bench,
    zipf_prompts,
)
from agentic_synth.monitor._bench_report import (
    SCHEMA,
    build_report,
    format_seconds,
    render_markdown,
    render_summary,
)

PNG = b"\x89PNG\r\n\x1a\n"


def make(concurrency: int, cache: Cache | None) -> Synth:
    return Synth(["sim:sim-1"], max_concurrency=concurrency, max_tokens=16, cache=cache)


@pytest.fixture(scope="module")
def everything() -> Measurement:
    """Every suite once, small: the reports below are all made from it."""
    config = BenchConfig(suites=SUITES, requests=80, concurrency=8, sweep=(1, 2, 4), samples=50)
    return anyio.run(run_bench, config, make)


def test_every_suite_reports_its_figures(everything: Measurement) -> None:
    suites = everything.suites
    assert list(suites) == list(SUITES)
    for name, suite in suites.items():
        figures = suite.figures
        assert figures["error_rate"] == 0, name
        assert figures["throughput"] > 0 and figures["latency_p99"] is not None, name
    assert suites["latency"].runs[0].load.concurrency == 1
    assert suites["memory"].figures["peak_rss_mb"] > 0
    assert suites["memory"].runs[0].load.api == "iter_batch"
    assert suites["streaming"].figures["ttft_p50"] is not None
    assert suites["streaming"].figures["tpot_p50"] is not None
    assert "ttft_p50" not in suites["throughput"].figures
    cache = suites["cache"]
    assert [run.label for run in cache.runs] == ["cache off", "cache on"]
    assert cache.runs[0].figures["cache_hit_rate"] is None
    assert 0 < cache.figures["cache_hit_rate"] <= cache.figures["ideal_hit_rate"] + 1e-9
    assert cache.figures["speedup"] > 0
    sweep = suites["concurrency"]
    assert [r.load.concurrency for r in sweep.runs] == [1, 2, 4]
    assert [level["concurrency"] for level in sweep.details["levels"]] == [1, 2, 4]
    assert "knee" in sweep.details["knee"]["text"] or "no knee" in sweep.details["knee"]["text"]
    assert sum(len(r.samples) for r in sweep.runs) <= 50  # the levels share the limit


def test_gate_figures_come_from_the_right_suites(everything: Measurement) -> None:
    figures = everything.gate_figures()
    assert set(figures) == set(GATE_FIGURES)
    suites = everything.suites
    assert figures["throughput"] == suites["throughput"].figures["throughput"]
    assert figures["latency_p99"] == suites["latency"].figures["latency_p99"]
    assert figures["cache_hit_rate"] == suites["cache"].figures["cache_hit_rate"]
    assert figures["ttft_p50"] == suites["streaming"].figures["ttft_p50"]
    assert figures["peak_rss_mb"] == suites["memory"].figures["peak_rss_mb"]


def test_the_json_report_is_schema_versioned_and_complete(everything: Measurement) -> None:
    config = BenchConfig(suites=SUITES, requests=80, concurrency=8, sweep=(1, 2, 4), samples=50)
    report = build_report(
        measurements=[everything, everything],
        configuration={"target": "sim:sim-1 (in-process simulator)", **config.to_json()},
        environment=environment("asyncio"),
        samples_limit=50,
        checks=["throughput 1 < 2 req/s"],
    )
    report = json.loads(json.dumps(report))  # JSON all the way down
    assert report["schema"] == SCHEMA == "agentic-synth/bench/1"
    assert set(report["figures"]) == set(GATE_FIGURES)
    assert len(report["repeats"]) == 2
    env = report["environment"]
    for key in ("python", "platform", "cpu_count", "package_version", "git_commit", "event_loop"):
        assert key in env
    assert report["configuration"]["suites"] == list(SUITES)
    run = report["suites"]["throughput"]["runs"][0]
    assert run["load"]["loop"] == "closed" and run["load"]["requests"] == 80
    samples = run["samples"]
    assert samples["kept"] == len(samples["rows"]) == 50 and samples["total"] == 80
    assert samples["selection"] == "uniform random, seeded"
    row = samples["rows"][0]
    assert {"index", "start", "end", "ok", "latency", "output_tokens"} <= set(row)
    assert run["timeline"] and {"t", "throughput", "in_flight"} == set(run["timeline"][0])
    assert "TPOT" in report["definitions"]["tpot"]
    assert report["checks"] == {"passed": False, "failures": ["throughput 1 < 2 req/s"]}


def test_the_markdown_reads_on_its_own(everything: Measurement) -> None:
    report = build_report(
        measurements=[everything],
        configuration={"target": "sim:sim-1"},
        environment=environment("asyncio"),
        samples_limit=50,
        profile={
            "suite": "throughput",
            "seconds": 0.1,
            "top": [{"function": "x.py:1(f)", "calls": 3, "tottime": 0.01, "cumtime": 0.02}],
        },
    )
    text = render_markdown(report, ["latency_cdf.png"])
    for figure in GATE_FIGURES:
        assert f"| {figure} |" in text, figure
    for suite in SUITES:
        assert f"## {suite}" in text
    for words in ("TTFT", "TPOT", "ITL", "E2E latency", "peak RSS", "hit rate", "knee"):
        assert words in text, words
    assert "(E2E - TTFT) / (output_tokens - 1)" in text  # the formula next to the figure
    assert "![latency cdf](latency_cdf.png)" in text
    assert "`x.py:1(f)`" in text and "## Profile" in text
    assert "up to 50 per-request samples" in text
    summary = render_summary(report)
    assert summary.startswith("throughput: 80 requests, closed loop at concurrency 8")
    assert "knee" in summary


def test_open_loop_figures_in_the_report() -> None:
    config = BenchConfig(suites=("throughput",), requests=30, concurrency=4, rate=5000.0)
    measurement = anyio.run(run_bench, config, make)
    figures = measurement.suites["throughput"].figures
    assert figures["offered_rate"] == 5000.0
    assert figures["achieved_rate"] > 0 and figures["lag_max"] >= 0
    report = build_report(
        measurements=[measurement],
        configuration={},
        environment={},
        samples_limit=10,
    )
    assert "open loop at 5000 req/s (constant arrivals)" in render_summary(report)
    assert "schedule lag" in render_markdown(report)


def test_zipf_prompts_are_seeded_and_skewed() -> None:
    first = list(islice(zipf_prompts(100, seed=1), 2000))
    assert first == list(islice(zipf_prompts(100, seed=1), 2000))
    assert first != list(islice(zipf_prompts(100, seed=2), 2000))
    top = first.count("Write one sentence about topic 0.")
    tail = first.count("Write one sentence about topic 99.")
    assert top > 10 * max(tail, 1)


def test_median_figures() -> None:
    assert median_figures([{"a": 1.0, "b": 5.0}, {"a": 3.0}, {"a": 2.0, "b": 7.0}]) == {
        "a": 2.0,
        "b": 6.0,
    }


def test_format_seconds() -> None:
    assert format_seconds(0.000017) == "17 us"
    assert format_seconds(0.0123) == "12.3 ms"
    assert format_seconds(1.25) == "1.25 s"
    assert format_seconds(None) == "-"


def test_profile_lists_engine_functions_not_the_bench() -> None:
    config = BenchConfig(requests=50, concurrency=4)
    profile = anyio.run(profile_suite, config, make, "throughput")
    functions = [row["function"] for row in profile["top"]]
    assert len(functions) == 25
    assert any("agentic_synth/_synth.py" in f for f in functions)
    assert not any("monitor/_bench.py" in f or "monitor/_load.py" in f for f in functions)
    cumulative = [row["cumtime"] for row in profile["top"]]
    assert cumulative == sorted(cumulative, reverse=True)


def test_plots_are_png_files(everything: Measurement) -> None:
    pytest.importorskip("matplotlib")
    from agentic_synth.monitor._plots import planned_plots, render_plots

    plots = render_plots(everything)
    assert sorted(plots) == sorted(planned_plots(list(everything.suites)))
    assert "throughput_vs_concurrency.png" in plots
    for name, data in plots.items():
        assert data.startswith(PNG), name


# -- the memory suite's peak is its own ------------------------------------------------

_BLOB_MB = 200


def _high_water_then_free() -> float:
    """Touch 200 MB, free it (one mmap: back to the system at once); the peak it left."""
    blob = b"\x01" * (_BLOB_MB * 2**20)
    high = peak_rss_mb()
    del blob
    gc.collect()
    assert high is not None
    return high


@pytest.mark.parametrize("clear_refs", ["kernel", "missing"])
def test_the_memory_peak_excludes_what_came_before_the_run(
    clear_refs: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """200 MB touched and freed before the suite: its peak must not include them,
    whether the high-water mark can be reset (exact) or only RSS readings tell."""
    if rss_mb() is None:
        pytest.skip("no /proc/self/statm: RSS is not read here")
    if clear_refs == "missing":
        monkeypatch.setattr(_bench, "_CLEAR_REFS", "/nonexistent/clear_refs")
    high = _high_water_then_free()
    config = BenchConfig(suites=("memory",), requests=200, concurrency=8)
    memory = anyio.run(run_bench, config, make).suites["memory"]
    peak = memory.figures["peak_rss_mb"]
    assert memory.figures["rss_start_mb"] <= peak < high - _BLOB_MB * 3 / 4
    method = memory.details["peak_rss"]
    if clear_refs == "missing":
        assert method.startswith("the largest of ") and "could not be reset" in method
    elif reset_peak_rss():
        assert method == "VmHWM, reset before the run"


def test_reset_peak_rss_drops_the_high_water_mark_to_the_current_rss() -> None:
    _high_water_then_free()
    if not reset_peak_rss():
        pytest.skip("/proc/self/clear_refs cannot reset VmHWM here")
    peak, now = peak_rss_mb(), rss_mb()
    assert peak is not None and now is not None
    assert peak <= now + 1  # MiB: what the read itself allocated


def test_reset_peak_rss_is_false_where_it_cannot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_bench, "_CLEAR_REFS", "/nonexistent/clear_refs")
    assert reset_peak_rss() is False


def test_a_repeat_before_the_last_keeps_its_figures_not_its_runs(
    everything: Measurement,
) -> None:
    light = everything.figures_only()
    assert light.gate_figures() == everything.gate_figures()
    assert light.headline() == everything.headline()
    assert all(suite.runs == [] for suite in light.suites.values())
    assert all(suite.runs for suite in everything.suites.values())  # the original is whole


# -- what the gate can read, known before the run --------------------------------------


def test_measured_figures_follow_the_suites() -> None:
    assert measured_figures(SUITES) == set(GATE_FIGURES)
    throughput = measured_figures(("throughput",))
    assert {"throughput", "latency_p90", "latency_p95", "cpu_vs_simulator"} <= throughput
    assert "cache_hit_rate" not in throughput and "ttft_p50" not in throughput
    assert "peak_rss_mb" in throughput  # the process's peak stands in
    assert "cpu_vs_simulator" not in measured_figures(("throughput",), simulator=False)
    assert "cache_hit_rate" in measured_figures(("latency", "cache"))
    assert figure_suites("ttft_p99") == ("streaming",)
    assert figure_suites("latency_99") == ()


def test_measured_figures_match_a_real_repeat(everything: Measurement) -> None:
    assert set(everything.gate_figures()) == measured_figures(SUITES)
    config = BenchConfig(suites=("latency",), requests=20, concurrency=2)
    latency = anyio.run(run_bench, config, make)
    assert set(latency.gate_figures()) == measured_figures(("latency",))


# -- --json over repeats ---------------------------------------------------------------


def _repeat(**figures: Any) -> Measurement:
    return Measurement({"throughput": SuiteResult("throughput", dict(figures), [])}, None, "x")


def test_median_headline() -> None:
    one = _repeat(throughput=5.0, requests=30)
    assert median_headline([one]) == {"throughput": 5.0, "requests": 30}  # as before
    repeats = [
        _repeat(throughput=5.0, requests=30, succeeded=29, models=["a"], lag=None),
        _repeat(throughput=9.0, requests=30, succeeded=30, models=["b"], lag=None),
    ]
    assert median_headline(repeats) == {
        "throughput": 7.0,
        "requests": 30,
        "succeeded": 29.5,
        "models": ["b"],  # not a number: the last repeat's
        "lag": None,
        "repeats": 2,
    }
    assert type(median_headline(repeats)["requests"]) is int
    three = [_repeat(latency=v) for v in (0.3, None, 0.1)]
    assert median_headline(three)["latency"] == pytest.approx(0.2)  # over those measured
