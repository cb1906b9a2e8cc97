from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path

import pytest

from agentic_synth._exceptions import ConfigurationError
from agentic_synth.monitor._gate import (
    BASELINE_SCHEMA,
    DEFAULT_THRESHOLDS,
    Baseline,
    Threshold,
    Thresholds,
    check_thresholds,
    compare,
    figure_direction,
    format_figure,
    gate,
    load_baseline,
    load_thresholds,
    machine_environment,
    mann_whitney_u,
    min_repeats,
    save_baseline,
    smallest_p_value,
)

Samples = dict[str, list[float]]


def _noisy(rng: random.Random, mean: float, cv: float, n: int = 5) -> list[float]:
    return [rng.gauss(mean, mean * cv) for _ in range(n)]


# -- the U test against scipy ----------------------------------------------------------


def _random_pair(rng: random.Random, tied: bool, low: int, high: int) -> tuple[list[float], ...]:
    n1, n2 = rng.randint(low, high), rng.randint(low, high)
    if tied:  # few distinct values: many ties
        return [float(rng.randint(0, 4)) for _ in range(n1)], [
            float(rng.randint(0, 5)) for _ in range(n2)
        ]
    shift = rng.choice([0.0, 0.5, 1.5])
    return [rng.gauss(0, 1) for _ in range(n1)], [rng.gauss(shift, 1) for _ in range(n2)]


@pytest.mark.parametrize("method", ["auto", "exact", "asymptotic"])
@pytest.mark.parametrize("tied", [False, True])
def test_u_test_agrees_with_scipy(method: str, tied: bool) -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(f"{method}-{tied}")
    for _ in range(300):
        a, b = _random_pair(rng, tied, 1, 14)
        for alternative in ("two-sided", "less", "greater"):
            u, p = mann_whitney_u(a, b, alternative, method=method)  # type: ignore[arg-type]
            ref = stats.mannwhitneyu(a, b, alternative=alternative, method=method)
            assert u == ref.statistic, (a, b)
            assert p == pytest.approx(float(ref.pvalue), rel=1e-9, abs=1e-12), (a, b, alternative)


def test_u_test_agrees_with_scipy_on_larger_samples() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(7)
    for _ in range(60):
        # one sample <= 8 and no ties: exact on a long other sample; else asymptotic
        a, b = _random_pair(rng, rng.random() < 0.5, 5, 60)
        if rng.random() < 0.3:
            a = a[:8]
        for alternative in ("two-sided", "less", "greater"):
            u, p = mann_whitney_u(a, b, alternative)
            ref = stats.mannwhitneyu(a, b, alternative=alternative)
            assert u == ref.statistic
            assert p == pytest.approx(float(ref.pvalue), rel=1e-9, abs=1e-12)


def test_u_test_small_exact_cases() -> None:
    males, females = [19, 22, 16, 29, 24], [20, 11, 17, 12]
    u, p = mann_whitney_u(males, females)
    assert u == 17 and p == pytest.approx(1 / 9)  # scipy's documented example
    u, p = mann_whitney_u(females, males, "less")
    assert u == 3 and p == pytest.approx(0.05555555555555555)
    # 5 vs 5 completely separated: the smallest one-sided p is 1 / C(10, 5)
    assert mann_whitney_u([6, 7, 8, 9, 10], [1, 2, 3, 4, 5], "greater") == (25, 1 / 252)
    assert mann_whitney_u([1], [2], "two-sided") == (0, 1.0)


