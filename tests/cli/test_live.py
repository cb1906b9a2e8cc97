"""The live view (cli/_live.py): driven with a fake clock and fake snapshots for its
lines, cadence and findings; then through the commands for what reaches stderr and
stdout, the end-of-run analysis, and rich staying unloaded off a terminal."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import Runner, one_line_error

from agentic_synth.cli._bench import _RunView
from agentic_synth.cli._live import LiveDisplay, clock_text, first_clause
from agentic_synth.monitor import BottleneckAnalyzer, MetricsSnapshot
from agentic_synth.monitor._analyzer import AnalysisReport, Bottleneck
from agentic_synth.monitor._bench import BenchConfig
from agentic_synth.monitor._bench_report import analysis_from_dict, render_markdown
from agentic_synth.monitor._load import Progress


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def snapshot(**changes: Any) -> MetricsSnapshot:
    """A healthy engine: nothing for the analyzer to report."""
    base = MetricsSnapshot(
        elapsed=100.0, requests=1000, succeeded=1000, failed=0, cancelled=0, in_flight=3,
        errors_by_class={}, attempts=1000, retries=0, fallbacks=0, breaker_rejections=0,
        input_tokens=0, output_tokens=0, cost_usd=0.0, latency_p50=0.25, latency_p95=0.3,
        latency_p99=0.4, latency_mean=0.25, ttft_p50=None, ttft_p95=None, ttft_p99=None,
        throughput=10.0, dedup_prompts_skipped=0, dedup_prompts_resent=0,
        dedup_outputs_flagged=0, dedup_outputs_dropped=0, concurrency_cap=64,
        in_flight_mean=10.0, waits={"provider": 1000.0}, cpu_fraction=0.1,
    )  # fmt: skip
    return dataclasses.replace(base, **changes)


#: Pinned at a cap of 2 while the provider takes 50 ms: the concurrency is the limit.
AT_CAP = {
    "concurrency_cap": 2,
    "at_cap": 0.95,
    "in_flight_mean": 2.0,
    "waits": {"provider": 198.0},
    "latency_mean": 0.05,
    "cpu_fraction": 0.05,
}


class CountingAnalyzer(BottleneckAnalyzer):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def analyze(self, snapshot: MetricsSnapshot) -> AnalysisReport:
        self.calls += 1
        return super().analyze(snapshot)


def lines_of(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


# -- the line off a terminal: format and cadence ----------------------------------------


def test_off_a_terminal_one_line_every_ten_seconds() -> None:
    clock, out = FakeClock(), io.StringIO()
    display = LiveDisplay("structured", noun="valid", stream=out, clock=clock, terminal=False)
    display.start(10_000, metrics=lambda: snapshot(cost_usd=0.5, retries=4))
    for step in range(1, 35 * 4 + 1):  # 200 items a second for 35 s, an update every 0.25 s
        clock.now = step / 4
        display.update(step * 50, 0)
    display.finish()
    lines = lines_of(out)
    assert len(lines) == 3  # at 10, 20 and 30 s: never a line per update
    assert lines[0] == (
        "structured 0:10 | 2,000 valid, 0 failed of 10,000 (20%), 200/s, ETA 0:40 | "
        "errors 0, 4 retries | cost $0.5000"
    )
    assert lines[2].startswith("structured 0:30 | 6,000 valid, 0 failed of 10,000 (60%), 200/s")


def test_the_line_names_errors_cost_and_the_cache() -> None:
    clock, out = FakeClock(), io.StringIO()
    display = LiveDisplay("generate", stream=out, clock=clock, terminal=False, every=5)
    s = snapshot(
        errors_by_class={"TimeoutError": 2, "RateLimitedError": 5},
        cost_usd=1.23456,
        cache={"hits": 30, "misses": 70, "hit_rate": 0.3},
    )
    display.start(None, metrics=lambda: s)  # a file of inputs: no total, so no ETA
    clock.now = 5.0
    display.update(93, 7)
    assert lines_of(out) == [
        "generate 0:05 | 93 ok, 7 failed, 20/s | errors 7 (RateLimitedError 5, TimeoutError 2)"
        " | cost $1.2346 | cache hit 30.0%"
    ]


def test_a_stalled_job_still_reports_and_its_rate_falls_to_zero() -> None:
    clock, out = FakeClock(), io.StringIO()
    display = LiveDisplay("generate", stream=out, clock=clock, terminal=False)
    display.start(1000)
    for step in range(1, 10 * 4 + 1):
        clock.now = step / 4
        display.update(step * 10, 0)  # 40/s for 10 s, then nothing more ends
    for step in range(10 * 4 + 1, 25 * 4 + 1):
        clock.now = step / 4
        display.refresh()  # what tick() does on the clock
    lines = lines_of(out)
    assert [line.split(" | ")[0] for line in lines] == ["generate 0:10", "generate 0:20"]
    assert "400 ok, 0 failed of 1,000 (40%), 40/s, ETA 0:15" in lines[0]
    assert "400 ok, 0 failed of 1,000 (40%), 0.0/s, ETA -" in lines[1]  # the last 10 s


def test_no_lines_with_progress_every_0_or_quiet() -> None:
    for options in ({"every": 0.0}, {"quiet": True}):
        clock, out = FakeClock(), io.StringIO()
        display = LiveDisplay("x", stream=out, clock=clock, terminal=False, **options)
        display.start(10, metrics=lambda: snapshot(**AT_CAP))
        for step in range(1, 100):
            clock.now = float(step)
            display.update(step // 10, 0)
        display.finish()
        assert display.explain(snapshot(**AT_CAP)) is (not options.get("quiet", False))
        if options.get("quiet"):
            assert out.getvalue() == ""
        else:
            assert out.getvalue().startswith("why it was slow:")


def test_no_analysis_of_a_job_of_a_fraction_of_a_second() -> None:
    out = io.StringIO()
    display = LiveDisplay("generate", stream=out, terminal=False)
    assert display.explain(snapshot(**AT_CAP, elapsed=0.2)) is False and out.getvalue() == ""
    assert display.explain(snapshot(**AT_CAP, elapsed=1.0)) is True


# -- the analyzer, live ---------------------------------------------------------------


def test_the_top_finding_in_one_short_line() -> None:
    clock, out = FakeClock(), io.StringIO()
    display = LiveDisplay("generate", stream=out, clock=clock, terminal=False, every=10)
    display.start(100, metrics=lambda: snapshot(**AT_CAP))
    clock.now = 10.0
    display.update(40, 0)
    (line,) = lines_of(out)
    assert line.endswith(
        " | bottleneck concurrency (high): raise max_concurrency to 16 for about 8.0x throughput"
    )


def test_the_kinds_a_run_has_on_purpose_are_not_shown() -> None:
    clock, out = FakeClock(), io.StringIO()
    display = LiveDisplay("latency", stream=out, clock=clock, terminal=False, every=10)
    display.start(100, metrics=lambda: snapshot(**AT_CAP), ignore={"concurrency"})
    clock.now = 10.0
    display.update(40, 0)
    assert display.finding is None and "bottleneck" not in out.getvalue()


def test_a_low_severity_finding_is_not_shown() -> None:
    low = Bottleneck("cache", "low", 0.1, (), "10% of requests repeat: pass a cache")

    class Low(BottleneckAnalyzer):
        def analyze(self, snapshot: MetricsSnapshot) -> AnalysisReport:
            return AnalysisReport(True, (low,))

    clock, out = FakeClock(), io.StringIO()
    display = LiveDisplay("g", stream=out, clock=clock, terminal=False, analyzer=Low())
    display.start(100, metrics=snapshot)
    clock.now = 10.0
    display.update(1, 0)
    assert display.finding is None and "bottleneck" not in out.getvalue()
    assert display.explain(snapshot()) is False and lines_of(out)[-1].startswith("g 0:10")


def test_a_terminal_redraws_at_most_4_times_a_second_and_analyzes_every_2_s() -> None:
    clock, analyzer = FakeClock(), CountingAnalyzer()
    fetched = 0

    def metrics() -> MetricsSnapshot:
        nonlocal fetched
        fetched += 1
        return snapshot(**AT_CAP)

    display = LiveDisplay(
        "structured", noun="valid", stream=FakeTTY(), clock=clock, terminal=True,
        analyzer=analyzer,
    )  # fmt: skip
    display.start(100_000, metrics=metrics)
    for step in range(1, 10 * 1000 + 1):  # 1,000 updates a second for 10 s
        clock.now = step / 1000
        display.update(step, 0)
    display.finish()
    assert fetched <= 10 * 4 + 1  # the metrics are read only to draw
    assert analyzer.calls <= 10 / 2 + 1
    assert display.finding is not None and display.finding.kind == "concurrency"


def test_a_terminal_frame() -> None:
    clock = FakeClock()
    display = LiveDisplay(
        "structured", noun="valid", stream=io.StringIO(), clock=clock, terminal=False
    )
    display.start(10_000, metrics=lambda: snapshot(**AT_CAP, in_flight=2, cost_usd=0.25))
    clock.now = 30.0
    display.update(6_000, 3)  # the analysis is due: the finding is in the frame
    display.refresh()
    frame = display.frame(clock.now, width=120)
    text = ["".join(piece for piece, _ in line) for line in frame]
    assert text[0].startswith("structured ━") and text[0].endswith(
        " 6,000 valid, 3 failed of 10,000 (60%), 200/s, ETA 0:20"
    )
    assert text[0].count("━") == 30 and ("━" * 18, "green") in frame[0]  # 60% of the bar
    assert text[1] == "0:30 · 2/2 in flight · p50 250 ms · errors 0 · cost $0.2500"
    assert text[2].startswith("bottleneck concurrency (high): raise max_concurrency to 16")
    narrow = display.frame(clock.now, width=60)
    assert "━" not in "".join(piece for piece, _ in narrow[0])  # no room: the counts win


def test_rich_draws_in_place_and_clears_at_the_end() -> None:
    clock, tty = FakeClock(), FakeTTY()
    display = LiveDisplay("generate", stream=tty, clock=clock, terminal=True)
    display.start(200, metrics=snapshot)
    for step in range(1, 9):
        clock.now = step / 4
        display.update(step * 25, 0)
    display.finish()
    drawn = tty.getvalue()
    assert "200 ok, 0 failed of 200 (100%)" in drawn
    assert "\r" in drawn and "\x1b[2K" in drawn  # redrawn over itself
    assert drawn.endswith("\x1b[2K")  # transient: erased, the summary starts clean


def test_first_clause_and_clock() -> None:
    assert (
        first_clause(
            "in flight sits at the cap of 4 for 95% of the run while the provider answers in "
            "0.10 s on average: raise max_concurrency to 32 for about 8.0x throughput "
            "(Little's law: throughput = in flight / latency), if the provider's limits allow"
        )
        == "raise max_concurrency to 32 for about 8.0x throughput"
    )
    assert (
        first_clause(
            "the provider answered 429 to 12% of attempts: set ModelSpec(rpm=540) (90% of "
            "the rate achieved) so the client paces itself instead of retrying, or lower it"
        )
        == "set ModelSpec(rpm=540)"
    )
    assert first_clause("no colon; just advice") == "no colon"
    assert [clock_text(s) for s in (0, 17.4, 62, 3723)] == ["0:00", "0:17", "1:02", "1:02:03"]


# -- the bench's hook -----------------------------------------------------------------


def test_the_bench_shows_each_run_from_its_first_report_to_its_last() -> None:
    clock, out = FakeClock(), io.StringIO()
    display = LiveDisplay("bench", stream=out, clock=clock, terminal=False, every=1)
    view = _RunView(display, BenchConfig(requests=100))
    for label in ("throughput", "latency"):
        for step in range(1, 5):
            clock.now += 0.5
            final = step == 4
            m = snapshot(**AT_CAP)
            view(Progress(label, step * 0.5, 25 * step, 25 * step, 0, m, final=final))
            assert display.active is not final
    lines = lines_of(out)
    assert lines and {line.split(" ")[0] for line in lines} == {"throughput", "latency"}
    assert all(" of 100 (" in line for line in lines)
    # the latency suite runs one request at a time on purpose: no advice to raise it
    assert any("bottleneck concurrency" in line for line in lines if line.startswith("thr"))
    assert not any("bottleneck" in line for line in lines if line.startswith("latency"))


# -- through the commands -------------------------------------------------------------


def test_generate_explains_a_concurrency_bound_job_and_stdout_stays_data(synth: Runner) -> None:
    proc = synth("generate", "-n", "40", "--sim-latency", "0.05", "-c", "2")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["index"] for r in rows] == list(range(40))  # stdout: the rows, nothing else
    err = proc.stderr
    assert "40 done, 0 failed in" in err
    why = err[err.index("why it was slow:") :].splitlines()
    assert why[1].startswith("1. concurrency (high, ~")
    assert "raise max_concurrency to 16" in why[1]
    assert why[2].startswith("   - in flight sits at max_concurrency")
    assert "Traceback" not in err
    quiet = synth("generate", "-n", "40", "--sim-latency", "0.05", "-c", "2", "-q")
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert quiet.stdout.count("\n") == 40


def test_a_dataset_job_explains_too(synth: Runner, tmp_path: Path) -> None:
    proc = synth(
        "generate", "structured", "--schema", "builtin:users", "-n", "30",
        "--sim-latency", "0.05", "-c", "2", "-o", "-",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert len([json.loads(line) for line in proc.stdout.splitlines()]) == 30
    assert "30 of 30 records valid" in proc.stderr
    assert "why it was slow:\n1. concurrency (high" in proc.stderr
    # the same request again is how a dataset samples: no advice to cache it
    assert "cache (" not in proc.stderr


def test_ci_lines_on_a_pipe(synth: Runner, tmp_path: Path) -> None:
    proc = synth(
        "generate", "-n", "40", "--sim-latency", "0.05", "-c", "2",
        "--progress-every", "0.2", "-o", "out.jsonl",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    pattern = re.compile(
        r"generate \d+:\d\d \| \d+ ok, 0 failed of 40 \(\d+%\), [\d.,]+/s, ETA [\d:-]+ "
        r"\| errors 0 \| cost \$\d+\.\d{4}( \| bottleneck concurrency \(high\): raise .*)?"
    )
    progress = [line for line in proc.stderr.splitlines() if line.startswith("generate ")]
    assert progress and all(pattern.fullmatch(line) for line in progress), proc.stderr
    assert "\r" not in proc.stderr and "\x1b" not in proc.stderr  # a log, not a terminal


def test_progress_every_is_checked(synth: Runner) -> None:
    proc = synth("generate", "-n", "1", "--progress-every", "-1")
    assert proc.returncode == 2
    assert one_line_error(proc.stderr) == "synth: error: --progress-every must be >= 0, got -1"


def test_rich_is_not_imported_off_a_terminal(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from agentic_synth.cli._main import main\n"
        "code = main(['generate', '-n', '20', '-c', '2', '--sim-latency', '0.05',"
        " '--progress-every', '0.1', '-o', 'out.jsonl'])\n"
        "print(code, 'rich' in sys.modules)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.stdout.split() == ["0", "False"], proc.stderr
    assert "generate 0:" in proc.stderr  # the display ran, as lines
    imports = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import agentic_synth"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert imports.returncode == 0
    assert not re.search(r"\| +rich\b", imports.stderr)


def test_bench_reports_the_analysis(synth: Runner, tmp_path: Path) -> None:
    proc = synth(
        "bench", "throughput", "latency", "-n", "60", "--sim-latency", "0.01", "-c", "2",
        "--out", ".", "--json", "-",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert set(json.loads(proc.stdout)) >= {"throughput", "latency_p50"}  # stdout: the JSON
    report = json.loads((tmp_path / "bench.json").read_text())
    analysis = report["analysis"]
    assert set(analysis) == {"throughput", "latency"}
    throughput, latency = analysis["throughput"], analysis["latency"]
    assert throughput["suite"] == "throughput" and throughput["detected"]
    assert throughput["bottlenecks"][0]["kind"] == "concurrency"
    assert latency["set_aside"] == ["concurrency"] and not latency["bottlenecks"]
    err = proc.stderr
    assert "why it was slow (throughput):\n1. concurrency (high" in err
    assert "why it was slow (latency)" not in err
    markdown = (tmp_path / "bench.md").read_text()
    assert "## Why it was slow" in markdown
    assert analysis_from_dict(throughput).render() in markdown
    assert render_markdown(report) == markdown  # rebuilt from bench.json alone
    quiet = synth("bench", "-n", "60", "--sim-latency", "0.01", "-c", "2", "-q")
    assert quiet.returncode == 0 and quiet.stderr == ""


@pytest.mark.parametrize("kind", ["timeseries", "events"])
def test_a_local_dataset_has_no_engine_and_nothing_to_explain(synth: Runner, kind: str) -> None:
    extra = ["--start", "2026-01-01"] if kind == "timeseries" else []
    if kind == "events":
        extra = ["--start", "2026-01-01", "--end", "2026-01-02"]
    proc = synth("generate", kind, "-n", "50", *extra, "-o", "-")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 50
    assert "why it was slow" not in proc.stderr and "50 " in proc.stderr
