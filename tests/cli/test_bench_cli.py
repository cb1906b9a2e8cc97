"""``synth bench``: suites, reports, the gate, and refusals before anything runs.

In process (``main``) for speed; one refusal and the mock server go through a
subprocess, as a user runs them.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import Runner, one_line_error

from agentic_synth.cli import main

PNG = b"\x89PNG\r\n\x1a\n"
OLD = '{"old": true}\n'


def bench(*args: str) -> int:
    try:
        return main(["bench", *args])
    except SystemExit as exc:  # argparse's own errors
        return int(exc.code or 0)


def read(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_suites_write_json_markdown_and_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = bench("throughput", "latency", "-n", "120", "-c", "8", "--out", str(tmp_path))
    assert code == 0
    out = capsys.readouterr().out
    assert out.startswith("throughput: 120 requests, closed loop at concurrency 8, on sim:sim-1")
    assert "\nlatency: 120 requests, closed loop at concurrency 1" in out
    report = read(tmp_path / "bench.json")
    assert report["schema"] == "agentic-synth/bench/1"
    assert list(report["suites"]) == ["throughput", "latency"]
    assert report["configuration"]["target"] == "sim:sim-1 (in-process simulator)"
    assert report["configuration"]["requests"] == 120
    assert report["suites"]["throughput"]["figures"]["succeeded"] == 120
    markdown = (tmp_path / "bench.md").read_text()
    for figure in report["figures"]:
        assert f"| {figure} |" in markdown
    assert sorted(os.listdir(tmp_path)) == ["bench.json", "bench.md"]


def test_the_concurrency_sweep_and_its_knee(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = bench("concurrency", "--sweep", "4,1,2", "-n", "60", "--out", str(tmp_path))
    assert code == 0
    out = capsys.readouterr().out
    assert out.startswith("concurrency: sweep, 60 requests per level, closed loop")
    assert "knee" in out
    details = read(tmp_path / "bench.json")["suites"]["concurrency"]["details"]
    assert [level["concurrency"] for level in details["levels"]] == [1, 2, 4]
    assert details["knee"]["threshold"] == 0.1
    assert "log2(c'/c)" in (tmp_path / "bench.md").read_text()


def test_plots_are_png_files(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    code = bench("concurrency", "--sweep", "1,2", "-n", "40", "--out", str(tmp_path), "--plots")
    assert code == 0
    pngs = sorted(p for p in os.listdir(tmp_path) if p.endswith(".png"))
    assert pngs == ["latency_cdf.png", "throughput_vs_concurrency.png", "timeline.png"]
    for name in pngs:
        assert (tmp_path / name).read_bytes().startswith(PNG), name
    assert "![timeline](timeline.png)" in (tmp_path / "bench.md").read_text()


def test_plots_without_matplotlib_are_refused_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib fails
    assert bench("--out", str(tmp_path), "--plots") == 2
    error = one_line_error(capsys.readouterr().err)
    assert error == (
        "synth: error: --plots needs matplotlib; install it: pip install 'agentic-synth[plots]'"
    )
    assert os.listdir(tmp_path) == []


def test_streaming_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = bench(
        "streaming",
        "-n",
        "24",
        "-c",
        "8",
        "--sim-latency",
        "0.002",
        "--sim-tokens-per-s",
        "4000",
        "--max-tokens",
        "16",
        "--json",
        str(tmp_path / "figures.json"),
    )
    assert code == 0
    assert "TTFT" in capsys.readouterr().out
    figures = read(tmp_path / "figures.json")
    assert figures["succeeded"] == 24
    # the simulated latency comes before the first chunk; uvloop's timers (libuv) count
    # whole milliseconds, so a 2 ms sleep can end up to 1 ms early by this process's clock
    assert figures["ttft_p50"] >= 0.001
    assert figures["tpot_p50"] > 0 and figures["itl_p50"] > 0


def test_json_to_stdout_is_pure_json(capfd: pytest.CaptureFixture[str]) -> None:
    assert bench("-n", "30", "--json", "-") == 0
    captured = capfd.readouterr()  # the JSON is written to descriptor 1
    assert json.loads(captured.out)["requests"] == 30  # the summary went to stderr
    assert captured.err.startswith("throughput: 30 requests")


def test_open_loop_figures(tmp_path: Path) -> None:
    report = tmp_path / "f.json"
    assert bench("-n", "40", "--rate", "2000", "--arrival", "poisson", "--json", str(report)) == 0
    figures = read(report)
    assert figures["offered_rate"] == 2000 and figures["requests"] == 40
    assert figures["achieved_rate"] > 0 and figures["lag_p99"] >= 0


def test_repeats_and_profile(tmp_path: Path) -> None:
    code = bench("-n", "50", "--repeats", "2", "--profile", "--out", str(tmp_path))
    assert code == 0
    report = read(tmp_path / "bench.json")
    assert len(report["repeats"]) == 2
    assert report["configuration"]["repeats"] == 2
    assert report["profile"]["suite"] == "throughput" and len(report["profile"]["top"]) == 25
    markdown = (tmp_path / "bench.md").read_text()
    assert "median of 2" in markdown and "## Profile" in markdown


def test_flag_thresholds_still_fail_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench("-n", "50", "--max-error-rate", "0", "--out", str(tmp_path)) == 0
    assert read(tmp_path / "bench.json")["checks"] == {"passed": True, "failures": []}
    assert bench("-n", "50", "--max-cpu-us", "0.001", "--out", str(tmp_path)) == 1
    assert "FAIL: CPU" in capsys.readouterr().err
    assert read(tmp_path / "bench.json")["checks"]["passed"] is False


def test_the_gate_thresholds_and_baseline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    thresholds = tmp_path / "bench.toml"
    # error_rate is 0 on the simulator every time: a regression test that cannot flake
    thresholds.write_text(
        '[thresholds]\nthroughput = "> 1"\nerror_rate = "< 1%"\n\n'
        '[regression]\nrepeats = 5\nfigures = ["error_rate"]\n'
    )
    baseline = tmp_path / "baseline.json"
    args = ["-n", "40", "--check", str(thresholds), "--baseline", str(baseline)]
    assert bench(*args, "--update-baseline") == 0
    assert f"baseline written to {baseline}" in capsys.readouterr().out
    stored = read(baseline)
    assert stored["schema"] == "agentic-synth/bench-baseline/1"
    assert len(stored["figures"]["throughput"]) == 5  # one sample per repeat
    assert bench(*args, "--out", str(tmp_path)) == 0
    assert "bench gate: PASS" in capsys.readouterr().out
    report = read(tmp_path / "bench.json")
    assert report["gate"]["passed"] is True and len(report["repeats"]) == 5
    assert "bench gate: PASS" in (tmp_path / "bench.md").read_text()
    thresholds.write_text('[thresholds]\nthroughput = "> 1e12"\n[regression]\nrepeats = 5\n')
    assert bench("-n", "40", "--check", str(thresholds)) == 1
    assert "bench gate: FAIL" in capsys.readouterr().out


def test_mock_server_in_its_own_process(synth: Runner, tmp_path: Path) -> None:
    proc = synth(
        "bench", "-n", "60", "-c", "8", "--mock-server", "--sim-latency", "0.001", "--out", "."
    )
    assert proc.returncode == 0, proc.stderr
    report = read(tmp_path / "bench.json")
    assert report["configuration"]["models"] == ["openai:mock"]
    assert "mock-server" in report["configuration"]["target"]
    figures = report["suites"]["throughput"]["figures"]
    assert figures["succeeded"] == 60 and figures["latency_p50"] >= 0.001


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["bogus"], "unknown suite 'bogus'; choose from throughput, latency, memory, cache"),
        (["--out", "missing"], "--out missing: no such directory; create it first"),
        (["--plots"], "--plots writes PNG files into --out DIR; add --out DIR"),
        (["-n", "5", "--duration", "1"], "--requests and --duration both set the length"),
        (["--duration", "0"], "--duration must be > 0, got 0"),
        (["--rate", "-1"], "--rate must be > 0, got -1"),
        (["--arrival", "poisson"], "--arrival applies to the open loop; add --rate REQ_S"),
        (["--arrival", "bursty"], "argument --arrival: invalid choice: 'bursty'"),
        (["--sweep", "1,2"], "--sweep sets the levels of the concurrency suite; add it"),
        (["concurrency", "--sweep", "0,2"], "--sweep takes concurrency levels >= 1"),
        (["concurrency", "--sweep", "a,b"], "--sweep takes concurrency levels >= 1"),
        (["concurrency", "--rate", "5"], "the concurrency suite is a closed-loop sweep"),
        (["--repeats", "0"], "--repeats must be >= 1, got 0"),
        (["--samples", "-1"], "--samples must be >= 0, got -1"),
        (["--sim-tokens-per-s", "0"], "--sim-tokens-per-s must be > 0, got 0"),
        (["--mock-server", "-m", "sim:sim-1"], "--mock-server picks the model"),
        (["--mock-server", "--sim-latency", "x"], "--sim-latency: cannot parse latency 'x'"),
        (["--check", "missing.toml"], "missing.toml: no such file"),
        (["--baseline", "missing.json"], "missing.json: no such file"),
        (["--update-baseline"], "--update-baseline writes to --baseline FILE; add --baseline"),
        (
            ["--baseline", "b.json", "--update-baseline", "--repeats", "2"],
            "--repeats 2 would record a baseline against which 2 repeats can never show a "
            "regression at alpha = 0.01 (the smallest one-sided p-value is 0.167); use "
            "--repeats 5 or more",
        ),
        (["--baseline", "nodir/b.json", "--update-baseline"], "does not exist; create it first"),
        (["-m", "nope:x"], "unknown provider 'nope'"),
        (["--max-p99", "0"], "--max-p99 must be > 0, got 0"),
    ],
)
def test_bad_arguments_are_refused_in_one_line_before_anything_runs(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    expected: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reports").mkdir()
    old = tmp_path / "reports" / "bench.json"
    old.write_text(OLD)
    assert bench(*args, "--json", "figures.json") == 2
    assert expected in one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "figures.json").exists()
    assert old.read_text() == OLD


def test_an_existing_report_survives_a_refused_run(tmp_path: Path) -> None:
    (tmp_path / "bench.json").write_text(OLD)
    (tmp_path / "bench.md").write_text("old\n")
    assert bench("--out", str(tmp_path), "-m", "nope:x") == 2
    assert (tmp_path / "bench.json").read_text() == OLD
    assert (tmp_path / "bench.md").read_text() == "old\n"
    assert bench("--out", str(tmp_path), "-n", "20") == 0
    assert read(tmp_path / "bench.json")["schema"] == "agentic-synth/bench/1"


def test_a_missing_out_directory_is_refused_without_a_traceback(synth: Runner) -> None:
    proc = synth("bench", "throughput", "--out", "nowhere/reports")
    assert proc.returncode == 2
    assert one_line_error(proc.stderr) == (
        "synth: error: --out nowhere/reports: no such directory; create it first (mkdir -p)"
    )
    assert proc.stdout == ""


# -- the gate's figures and repeats, checked before anything runs ----------------------


def _baseline(path: Path, samples: int, figures: tuple[str, ...] = ("error_rate",)) -> None:
    path.write_text(
        json.dumps(
            {
                "schema": "agentic-synth/bench-baseline/1",
                "figures": {figure: [0.0] * samples for figure in figures},
            }
        )
    )


@pytest.mark.parametrize(
    ("suites", "toml", "expected"),
    [
        (
            [],
            '[thresholds]\nlatency_99 = "< 1"\n',
            "bench.toml: [thresholds] latency_99: not a figure the gate reads; did you mean "
            "latency_p99 (every suite measures it)?",
        ),
        (
            ["streaming"],
            '[thresholds]\nttft_p9 = "< 1"\n',
            "did you mean ttft_p99 (the streaming suite measures it)?",
        ),
        (
            [],
            '[thresholds]\nitl_p50 = "< 1"\n',
            "[thresholds] itl_p50: not a figure the gate reads; choose from throughput,",
        ),
        (
            ["throughput", "latency"],
            '[thresholds]\ncache_hit_rate = "> 50%"\n',
            "[thresholds] cache_hit_rate: the cache suite measures it, and this run leaves it "
            "out; add it: synth bench throughput latency cache",
        ),
        (
            [],
            '[regression]\nfigures = ["ttft_p99"]\n',
            "bench.toml: [regression] figures: ttft_p99: the streaming suite measures it",
        ),
        (
            ["--mock-server"],
            '[thresholds]\ncpu_vs_simulator = "< 10"\n',
            "cpu_vs_simulator: measured on the simulator only",
        ),
    ],
)
def test_gate_figures_are_checked_against_the_suites_before_anything_runs(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    suites: list[str],
    toml: str,
    expected: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bench.toml").write_text(toml)
    assert bench(*suites, "-n", "20", "--check", "bench.toml", "--json", "f.json") == 2
    assert expected in one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "f.json").exists()


def test_latency_p90_and_p95_are_gate_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    thresholds = tmp_path / "bench.toml"
    thresholds.write_text('[thresholds]\nlatency_p90 = "< 10"\nlatency_p95 = "< 10"\n')
    assert bench("-n", "20", "--check", str(thresholds), "--repeats", "1") == 0
    out = capsys.readouterr().out
    assert "ok  latency_p90" in out and "ok  latency_p95" in out


def test_a_baseline_figure_this_run_does_not_measure_is_refused_up_front(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = tmp_path / "b.json"
    _baseline(baseline, 5, ("error_rate", "ttft_p50", "widgets"))
    assert bench("-n", "20", "--baseline", str(baseline)) == 2
    assert one_line_error(capsys.readouterr().err) == (
        f"synth: error: --baseline {baseline} holds figures this run does not measure: "
        "ttft_p50 (the streaming suite); widgets (not a figure the gate reads); add the suite, "
        "name the figures to compare in [regression] figures of --check FILE, or rerun with "
        "--update-baseline"
    )


def test_without_a_thresholds_table_the_defaults_apply_to_measured_figures_only(
    synth: Runner, tmp_path: Path
) -> None:
    """A [regression]-only file used to fail every run without the cache suite:
    "cache_hit_rate was not measured" (the default limit cache_hit_rate > 50%)."""
    (tmp_path / "bench.toml").write_text("[regression]\nrepeats = 2\nalpha = 0.2\n")
    proc = synth("bench", "-n", "40", "--check", "bench.toml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "bench gate: PASS" in proc.stdout
    for figure in ("latency_p99", "throughput", "peak_rss_mb", "error_rate"):
        assert f"ok  {figure}" in proc.stdout
    assert "cache_hit_rate" not in proc.stdout
    proc = synth("bench", "throughput", "cache", "-n", "400", "--check", "bench.toml")
    assert "cache_hit_rate" in proc.stdout  # measured: the default limit applies


@pytest.mark.parametrize(
    ("args", "samples", "expected"),
    [
        (
            ["--repeats", "1"],
            5,
            "--repeats 1 against the 5 samples per figure of b.json can never show a "
            "regression at alpha = 0.01 (the smallest one-sided p-value is 0.167); use "
            "--repeats 4 or more",
        ),
        (["--repeats", "3"], 5, "p-value is 0.0179); use --repeats 4 or more"),
        (
            ["--check", "bench.toml"],
            2,
            "[regression] repeats = 5 of bench.toml against the 2 samples per figure of b.json "
            "can never show a regression at alpha = 0.01 (the smallest one-sided p-value is "
            "0.0476); use --repeats 13 or more, or record a baseline of 5 repeats or more",
        ),
    ],
)
def test_too_few_repeats_against_the_baseline_are_refused_up_front(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    samples: int,
    expected: str,
) -> None:
    """--repeats 1 against a 5-sample baseline: the smallest p-value is 1/6, so no
    regression could ever be flagged, and the run used to pass with a note."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bench.toml").write_text("[thresholds]\n[regression]\nrepeats = 5\n")
    _baseline(tmp_path / "b.json", samples)
    assert bench("-n", "20", "--baseline", "b.json", *args, "--json", "f.json") == 2
    assert expected in one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "f.json").exists()