def test_u_test_all_tied_and_bad_input() -> None:
    assert mann_whitney_u([1.0] * 12, [1.0] * 12, "greater") == (72, 1.0)
    assert mann_whitney_u([0.0] * 3, [0.0] * 4, "two-sided")[1] == 1.0
    with pytest.raises(ValueError, match="at least one"):
        mann_whitney_u([], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        mann_whitney_u([math.nan], [1.0])
    with pytest.raises(ValueError, match="alternative"):
        mann_whitney_u([1.0], [2.0], "bigger")  # type: ignore[arg-type]


# -- compare() -------------------------------------------------------------------------


def test_compare_flags_a_real_ten_percent_regression() -> None:
    rng = random.Random(10)
    for _ in range(50):
        baseline = {"cpu_us_per_request": _noisy(rng, 100, 0.02)}
        current = {"cpu_us_per_request": _noisy(rng, 110, 0.02)}
        findings = compare(current, baseline, alpha=0.01, min_effect=0.05)
        assert [f.kind for f in findings] == ["regression"]
        reason = findings[0].reason
        assert "cpu_us_per_request regressed" in reason and "worse" in reason
        assert "p = 0.004" in reason and "p <= 0.01" in reason and ">= 5%" in reason


def test_compare_direction_higher_is_better() -> None:
    rng = random.Random(11)
    baseline = {"throughput": _noisy(rng, 5000, 0.02)}
    slower = {"throughput": _noisy(rng, 4500, 0.02)}
    faster = {"throughput": _noisy(rng, 5500, 0.02)}
    assert [f.figure for f in compare(slower, baseline)] == ["throughput"]
    assert compare(faster, baseline) == []


def test_compare_ignores_a_significant_but_tiny_change() -> None:
    rng = random.Random(12)
    baseline = {"cpu_us_per_request": _noisy(rng, 100, 0.002)}
    current = {"cpu_us_per_request": _noisy(rng, 102, 0.002)}
    _, p = mann_whitney_u(current["cpu_us_per_request"], baseline["cpu_us_per_request"], "greater")
    assert p <= 0.01  # significant...
    assert compare(current, baseline, alpha=0.01, min_effect=0.05) == []  # ...but 2%


def test_compare_ignores_a_large_but_insignificant_change() -> None:
    baseline = {"latency_p99": [0.10, 0.11, 0.09, 0.30, 0.10]}
    current = {"latency_p99": [0.12, 0.10, 0.31, 0.11, 0.12]}  # median +9%, p large
    assert compare(current, baseline) == []


def test_compare_missing_and_unknown_figures() -> None:
    baseline = {"throughput": [1.0, 2.0], "latency_p50": [0.1, 0.1]}
    findings = compare({"throughput": [1.0, 2.0], "latency_p50": [None]}, baseline)
    assert [(f.figure, f.kind) for f in findings] == [("latency_p50", "missing")]
    assert "not measured" in findings[0].reason and "--update-baseline" in findings[0].reason
    findings = compare({"x": [1.0]}, {}, figures=["x"], directions={"x": "lower"})
    assert findings[0].kind == "missing" and "not in the baseline" in findings[0].reason
    with pytest.raises(ValueError, match="directions"):
        compare({"widgets": [1.0]}, {"widgets": [1.0]})


def test_compare_from_a_zero_baseline() -> None:
    findings = compare({"error_rate": [0.02] * 5}, {"error_rate": [0.0] * 5})
    assert findings and findings[0].kind == "regression"
    assert "worse than a baseline of 0" in findings[0].reason
    assert compare({"error_rate": [0.0] * 5}, {"error_rate": [0.0] * 5}) == []


def test_figure_direction() -> None:
    for name in (
        "latency_p99",
        "cpu_us_per_request",
        "error_rate",
        "peak_rss_mb",
        "ttft_p50",
        "tpot_p50",
        "itl_p99",
        "e2e_latency_ms",
    ):
        assert figure_direction(name) == "lower", name
    for name in ("throughput", "cache_hit_rate", "goodput", "tokens_throughput"):
        assert figure_direction(name) == "higher", name
    assert figure_direction("widgets") is None
    assert figure_direction("widgets", {"widgets": "higher"}) == "higher"
    assert figure_direction("latency_per_throughput") is None  # says both
    thresholds = Thresholds(limits=(Threshold("widgets", ">=", 3),))
    assert thresholds.direction("widgets") == "higher"
    # a sanity bound does not turn throughput around
    assert Thresholds(limits=(Threshold("throughput", "<", 1e9),)).direction("throughput") == (
        "higher"
    )


# -- gate(): confirmation and false alarms ---------------------------------------------


class Runs:
    """A measure() that returns the given runs in turn, counting calls."""

    def __init__(self, *runs: Samples) -> None:
        self.runs = list(runs)
        self.calls = 0

    def __call__(self) -> Samples:
        self.calls += 1
        return self.runs.pop(0)


_QUIET = Thresholds(limits=())
_BASE = Baseline({"cpu_us_per_request": [100.0, 101.0, 99.0, 100.5, 99.5]}, {}, "2025-01-01")
_SAME = {"cpu_us_per_request": [100.2, 99.8, 100.7, 99.1, 100.1]}
_WORSE = {"cpu_us_per_request": [111.0, 112.0, 110.5, 111.5, 110.0]}


def test_no_regression_runs_once() -> None:
    measure = Runs(_SAME)
    report = gate(measure, baseline=_BASE, thresholds=_QUIET)
    assert report.passed and report.exit_code == 0 and not report.confirmed_rerun
    assert measure.calls == 1 and [c.figure for c in report.comparisons] == ["cpu_us_per_request"]


def test_a_regression_seen_once_is_not_a_failure() -> None:
    measure = Runs(_WORSE, _SAME)
    report = gate(measure, baseline=_BASE, thresholds=_QUIET)
    assert measure.calls == 2 and report.confirmed_rerun
    assert report.passed and report.findings == ()
    assert report.comparisons[0].regressed and not report.rerun_comparisons[0].regressed
    assert report.rerun_samples == _SAME and report.samples == _WORSE
    assert any("did not confirm" in note for note in report.notes)
    assert "noise" in report.render()


def test_a_regression_seen_twice_fails() -> None:
    measure = Runs(_WORSE, _WORSE)
    report = gate(measure, baseline=_BASE, thresholds=_QUIET)
    assert measure.calls == 2 and report.confirmed_rerun and not report.passed
    [finding] = report.findings
    assert finding.kind == "regression" and finding.figure == "cpu_us_per_request"
    assert finding.observed == 111.0 and finding.expected == "at most 105 us/request"
    assert "the rerun confirmed it" in finding.reason and report.exit_code == 1


def test_without_confirm_one_regression_fails() -> None:
    measure = Runs(_WORSE)
    thresholds = Thresholds(limits=(), confirm=False)
    report = gate(measure, baseline=_BASE, thresholds=thresholds)
    assert measure.calls == 1 and not report.confirmed_rerun and not report.passed


def test_only_the_suspected_figures_are_confirmed() -> None:
    base = Baseline({**_BASE.figures, "throughput": [50.0, 51.0, 49.0, 50.5, 49.5]}, {}, "")
    first = {**_WORSE, "throughput": [50.2, 49.8, 50.7, 49.1, 50.1]}
    # the rerun regresses throughput, which the first run did not: not a failure
    second = {**_SAME, "throughput": [40.0, 41.0, 40.5, 40.2, 40.1]}
    report = gate(Runs(first, second), baseline=base, thresholds=_QUIET)
    assert report.passed and [c.figure for c in report.rerun_comparisons] == ["cpu_us_per_request"]


def _false_alarms(trials: int, confirm: bool, seed: int) -> tuple[int, int]:
    """(failed runs, suspected runs) of gates on three figures that never change."""
    means = {"throughput": 5000.0, "cpu_us_per_request": 120.0, "latency_p99": 0.05}
    rng = random.Random(seed)

    def draw() -> Samples:
        return {figure: _noisy(rng, mean, 0.08) for figure, mean in means.items()}

    thresholds = Thresholds(limits=(), confirm=confirm)
    failed = suspected = 0
    for _ in range(trials):
        report = gate(draw, baseline=Baseline(draw(), {}, ""), thresholds=thresholds)
        failed += not report.passed
        suspected += any(c.regressed for c in report.comparisons)
    return failed, suspected


def test_pure_noise_rarely_fails() -> None:
    trials = 2000
    failed, suspected = _false_alarms(trials, confirm=True, seed=2024)
    unconfirmed, _ = _false_alarms(trials, confirm=False, seed=2024)
    assert failed / trials < 0.01
    assert suspected > failed and unconfirmed > failed  # the rerun did real work
    assert unconfirmed / trials < 0.05


# -- thresholds ------------------------------------------------------------------------


def test_check_thresholds() -> None:
    figures = {
        "latency_p99": 0.2,
        "throughput": 9.0,
        "peak_rss_mb": 120.0,
        "cache_hit_rate": None,
        "error_rate": 0.01,
    }
    findings = check_thresholds(figures, DEFAULT_THRESHOLDS)
    assert [(f.figure, f.kind) for f in findings] == [
        ("throughput", "threshold"),
        ("cache_hit_rate", "missing"),
        ("error_rate", "threshold"),  # < 0.01 is strict
    ]
    assert findings[0].reason == "throughput 9 req/s is not > 10 req/s"
    assert findings[0].observed == 9.0 and findings[0].expected == "> 10 req/s"
    assert findings[1].reason == "cache_hit_rate was not measured (the threshold " + (
        "cache_hit_rate > 50.00% needs it)"
    )
    assert check_thresholds({"error_rate": 0.01}, [Threshold("error_rate", "<=", 0.01)]) == []
    assert check_thresholds({"x": math.nan}, [Threshold("x", "<", 1)])[0].kind == "missing"
    assert [f.kind for f in check_thresholds({}, Thresholds())] == ["missing"] * 5


def test_threshold_validation() -> None:
    with pytest.raises(ValueError):
        Threshold("x", "=", 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Threshold("x", "<", math.inf)
    with pytest.raises(ValueError):
        Thresholds(alpha=1.5)


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "thresholds.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_load_thresholds(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
[thresholds]
latency_p99 = "< 1.0"
throughput = "> 10"
peak_rss_mb = "<400"
cache_hit_rate = "> 50%"
error_rate = "<= 1e-2"
ttft_p99 = ["> 0", "< 2"]

[regression]
alpha = 0.05
min_effect = 0.1
repeats = 7
confirm = false
figures = ["cpu_us_per_request", "throughput", "my_ratio"]

[regression.directions]
my_ratio = "higher"
""",
    )
    t = load_thresholds(path)
    assert t.limits == (
        Threshold("latency_p99", "<", 1.0),
        Threshold("throughput", ">", 10.0),
        Threshold("peak_rss_mb", "<", 400.0),
        Threshold("cache_hit_rate", ">", 0.5),
        Threshold("error_rate", "<=", 0.01),
        Threshold("ttft_p99", ">", 0.0),
        Threshold("ttft_p99", "<", 2.0),
    )
    assert (t.alpha, t.min_effect, t.repeats, t.confirm) == (0.05, 0.1, 7, False)
    assert t.figures_for_regression == ("cpu_us_per_request", "throughput", "my_ratio")
    assert t.direction("my_ratio") == "higher" and t.source == path


def test_load_thresholds_defaults(tmp_path: Path) -> None:
    t = load_thresholds(_write(tmp_path, "[regression]\nrepeats = 6\n"))
    assert t.limits == DEFAULT_THRESHOLDS and t.repeats == 6 and t.confirm
    assert t.figures_for_regression is None
    assert load_thresholds(_write(tmp_path, "[thresholds]\n")).limits == ()


def test_a_file_without_thresholds_says_its_limits_are_the_defaults(tmp_path: Path) -> None:
    """The bench keeps default limits only on figures it measures: it must tell them
    from the same limits written out."""
    assert load_thresholds(_write(tmp_path, "[regression]\nrepeats = 6\n")).default_limits
    assert not load_thresholds(_write(tmp_path, "[thresholds]\n")).default_limits
    written = "".join(f'{t.figure} = "{t.op} {t.value}"\n' for t in DEFAULT_THRESHOLDS)
    explicit = load_thresholds(_write(tmp_path, "[thresholds]\n" + written))
    assert explicit.limits == DEFAULT_THRESHOLDS and not explicit.default_limits
    report = gate(
        Runs({"throughput": [5.0] * 5}),
        baseline=None,
        thresholds=Thresholds(default_limits=True),
        directions={"widgets": "lower"},  # rebuilds the thresholds
    )
    assert report.thresholds.default_limits


def test_min_repeats_and_the_smallest_p_value() -> None:
    assert smallest_p_value(1, 5) == pytest.approx(1 / 6)
    assert smallest_p_value(5, 5) == pytest.approx(1 / 252)
    assert min_repeats(0.01) == 5  # 4 vs 4: 1/70
    assert min_repeats(0.01, 5) == 4  # 3 vs 5: 1/56; 4 vs 5: 1/126
    assert min_repeats(0.01, 1) == 99  # 1 / (n + 1)
    assert min_repeats(0.2, 2) == 2
    with pytest.raises(ValueError):
        min_repeats(0.01, 0)


_FILE_PROBLEMS = [
    (
        "[thresholds]\nlatency_p99 = 1.0\n",
        '[thresholds] latency_p99: must be a condition in quotes such as "< 1.0"',
    ),
    ('[thresholds]\nlatency_p99 = "< 1 s"\n', 'latency_p99 is in seconds: "< 0.5" for 500 ms'),
    (
        '[thresholds]\ncache_hit_rate = "> 50"\n',
        "[thresholds] cache_hit_rate: cache_hit_rate is a fraction",
    ),
    ("[thresholds]\nerror_rate = []\n", "[thresholds] error_rate: an empty array"),
    ("[threshold]\n", "unknown table [threshold]; did you mean thresholds?"),
    ("thresholds = 3\n", "thresholds must be a [thresholds] table, got 3"),
    ("[regression]\nalpah = 0.01\n", "[regression] alpah: unknown key; did you mean alpha?"),
    ("[regression]\nalpha = 2\n", "[regression] alpha: must be between 0 and 1"),
    ('[regression]\nalpha = "0.01"\n', '[regression] alpha: must be a number, got "0.01"'),
    ("[regression]\nmin_effect = -0.1\n", "[regression] min_effect: must be >= 0"),
    ("[regression]\nrepeats = 2.5\n", "[regression] repeats: must be a whole number"),
    (
        "[regression]\nrepeats = 3\n",
        "[regression] repeats: 3 repeats against 3 can never reach alpha = 0.01 "
        "(the smallest one-sided p-value is 0.05); set repeats >= 5",
    ),
    ("[regression]\nconfirm = 1\n", "[regression] confirm: must be true or false, got 1"),
    (
        '[regression]\nfigures = "throughput"\n',
        "[regression] figures: must be an array of figure names",
    ),
    (
        '[regression]\nfigures = ["widgets"]\n',
        "[regression] figures: widgets: its name does not say whether lower or higher is "
        'better; add it to [regression.directions] (widgets = "lower" or "higher")',
    ),
    (
        '[regression.directions]\nwidgets = "up"\n',
        '[regression.directions] widgets: must be "lower" or "higher"',
    ),
    ("[thresholds\n", "not valid TOML"),
]


@pytest.mark.parametrize(("text", "expected"), _FILE_PROBLEMS)
def test_thresholds_file_problems(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigurationError) as info:
        load_thresholds(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and expected in message


def test_thresholds_file_lists_every_problem(tmp_path: Path) -> None:
    path = _write(tmp_path, "[thresholds]\nthroughput = 10\n[regression]\nalpha = 7\n")
    with pytest.raises(ConfigurationError) as info:
        load_thresholds(path)
    lines = str(info.value).splitlines()
    assert len(lines) == 2 and all(line.startswith(f"{path}: ") for line in lines)


def test_thresholds_file_not_there(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"no such file; check the path"):
        load_thresholds(tmp_path / "nope.toml")
    with pytest.raises(ConfigurationError, match="is a directory"):
        load_thresholds(tmp_path)


# -- baselines -------------------------------------------------------------------------


def test_baseline_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    env = machine_environment()
    samples: dict[str, list[float | None]] = {
        "throughput": [5000.0, 5100.5],
        "latency_p99": [0.1, None, 0.2],
        "ttft_p50": [],
    }
    save_baseline(path, samples, env)
    save_baseline(path, samples, env)  # replaces the old file
    assert os.listdir(tmp_path) == ["baseline.json"]  # no temporary file left
    data = json.loads(path.read_text())
    assert data["schema"] == BASELINE_SCHEMA
    baseline = load_baseline(path)
    assert baseline.figures == {"throughput": [5000.0, 5100.5], "latency_p99": [0.1, 0.2]}
    assert baseline.environment == env and baseline.created.endswith("+00:00")
    assert baseline.medians() == {"throughput": 5050.25, "latency_p99": pytest.approx(0.15)}


_OURS = f'"schema": "{BASELINE_SCHEMA}"'
_BAD_BASELINES = [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "not a baseline"),
    ('{"schema": "agentic-synth/bench-baseline/0", "figures": {}}', "schema is "),
    (f"{{{_OURS}}}", "figures must be an object"),
    (f'{{{_OURS}, "figures": {{"throughput": 5}}}}', "figures.throughput"),
    (f'{{{_OURS}, "figures": {{"throughput": [true]}}}}', "non-empty array of numbers"),
    (f'{{{_OURS}, "figures": {{"throughput": []}}}}', "non-empty array"),
    (f'{{{_OURS}, "figures": {{}}, "environment": 3}}', "environment"),
]


@pytest.mark.parametrize(("content", "expected"), _BAD_BASELINES)
def test_bad_baseline_files(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "baseline.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigurationError) as info:
        load_baseline(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and expected in message
    assert message.endswith("rerun with --update-baseline to write a new baseline")


def test_missing_baseline_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"no such file.*--update-baseline"):
        load_baseline(tmp_path / "baseline.json")


def test_failed_save_keeps_the_old_baseline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "baseline.json"
    save_baseline(path, {"throughput": [1.0]}, {})

    def full_disk(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(os, "replace", full_disk)
        with pytest.raises(ConfigurationError, match=r"cannot write .*no space left on device"):
            save_baseline(path, {"throughput": [2.0]}, {})
    assert os.listdir(tmp_path) == ["baseline.json"]
    assert load_baseline(path).figures == {"throughput": [1.0]}
    with pytest.raises(ConfigurationError, match="cannot write"):
        save_baseline(tmp_path / "no" / "dir.json", {"throughput": [1.0]}, {})


# -- the report ------------------------------------------------------------------------


def test_render_names_figure_observed_and_expected() -> None:
    thresholds = Thresholds(limits=(Threshold("latency_p99", "<", 1.0), *DEFAULT_THRESHOLDS[1:3]))
    run = {
        **_WORSE,
        "latency_p99": [1.2, 1.4, 1.3, 1.5, 1.6],
        "throughput": [50.0] * 5,
        "peak_rss_mb": [120.0] * 5,
    }
    report = gate(Runs(run, run), baseline=_BASE, thresholds=thresholds)
    text = report.render()
    assert text.startswith("bench gate: FAIL (2 problems)")
    assert "latency_p99" in text and "1.40 s" in text and "< 1 s" in text
    assert "latency_p99 1.40 s is not < 1 s" in text
    assert "cpu_us_per_request" in text and "111 us/request" in text
    assert "baseline 100 us/request" in text and "11.0% worse" in text
    passed = gate(Runs(_SAME), baseline=_BASE, thresholds=_QUIET)
    assert passed.render().startswith("bench gate: PASS")
    assert json.loads(json.dumps(report.to_dict()))["passed"] is False


def test_notes_for_new_unknown_and_moved_figures() -> None:
    base = Baseline({**_BASE.figures, "widgets": [1.0] * 5}, {"cpus": 8}, "")
    report = gate(
        Runs({**_SAME, "widgets": [1.0] * 5, "new_latency": [0.1] * 5}),
        baseline=base,
        thresholds=_QUIET,
        environment={"cpus": 4},
    )
    assert report.passed
    notes = "\n".join(report.notes)
    assert "widgets is not compared" in notes and "new_latency" in notes
    assert "cpus 8 -> 4" in notes
    report = gate(
        Runs({**_SAME, "widgets": [2.0] * 5}),
        baseline=base,
        thresholds=Thresholds(limits=(), confirm=False),
        directions={"widgets": "lower"},
    )
    assert [f.figure for f in report.findings] == ["widgets"]


def test_blind_comparisons_are_noted() -> None:
    base = Baseline({"throughput": [10.0, 10.0, 10.0]}, {}, "")
    report = gate(Runs({"throughput": [5.0, 5.0]}), baseline=base, thresholds=_QUIET)
    assert report.passed and "can never reach" in "\n".join(report.notes)


def test_a_figure_not_measured_is_said_once() -> None:
    thresholds = Thresholds(limits=(Threshold("cpu_us_per_request", "<", 500),))
    report = gate(Runs({"cpu_us_per_request": []}), baseline=_BASE, thresholds=thresholds)
    assert [(f.figure, f.kind) for f in report.findings] == [("cpu_us_per_request", "missing")]
    assert not report.passed and report.comparisons == ()


def test_missing_regression_figure_fails() -> None:
    thresholds = Thresholds(limits=(), figures_for_regression=("cpu_us_per_request", "throughput"))
    report = gate(Runs(_SAME), baseline=_BASE, thresholds=thresholds)
    assert [(f.figure, f.kind) for f in report.findings] == [("throughput", "missing")]
    assert "throughput" in report.render()


@pytest.mark.parametrize(
    ("figure", "value", "shown"),
    [
        ("latency_p99", 0.0123, "12.3 ms"),
        ("latency_p99", 2.5, "2.50 s"),
        ("throughput", 5210.4, "5,210 req/s"),
        ("cpu_us_per_request", 87.25, "87.2 us/request"),
        ("peak_rss_mb", 400.0, "400 MB"),
        ("error_rate", 0.005, "0.50%"),
        ("widgets", 3.0, "3"),
        ("widgets", None, "not measured"),
    ],
)
def test_format_figure(figure: str, value: float | None, shown: str) -> None:
    assert format_figure(figure, value) == shown
