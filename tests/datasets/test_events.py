"""Local event streams against their options: exact count, order, time shapes, users, types.

Shapes are checked with Kolmogorov-Smirnov tests at alpha = 0.001 with the
asymptotic critical value sqrt(-ln(alpha/2)/2)/sqrt(n) (slightly conservative
for finite n); counts with five binomial standard deviations per category (a
fresh seed would fail one of those with probability below 6e-7 per category).
Every seed is fixed, so the tests are deterministic.
"""

from __future__ import annotations

import math
import re
import statistics
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from itertools import islice
from typing import Any

import pytest

from agentic_synth import InvalidRequestError
from agentic_synth.datasets._events import (
    EVENTS_CONTENT_SCHEMA,
    NORMAL_SIGMAS,
    check_events,
    events_skeleton,
    generate_events_local,
    iter_events_local,
)

DAY = ("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z")
T0 = datetime(2026, 1, 1)
SPAN_S = 86_400.0
N = 5000
ALPHA = 0.001
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
PHI = statistics.NormalDist()


def ks_critical(n: int, alpha: float = ALPHA) -> float:
    return math.sqrt(-math.log(alpha / 2) / 2) / math.sqrt(n)


def ks_statistic(sample: list[float], cdf: Callable[[float], float]) -> float:
    xs = sorted(sample)
    n = len(xs)
    return max(max((i + 1) / n - cdf(x), cdf(x) - i / n) for i, x in enumerate(xs))


def uniform_cdf(x: float) -> float:
    return min(max(x, 0.0), 1.0)


def truncated_normal_cdf(x: float) -> float:
    """CDF on [0, 1] of N(1/2, (1/6)^2) truncated to [0, 1]."""
    lo, hi = PHI.cdf(-NORMAL_SIGMAS), PHI.cdf(NORMAL_SIGMAS)
    z = (min(max(x, 0.0), 1.0) - 0.5) * 2 * NORMAL_SIGMAS
    return (PHI.cdf(z) - lo) / (hi - lo)


def exponential_cdf(x: float) -> float:
    return 1 - math.exp(-x) if x > 0 else 0.0


def fractions(records: list[dict[str, Any]]) -> list[float]:
    """Each event's position in the day as a fraction (ms resolution: error < 1.2e-8)."""
    return [
        (datetime.fromisoformat(r["timestamp"]).replace(tzinfo=None) - T0).total_seconds() / SPAN_S
        for r in records
    ]


def gaps(xs: list[float]) -> list[float]:
    """Gaps from the range's start to each event, in units of their mean."""
    raw = [b - a for a, b in zip([0.0, *xs[:-1]], xs, strict=True)]
    mean = sum(raw) / len(raw)
    return [g / mean for g in raw]


def events(distribution: str, n: int = N, seed: int = 21, **kwargs: Any) -> list[dict[str, Any]]:
    return generate_events_local(n, distribution=distribution, time_range=DAY, seed=seed, **kwargs)  # type: ignore[arg-type]


# -- exactly count, sorted, in range ---------------------------------------------------


@pytest.mark.parametrize("distribution", ["uniform", "poisson", "normal"])
def test_always_exactly_count_events_sorted_inside_the_range(distribution: str) -> None:
    """The seed's Poisson loop came up short ~40% of the time for count >= 10."""
    for count in (0, 1, 2, 10, 11, 57, 1000):
        for seed in range(20):
            records = events(distribution, count, seed)
            assert len(records) == count
            stamps = [r["timestamp"] for r in records]
            assert stamps == sorted(stamps)
            assert all(ISO_MS.match(s) and DAY[0][:10] == s[:10] for s in stamps)
            assert check_events(records, count=count, users=50, time_range=DAY) == []


def test_more_events_than_milliseconds_still_gives_count_in_order() -> None:
    five_ms = (T0, "2026-01-01T00:00:00.005Z")
    records = generate_events_local(1000, distribution="poisson", time_range=five_ms, seed=1)
    assert len(records) == 1000
    assert {r["timestamp"][-4:] for r in records} == {f"{ms:03d}Z" for ms in range(5)}
    assert check_events(records, time_range=five_ms) == []


# -- time shapes -------------------------------------------------------------------------