def test_enough_repeats_against_the_baseline_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _baseline(tmp_path / "b.json", 5)
    assert bench("-n", "20", "--baseline", str(tmp_path / "b.json"), "--repeats", "4") == 0
    assert "can never" not in capsys.readouterr().out


def test_a_confirming_rerun_still_reports_whole_runs(tmp_path: Path) -> None:
    """Before the rerun, the first run's last repeat drops its runs (the rerun must not
    start on top of them): the report details the rerun's last repeat instead."""
    baseline = tmp_path / "b.json"
    baseline.write_text(
        json.dumps(
            {"schema": "agentic-synth/bench-baseline/1", "figures": {"throughput": [1e12] * 5}}
        )
    )
    code = bench("-n", "20", "--baseline", str(baseline), "--out", str(tmp_path), "-q")
    assert code == 1  # a regression, confirmed
    report = read(tmp_path / "bench.json")
    assert report["gate"]["confirmed_rerun"] is True and len(report["repeats"]) == 5
    run = report["suites"]["throughput"]["runs"][0]
    assert run["samples"]["kept"] == 20 and run["timeline"]


# -- --json over repeats ---------------------------------------------------------------


def test_json_holds_the_medians_of_the_repeats(tmp_path: Path) -> None:
    """It used to hold the last repeat's figures, next to a summary of the medians."""
    figures = tmp_path / "f.json"
    code = bench("-n", "30", "--repeats", "2", "--json", str(figures), "--out", str(tmp_path))
    assert code == 0
    written, report = read(figures), read(tmp_path / "bench.json")
    assert written["repeats"] == 2
    for name in ("throughput", "cpu_us_per_request", "latency_p99"):
        per_repeat = [r[name] for r in report["repeats"]]
        assert written[name] == pytest.approx(sum(per_repeat) / 2), name
        assert written[name] == pytest.approx(report["figures"][name]), name  # the summary's
    assert written["requests"] == 30 and type(written["requests"]) is int
    assert written["models"] == ["sim:sim-1"]


def test_json_of_one_repeat_keeps_the_single_run_format(tmp_path: Path) -> None:
    figures = tmp_path / "f.json"
    assert bench("-n", "30", "--json", str(figures), "--out", str(tmp_path)) == 0
    written = read(figures)
    assert "repeats" not in written
    assert written == read(tmp_path / "bench.json")["suites"]["throughput"]["figures"]
