"""Local time series against their options: grid, trend, seasonality, noise, determinism.

Statistical checks use fixed seeds (so they are deterministic) and tolerances of
five standard errors computed from the sample size: under the model a fresh seed
would fail one of them with probability below 6e-7.
"""

from __future__ import annotations

import cmath
import math
import re
import statistics
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

import pytest

from agentic_synth import InvalidRequestError
from agentic_synth.datasets._skeleton import standard_normal, stream
from agentic_synth.datasets._timeseries import (
    SEASONAL_AMPLITUDE,
    TIMESERIES_CONTENT_SCHEMA,
    TREND_SPAN,
    check_timeseries,
    generate_timeseries_local,
    iter_timeseries_local,
    plan_timeseries,
    timeseries_skeleton,
)

START = "2026-01-01T00:00:00Z"


def times(records: list[dict[str, Any]]) -> list[datetime]:
    return [datetime.fromisoformat(r["timestamp"]).replace(tzinfo=None) for r in records]


def solve(a: list[list[float]], b: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting (the systems here are 4x4 at most)."""
    n = len(b)
    m = [[*row, rhs] for row, rhs in zip(a, b, strict=True)]
    for c in range(n):
        p = max(range(c, n), key=lambda r: abs(m[r][c]))
        m[c], m[p] = m[p], m[c]
        for r in range(n):
            if r != c:
                f = m[r][c] / m[c][c]
                m[r] = [x - f * y for x, y in zip(m[r], m[c], strict=True)]
    return [m[r][n] / m[r][r] for r in range(n)]


def ols(columns: list[list[float]], y: list[float]) -> tuple[list[float], list[float], float]:
    """Coefficients, their standard errors and the residual standard deviation."""
    p, n = len(columns), len(y)
    xtx = [[sum(a * b for a, b in zip(ci, cj, strict=True)) for cj in columns] for ci in columns]
    xty = [sum(a * b for a, b in zip(c, y, strict=True)) for c in columns]
    beta = solve(xtx, xty)
    fitted = [sum(beta[k] * columns[k][i] for k in range(p)) for i in range(n)]
    sigma = math.sqrt(sum((a - b) ** 2 for a, b in zip(y, fitted, strict=True)) / (n - p))
    inverse_diag = [solve(xtx, [1.0 if r == k else 0.0 for r in range(p)])[k] for k in range(p)]
    return beta, [sigma * math.sqrt(d) for d in inverse_diag], sigma


def design(n: int, points_per_cycle: float | None) -> list[list[float]]:
    """Intercept, trend over the series (0..1) and the seasonal pair at the period."""
    x = [i / (n - 1) for i in range(n)]
    columns = [[1.0] * n, x]
    if points_per_cycle:
        w = 2 * math.pi / points_per_cycle
        columns += [[math.cos(w * i) for i in range(n)], [math.sin(w * i) for i in range(n)]]
    return columns


def periodogram_peak(y: list[float]) -> int:
    """The DFT bin k (cycles per series) with the most power after removing a line."""
    n = len(y)
    beta, _, _ = ols(design(n, None), y)
    r = [v - beta[0] - beta[1] * i / (n - 1) for i, v in enumerate(y)]
    power = {
        k: abs(sum(v * cmath.exp(-2j * math.pi * k * i / n) for i, v in enumerate(r))) ** 2
        for k in range(1, n // 2 + 1)
    }
    return max(power, key=power.__getitem__)


# -- the grid: count, start, end, interval ------------------------------------------


def test_start_and_count_give_count_points_an_interval_apart() -> None:
    records = generate_timeseries_local(5, START, seed=1)
    assert [r["timestamp"] for r in records] == [
        "2026-01-01T00:00:00Z",
        "2026-01-01T01:00:00Z",
        "2026-01-01T02:00:00Z",
        "2026-01-01T03:00:00Z",
        "2026-01-01T04:00:00Z",
    ]


def test_start_and_end_give_the_grid_points_of_the_half_open_range() -> None:
    day = generate_timeseries_local(start=START, end="2026-01-02", seed=1)
    assert len(day) == 24 and day[-1]["timestamp"] == "2026-01-01T23:00:00Z"
    odd = generate_timeseries_local(start=START, end="2026-01-01T01:00:00Z", interval="25m")
    assert [r["timestamp"][11:19] for r in odd] == ["00:00:00", "00:25:00", "00:50:00"]


def test_start_end_and_count_spread_points_evenly() -> None:
    day = generate_timeseries_local(48, START, "2026-01-02", seed=1)
    assert plan_timeseries(48, START, "2026-01-02").interval == timedelta(minutes=30)
    assert day[1]["timestamp"] == "2026-01-01T00:30:00Z"
    thirds = generate_timeseries_local(3, START, "2026-01-01T00:00:01Z", seed=1)
    assert [r["timestamp"] for r in thirds] == [
        "2026-01-01T00:00:00.000000Z",  # off whole seconds: every point gets microseconds
        "2026-01-01T00:00:00.333333Z",
        "2026-01-01T00:00:00.666666Z",
    ]


def test_end_and_count_give_the_points_just_before_end() -> None:
    records = generate_timeseries_local(3, end="2026-01-02", interval="1h", seed=1)
    assert [r["timestamp"][11:19] for r in records] == ["21:00:00", "22:00:00", "23:00:00"]


def test_all_four_must_agree() -> None:
    assert len(generate_timeseries_local(24, START, "2026-01-02", "1h", seed=1)) == 24
    with pytest.raises(InvalidRequestError, match=r"holds 24 points .* count=23"):
        generate_timeseries_local(23, START, "2026-01-02", "1h")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"count": 3}, "give start"),
        ({"start": START}, "give count or end"),
        ({"start": START, "end": "2025-12-31"}, "must be after start"),
        ({"count": -1, "start": START}, "count must be an int"),
        ({"count": True, "start": START}, "count must be an int"),
        ({"count": 3, "start": "yesterday"}, "not an ISO 8601 time"),
        ({"count": 3, "start": START, "interval": "1 fortnight"}, "expected a duration"),
        ({"count": 3, "start": START, "interval": "0s"}, "at least one microsecond"),
        ({"count": 3, "start": START, "interval": "1000000000d"}, "out of range"),
        ({"count": 3, "start": "0001-01-01T00:00:00+01:00"}, "out of range in UTC"),
        ({"count": 0, "start": START, "end": "2026-01-02", "interval": None}, "cannot spread"),
        ({"count": 10**10, "start": START}, "last representable time"),
        ({"count": 3, "start": START, "trend": "sideways"}, "trend must be one of"),
        ({"count": 3, "start": START, "noise": -0.1}, "noise must be"),
        ({"count": 3, "start": START, "seasonality": "daily"}, "seasonality must be"),
        ({"count": 3, "start": START, "seasonality": False, "period": "1d"}, "seasonality is off"),
        ({"count": 3, "start": START, "period": "2h"}, "more than two intervals"),
        ({"count": 3, "start": START, "interval": "200d"}, "too long for a seasonal cycle"),
        ({"count": 3, "start": START, "metrics": []}, "at least one metric"),
        ({"count": 3, "start": START, "metrics": ["a", "a"]}, "repeat"),
        ({"count": 3, "start": START, "metrics": ["timestamp"]}, "other than 'timestamp'"),
        ({"count": 3, "start": START, "metrics": [{"name": "a", "bias": 1}]}, "unknown keys"),
        ({"count": 3, "start": START, "metrics": [{"name": "a", "scale": 0}]}, "positive"),
        ({"count": 3, "start": START, "metrics": [{"name": "a", "min": 5, "max": 5}]}, "below"),
        ({"count": 3, "start": START, "metrics": [{"name": "a", "max": 50}]}, "outside"),
        ({"count": 3, "start": START, "metrics": [{"name": "a", "base": "x"}]}, "finite"),
        ({"count": 3, "start": START, "seed": 1.5}, "seed must be"),
    ],
)
def test_conflicting_or_bad_arguments_are_clear_errors(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        iter_timeseries_local(**kwargs)  # raised at the call, before the first point


def test_times_are_utc_whatever_the_input_zone() -> None:
    a = generate_timeseries_local(3, "2026-01-01T01:00:00+01:00", seed=4)
    b = generate_timeseries_local(3, datetime(2026, 1, 1), seed=4)
    assert a == b and a[0]["timestamp"] == "2026-01-01T00:00:00Z"


# -- values ---------------------------------------------------------------------------


def test_metric_dicts_set_base_scale_bounds_and_decimals() -> None:
    records = generate_timeseries_local(
        2000,
        START,
        metrics=[
            "value",
            {"name": "cpu", "base": 50, "scale": 40, "min": 0, "max": 100, "decimals": 1},
            {"name": "raw", "base": 0, "decimals": None},
        ],
        noise=1.0,
        seed=2,
    )
    cpu = [r["cpu"] for r in records]
    assert min(cpu) == 0 and max(cpu) == 100  # noise of 40 around 50 reaches both bounds
    assert all(round(v, 1) == v for v in cpu)
    raw = [r["raw"] for r in records]
    assert any(round(v, 6) != v for v in raw)  # not rounded
    assert check_timeseries(records, count=2000, interval="1h", metrics=["value", "cpu"]) == []


def test_bounds_off_the_decimals_grid_are_never_crossed() -> None:
    spec = {"name": "x", "base": 0.5, "scale": 1, "min": 0.004, "max": 0.996, "decimals": 2}
    values = [
        r["x"] for r in generate_timeseries_local(500, START, metrics=[spec], noise=1, seed=6)
    ]
    assert min(values) == 0.004 and max(values) == 0.996
    assert (
        check_timeseries(
            generate_timeseries_local(500, START, metrics=[spec], noise=1, seed=6), metrics=[spec]
        )
        == []
    )


def test_no_trend_no_season_no_noise_is_the_base() -> None:
    records = generate_timeseries_local(50, START, seasonality=False, noise=0, seed=3)
    assert {r["value"] for r in records} == {100.0}


@pytest.mark.parametrize(("trend", "sign"), [("up", 1), ("down", -1), ("stable", 0)])
def test_trend_sign_and_size_of_the_fitted_slope(trend: str, sign: int) -> None:
    n = 24 * 50
    records = generate_timeseries_local(n, START, trend=trend, noise=0.1, seed=11)  # type: ignore[arg-type]
    y = [r["value"] for r in records]
    beta, se, _ = ols(design(n, 24), y)
    # beta[1] is the change over the whole series; expected sign * 0.5 * scale (100)
    expected = sign * TREND_SPAN * 100
    assert abs(beta[1] - expected) <= 5 * se[1]
    if sign:
        assert beta[1] * sign > 0 and abs(beta[1]) > 10 * se[1]


def test_random_trend_wanders_with_the_documented_spread() -> None:
    """The walk's end point is N(0, (TREND_SPAN * scale)^2): the sd of 200 end points
    is within 5 standard errors (sd / sqrt(2 * 199), i.e. +-25%) of 50."""
    ends = []
    for seed in range(200):
        r = generate_timeseries_local(
            100, START, trend="random", seasonality=False, noise=0, seed=seed
        )
        ends.append(r[-1]["value"] - 100.0)
        assert r[0]["value"] == 100.0
    sd = math.sqrt(sum(e * e for e in ends) / len(ends))
    assert abs(sd / (TREND_SPAN * 100) - 1) <= 5 / math.sqrt(2 * 199)
    assert any(e > 0 for e in ends) and any(e < 0 for e in ends)


def test_daily_cycle_is_lowest_at_midnight_and_highest_at_noon_utc() -> None:
    records = generate_timeseries_local(
        48,
        "2026-03-10T00:00:00+05:00",  # 19:00 UTC: the phase follows UTC, not the start
        metrics=[{"name": "v", "decimals": None}],
        noise=0,
        seed=1,
    )
    by_hour = {r["timestamp"][11:13]: r["v"] for r in records}
    amplitude = SEASONAL_AMPLITUDE * 100
    assert by_hour["00"] == pytest.approx(100 - amplitude)
    assert by_hour["12"] == pytest.approx(100 + amplitude)
    assert by_hour["06"] == pytest.approx(100, abs=1e-9)


@pytest.mark.parametrize(
    ("interval", "period", "n", "bin_"),
    [
        ("1h", None, 24 * 14, 14),  # hourly data: a daily cycle, 14 of them
        ("1d", None, 7 * 20, 20),  # daily data: a weekly cycle
        ("1h", "8h", 24 * 14, 42),  # a configured period
        ("15m", "6h", 24 * 14, 14),
    ],
)
def test_seasonal_period_is_recovered_by_a_periodogram(
    interval: str, period: str | None, n: int, bin_: int
) -> None:
    """Noise 0.3 (sd 30) against amplitude 20: the cycle's bin has power ~ n*A^2/4 and
    the noise bins exponential with mean sigma^2, so a wrong peak has probability
    below (n/2) * exp(-n * A^2 / (4 * sigma^2)) = 168 * exp(-37) ~ 1e-14 (n=336)."""
    records = generate_timeseries_local(
        n, START, interval=interval, period=period, noise=0.3, trend="up", seed=5
    )
    assert periodogram_peak([r["value"] for r in records]) == bin_


def test_the_noise_sampler_is_standard_normal() -> None:
    """KS against the N(0, 1) CDF, n = 20,000, alpha = 0.001: critical value
    sqrt(-ln(0.0005)/2)/sqrt(n) = 0.0138."""
    normal = standard_normal(stream(1, "ks"))
    xs = sorted(normal() for _ in range(20_000))
    n, cdf = len(xs), statistics.NormalDist().cdf
    d = max(max((i + 1) / n - cdf(x), cdf(x) - i / n) for i, x in enumerate(xs))
    assert d <= math.sqrt(-math.log(0.0005) / 2) / math.sqrt(n)
    assert normal() != normal()


@pytest.mark.parametrize(
    ("noise", "metric"),
    [(0.1, "value"), (0.3, "value"), (0.05, {"name": "m", "base": 7, "scale": 2})],
)
def test_residual_sd_is_noise_times_scale(noise: float, metric: Any) -> None:
    """Residuals of the exact model (level, trend, seasonal pair): their sd is within
    5 standard errors (sigma / sqrt(2 (n - 4))) of noise * scale; rounding to 2
    decimals adds 0.003 of sd, far inside that."""
    n = 3000
    records = generate_timeseries_local(
        n, START, metrics=[metric], trend="down", noise=noise, seed=8
    )
    name = metric if isinstance(metric, str) else metric["name"]
    scale = 100 if isinstance(metric, str) else metric["scale"]
    _, _, sigma = ols(design(n, 24), [r[name] for r in records])
    expected = noise * scale
    assert abs(sigma - expected) <= 5 * expected / math.sqrt(2 * (n - 4))


# -- determinism and laziness --------------------------------------------------------


def test_same_seed_same_series_and_other_seeds_differ() -> None:
    kwargs: dict[str, Any] = {
        "count": 200,
        "start": START,
        "metrics": ["a", "b"],
        "trend": "random",
    }
    assert generate_timeseries_local(**kwargs, seed=9) == generate_timeseries_local(
        **kwargs, seed=9
    )
    assert generate_timeseries_local(**kwargs, seed=9) != generate_timeseries_local(
        **kwargs, seed=10
    )
    assert generate_timeseries_local(**kwargs, seed=9) != generate_timeseries_local(
        **kwargs, seed="9"
    )
    assert generate_timeseries_local(**kwargs) != generate_timeseries_local(**kwargs)  # fresh seeds


def test_adding_a_metric_leaves_the_others_unchanged() -> None:
    one = generate_timeseries_local(100, START, metrics=["a"], trend="random", seed=12)
    two = generate_timeseries_local(100, START, metrics=["z", "a"], trend="random", seed=12)
    assert [r["a"] for r in one] == [r["a"] for r in two]
    assert [r["a"] for r in two] != [r["z"] for r in two]


def test_the_lazy_form_yields_the_same_points_without_building_the_series() -> None:
    kwargs: dict[str, Any] = {"start": START, "metrics": ["a", "b"], "seed": 13}
    assert list(iter_timeseries_local(500, **kwargs)) == generate_timeseries_local(500, **kwargs)
    # ten million points: only three are ever computed (a stable trend does not
    # depend on the length, so they equal a three-point series)
    first = list(islice(iter_timeseries_local(10**7, **kwargs, interval="1m"), 3))
    assert first == generate_timeseries_local(3, **kwargs, interval="1m")


# -- validator ------------------------------------------------------------------------


def good(n: int = 24) -> list[dict[str, Any]]:
    return generate_timeseries_local(n, START, metrics=["a", "b"], seed=14)


def test_generated_series_have_no_problems() -> None:
    records = good()
    assert (
        check_timeseries(
            records, count=24, start=START, end="2026-01-02", interval="1h", metrics=["a", "b"]
        )
        == []
    )
    assert check_timeseries(records) == []  # spacing checked against the first gap


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda r: r.pop(), "23 records, expected exactly 24"),
        (lambda r: r[3].update(timestamp="2026-01-01T03:00:00"), "no UTC designator"),
        (lambda r: r[3].update(timestamp="2026-01-01T04:00:00+01:00"), "not in UTC"),
        (lambda r: r[3].update(timestamp="03:00"), "not ISO 8601"),
        (lambda r: r[3].update(timestamp=3), "not a string"),
        (lambda r: r[3].update(timestamp=r[2]["timestamp"]), "does not follow record 2"),
        (lambda r: r[3].update(timestamp="2026-01-01T03:30:00Z"), "expected 1:00:00"),
        (lambda r: r[0].update(timestamp="2025-12-31T23:00:00Z"), "before start"),
        (lambda r: r[23].update(timestamp="2026-01-02T00:00:00Z"), "not before end"),
        (lambda r: r[5].update(a="12"), "a='12' is not a finite number"),
        (lambda r: r[5].update(a=float("nan")), "not a finite number"),
        (lambda r: r[5].pop("b"), "b=None"),
        (lambda r: r.__setitem__(5, "x"), "record 5: not an object"),
    ],
)
def test_each_problem_is_reported(corrupt: Any, message: str) -> None:
    records = good()
    corrupt(records)
    problems = check_timeseries(
        records, count=24, start=START, end="2026-01-02", interval="1h", metrics=["a", "b"]
    )
    assert any(message in p for p in problems), problems


def test_bounds_are_checked_and_problems_are_capped() -> None:
    records = [{"timestamp": "2026-01-01T00:00:00Z", "cpu": 150.0}] * 500
    problems = check_timeseries(records, metrics=[{"name": "cpu", "max": 100}], limit=10)
    assert len(problems) == 11 and problems[-1] == "... and 989 more problems"
    assert "cpu=150.0 outside [None, 100.0]" in problems[0]


# -- skeleton for mode="llm" ------------------------------------------------------------


def test_skeleton_is_the_local_series_with_a_content_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    skeleton = timeseries_skeleton(12, START, metrics=["cpu"], seed=15)
    assert skeleton.records == generate_timeseries_local(12, START, metrics=["cpu"], seed=15)
    assert skeleton.content_schema == TIMESERIES_CONTENT_SCHEMA
    jsonschema.Draft202012Validator.check_schema(skeleton.content_schema)
    assert skeleton.content_fields == ("annotation",)
    filled = skeleton.fill([{"annotation": f"point {i}"} for i in range(12)])
    assert filled[4] == {**skeleton.records[4], "annotation": "point 4"}
    assert check_timeseries(filled, count=12, interval="1h", metrics=["cpu"]) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"annotation": "x", "timestamp": "2030-01-01T00:00:00Z"}, "sampled field 'timestamp'"),
        ({"annotation": "x", "cpu": 1.0}, "sampled field 'cpu'"),
        ({"annotation": "x", "mood": "calm"}, "not a content field"),
        ({}, "lacks ['annotation']"),
    ],
)
def test_content_never_replaces_a_sampled_field(content: dict[str, Any], message: str) -> None:
    skeleton = timeseries_skeleton(2, START, metrics=["cpu"], seed=15)
    with pytest.raises(InvalidRequestError, match=re.escape(message)):
        skeleton.fill([{"annotation": "ok"}, content])
    with pytest.raises(InvalidRequestError, match="1 content objects for 2 records"):
        skeleton.fill([{"annotation": "ok"}])


def test_skeleton_takes_a_custom_content_schema_without_sampled_fields() -> None:
    schema = {
        "type": "object",
        "properties": {"annotation": {"type": "string"}, "severity": {"enum": ["low", "high"]}},
        "required": ["annotation", "severity"],
    }
    skeleton = timeseries_skeleton(1, START, seed=1, content_schema=schema)
    assert skeleton.fill([{"annotation": "a", "severity": "low"}])[0]["severity"] == "low"
    with pytest.raises(InvalidRequestError, match="sampled fields"):
        timeseries_skeleton(
            1, START, content_schema={"type": "object", "properties": {"value": {}}}
        )
    with pytest.raises(InvalidRequestError, match="object schema"):
        timeseries_skeleton(1, START, content_schema={"type": "string"})