def test_uniform_is_stratified_one_event_per_slot() -> None:
    """Each of the n equal slots holds exactly one event, so the empirical CDF is within
    1/n of the uniform CDF everywhere (deterministically, not just in probability)."""
    xs = fractions(events("uniform"))
    assert all(k / N <= x < (k + 1) / N + 1e-7 for k, x in enumerate(xs))
    assert ks_statistic(xs, uniform_cdf) <= 1 / N + 1e-7
    g = gaps(xs)
    cv = statistics.pstdev(g)  # gaps of 1 + V_k - V_(k-1) slots: CV = sqrt(1/6) = 0.41
    assert abs(cv - math.sqrt(1 / 6)) < 0.05


def test_poisson_times_are_uniform_and_gaps_exponential() -> None:
    """A Poisson process conditioned on n arrivals: times are uniform order statistics,
    gaps exponential. The gap test estimates the mean from the sample, which makes the
    plain KS critical value conservative (Lilliefors), so it cannot fail more often
    than alpha."""
    xs = fractions(events("poisson"))
    assert ks_statistic(xs, uniform_cdf) <= ks_critical(N)
    assert ks_statistic(gaps(xs), exponential_cdf) <= ks_critical(N)


def test_normal_is_centred_with_sigma_a_sixth_of_the_range_and_truncated() -> None:
    xs = fractions(events("normal"))
    assert ks_statistic(xs, truncated_normal_cdf) <= ks_critical(N)
    # truncated at 3 sigma the sd is sigma * sqrt(1 - 6 phi(3) / (Phi(3) - Phi(-3)));
    # tolerances: 5 standard errors of the mean (sd/sqrt(n)) and of the sd (sd/sqrt(2n))
    width = PHI.cdf(3) - PHI.cdf(-3)
    sd = math.sqrt(1 - 6 * PHI.pdf(3) / width) / 6
    assert abs(statistics.fmean(xs) - 0.5) <= 5 * sd / math.sqrt(N)
    assert abs(statistics.pstdev(xs) - sd) <= 5 * sd / math.sqrt(2 * N)
    # redrawn, not clipped: nothing piles up on the bounds (clipping would put ~7 there)
    assert min(xs) > 0 and max(xs) < 1 - 1 / 86_400_000


def test_the_shape_tests_tell_the_distributions_apart() -> None:
    """The tests above have power: each sample fails the others' tests."""
    uniform, poisson, normal = (fractions(events(d)) for d in ("uniform", "poisson", "normal"))
    assert ks_statistic(normal, uniform_cdf) > 3 * ks_critical(N)
    assert ks_statistic(uniform, truncated_normal_cdf) > 3 * ks_critical(N)
    assert ks_statistic(gaps(uniform), exponential_cdf) > 3 * ks_critical(N)
    assert statistics.pstdev(gaps(poisson)) > 2 * statistics.pstdev(gaps(uniform))


def test_ks_helper_agrees_with_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    xs = fractions(events("normal", 500))
    assert ks_statistic(xs, uniform_cdf) == pytest.approx(stats.kstest(xs, "uniform").statistic)
    assert ks_critical(N) == pytest.approx(stats.kstwo.ppf(1 - ALPHA, N), rel=0.01)


# -- event types and users ----------------------------------------------------------------


def within_binomial(counts: Counter[str], n: int, p: dict[str, float]) -> None:
    for key, prob in p.items():
        sd = math.sqrt(n * prob * (1 - prob))
        assert abs(counts[key] - n * prob) <= 5 * sd + 1e-9, (key, counts[key], n * prob)


def test_event_types_uniform_or_weighted() -> None:
    plain = Counter(r["event_type"] for r in events("poisson", event_types=["a", "b", "c"]))
    within_binomial(plain, N, {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})
    weights = {"view": 6, "click": 3, "purchase": 1, "refund": 0}
    weighted = Counter(r["event_type"] for r in events("uniform", event_types=weights))
    within_binomial(weighted, N, {"view": 0.6, "click": 0.3, "purchase": 0.1})
    assert weighted["refund"] == 0


def test_users_uniform_over_user_1_to_n() -> None:
    counts = Counter(r["user_id"] for r in events("uniform", users=50))
    assert set(counts) == {f"user_{k}" for k in range(1, 51)}
    within_binomial(counts, N, {f"user_{k}": 1 / 50 for k in range(1, 51)})


def test_zipf_users_follow_one_over_rank_in_the_order_given() -> None:
    ids = [f"u{k:03d}" for k in range(100, 0, -1)]  # the first id is rank 1
    counts = Counter(
        r["user_id"] for r in events("poisson", 20_000, users=ids, user_distribution="zipf")
    )
    h = sum(1 / k for k in range(1, 101))
    within_binomial(counts, 20_000, {ids[k - 1]: 1 / k / h for k in range(1, 101)})
    assert counts.most_common(1)[0][0] == "u100"


def test_event_ids_are_seeded_unique_uuid4() -> None:
    a, b = events("normal", 2000, seed=3), events("normal", 2000, seed=4)
    ids = [r["event_id"] for r in a]
    parsed = [uuid.UUID(i) for i in ids]
    assert all(u.version == 4 and u.variant == uuid.RFC_4122 for u in parsed)
    assert [str(u) for u in parsed] == ids
    assert len(set(ids)) == 2000
    assert ids == [r["event_id"] for r in events("normal", 2000, seed=3)]
    assert not set(ids) & {r["event_id"] for r in b}


def test_metadata_per_type_as_the_seed_or_none() -> None:
    types = ["click", "view", "purchase", "signup"]
    records = events("uniform", 400, event_types=types)
    keys = {r["event_type"]: set(r["metadata"]) for r in records}
    assert keys == {
        "click": {"element", "x", "y"},
        "view": {"page", "duration_s"},
        "purchase": {"amount", "currency", "items"},
        "signup": set(),
    }
    assert all(0 < r["metadata"]["amount"] <= 100 for r in records if r["event_type"] == "purchase")
    assert all("metadata" not in r for r in events("uniform", 10, metadata=False))


# -- determinism and laziness ----------------------------------------------------------------


def test_same_seed_same_stream_and_the_distribution_changes_times_only() -> None:
    assert events("poisson", 300, seed=7) == events("poisson", 300, seed=7)
    assert events("poisson", 300, seed=7) != events("poisson", 300, seed=8)
    assert generate_events_local(5, time_range=DAY) != generate_events_local(5, time_range=DAY)

    def columns(d: str) -> list[tuple[Any, ...]]:
        return [
            (r["event_id"], r["event_type"], r["user_id"], r["metadata"])
            for r in events(d, 300, seed=7)
        ]

    assert columns("uniform") == columns("poisson") == columns("normal")
    assert fractions(events("uniform", 300, 7)) != fractions(events("poisson", 300, 7))


def test_the_lazy_form_matches_and_never_builds_the_stream() -> None:
    kwargs: dict[str, Any] = {"time_range": DAY, "seed": 5, "distribution": "normal"}
    assert list(iter_events_local(300, **kwargs)) == generate_events_local(300, **kwargs)
    first = list(islice(iter_events_local(10**12, **kwargs), 3))  # constant memory
    assert len(first) == 3 and first[0]["timestamp"] <= first[1]["timestamp"]


def test_time_range_forms_and_zones() -> None:
    a = generate_events_local(
        20, time_range={"start": "2026-01-01T01:00:00+01:00", "end": "2026-01-02"}, seed=2
    )
    b = generate_events_local(20, time_range=(datetime(2026, 1, 1), "2026-01-02T00:00:00Z"), seed=2)
    assert a == b


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "time_range=.* is required"),
        ({"time_range": ("2026-01-02", "2026-01-01")}, "must hold a whole millisecond"),
        (
            {"time_range": ("2026-01-01T00:00:00.0002Z", "2026-01-01T00:00:00.0008Z")},
            "must hold a whole millisecond",  # no millisecond of the grid inside
        ),
        ({"time_range": ("2026-01-01",)}, r"time_range must be \(start, end\)"),
        ({"time_range": {"from": T0, "end": T0}}, "exactly 'start' and 'end'"),
        ({"time_range": ("soon", "later")}, "not an ISO 8601 time"),
        ({"time_range": DAY, "count": -1}, "count must be"),
        ({"time_range": DAY, "distribution": "pareto"}, "distribution must be"),
        ({"time_range": DAY, "user_distribution": "pareto"}, "user_distribution must be"),
        ({"time_range": DAY, "event_types": []}, "at least one event type"),
        ({"time_range": DAY, "event_types": ["a", "a"]}, "repeat"),
        ({"time_range": DAY, "event_types": ["a", ""]}, "non-empty str"),
        ({"time_range": DAY, "event_types": {"a": -1, "b": 2}}, "weights"),
        ({"time_range": DAY, "event_types": {"a": 0}}, "weights"),
        ({"time_range": DAY, "users": 0}, "at least 1"),
        ({"time_range": DAY, "users": "user_1"}, "not one str"),
        ({"time_range": DAY, "users": True}, "count or a list"),
        ({"time_range": DAY, "seed": 2.5}, "seed must be"),
    ],
)
def test_bad_arguments_are_clear_errors_at_the_call(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        iter_events_local(**kwargs)


# -- validator ----------------------------------------------------------------------------------


def good() -> list[dict[str, Any]]:
    return events("poisson", 20, users=["ann", "bob"], event_types=["view", "click"])


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda r: r.pop(), "19 records, expected exactly 20"),
        (lambda r: r.reverse(), "is earlier than record"),
        (lambda r: r[0].update(timestamp="2025-12-31T23:59:59.999Z"), "before the range"),
        (
            lambda r: r[19].update(timestamp="2026-01-02T00:00:00.000Z"),
            "not before the range's end",
        ),
        (lambda r: r[4].update(timestamp="2026-01-01T12:00:00"), "no UTC designator"),
        (lambda r: r[4].update(user_id="carol"), "user_id 'carol' does not resolve"),
        (lambda r: r[4].pop("user_id"), "user_id None does not resolve"),
        (lambda r: r[4].update(event_type="purchase"), "event_type 'purchase' is not one"),
        (lambda r: r[4].update(event_id=r[3]["event_id"]), "repeats"),
        (lambda r: r[4].update(event_id=""), "not a non-empty str"),
        (lambda r: r.__setitem__(4, None), "record 4: not an object"),
    ],
)
def test_each_problem_is_reported(corrupt: Any, message: str) -> None:
    records = good()
    assert (
        check_events(
            records, count=20, users=["ann", "bob"], event_types=["view", "click"], time_range=DAY
        )
        == []
    )
    corrupt(records)
    problems = check_events(
        records, count=20, users=["ann", "bob"], event_types=["view", "click"], time_range=DAY
    )
    assert any(message in p for p in problems), problems


def test_user_count_resolves_numbered_ids_and_problems_are_capped() -> None:
    records = events("uniform", 300, users=10)
    assert check_events(records, users=10) == []
    problems = check_events(records, users=3, limit=5)
    assert len(problems) == 6 and re.fullmatch(r"\.\.\. and \d+ more problems", problems[-1])


# -- skeleton for mode="llm" ---------------------------------------------------------------------


def test_skeleton_holds_the_sampled_fields_of_the_local_stream() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    skeleton = events_skeleton(50, distribution="normal", time_range=DAY, users=5, seed=6)
    local = generate_events_local(50, distribution="normal", time_range=DAY, users=5, seed=6)
    assert skeleton.records == [{k: v for k, v in r.items() if k != "metadata"} for r in local]
    assert skeleton.content_schema == EVENTS_CONTENT_SCHEMA
    jsonschema.Draft202012Validator.check_schema(skeleton.content_schema)
    contents = [{"description": f"event {i}", "metadata": {"i": i}} for i in range(50)]
    for c in contents:
        jsonschema.validate(c, skeleton.content_schema)
    filled = skeleton.fill(contents)
    assert filled[7]["metadata"] == {"i": 7} and filled[7]["timestamp"] == local[7]["timestamp"]
    assert check_events(filled, count=50, users=5, time_range=DAY) == []


@pytest.mark.parametrize("field", ["timestamp", "user_id", "event_type", "event_id"])
def test_content_may_not_move_a_sampled_field(field: str) -> None:
    skeleton = events_skeleton(1, time_range=DAY, seed=6)
    with pytest.raises(InvalidRequestError, match=f"sampled field '{field}'"):
        skeleton.fill([{"description": "d", "metadata": {}, field: "x"}])


def test_skeleton_custom_content_schema() -> None:
    schema = {
        "type": "object",
        "properties": {"description": {"type": "string"}, "page": {"type": "string"}},
        "required": ["description", "page"],
    }
    skeleton = events_skeleton(2, time_range=DAY, seed=6, content_schema=schema)
    assert skeleton.content_fields == ("description", "page")
    with pytest.raises(InvalidRequestError, match="sampled fields"):
        events_skeleton(
            2, time_range=DAY, content_schema={"type": "object", "properties": {"user_id": {}}}
        )
    with pytest.raises(InvalidRequestError, match="object schema"):
        events_skeleton(2, time_range=DAY, content_schema={"type": "array"})
