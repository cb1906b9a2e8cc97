"""The knee of a concurrency sweep, on synthetic curves whose knee is known."""

from __future__ import annotations

import math
import random

import pytest

from agentic_synth.monitor._knee import find_knee

LEVELS = [2**i for i in range(10)]  # 1 .. 512


def test_linear_then_flat_knee_is_where_it_flattens() -> None:
    # 100 req/s per worker up to 16 workers, then a server that serves 1,600 req/s
    knee = find_knee((c, 100.0 * min(c, 16)) for c in LEVELS)
    assert knee is not None
    assert knee.concurrency == 16 and knee.throughput == 1600
    assert knee.peak_throughput == 1600 and knee.peak_concurrency == 16  # first at the peak


def test_littles_law_curve() -> None:
    """A closed system (Little's law, X = c / R) with a server of rate mu behind a
    base latency L: X(c) = mu * c / (c + mu * L). Growth per doubling is
    k / (2c + k) with k = mu * L, under 10% once c > 4.5 k."""
    mu, base_latency = 1000.0, 0.01  # k = 10: the knee is the first level above 45
    knee = find_knee((c, mu * c / (c + mu * base_latency)) for c in LEVELS)
    assert knee is not None and knee.concurrency == 64


def test_a_stricter_threshold_moves_the_knee_out() -> None:
    points = [(c, 1000.0 * c / (c + 10.0)) for c in LEVELS]
    loose, strict = find_knee(points, 0.10), find_knee(points, 0.02)
    assert loose is not None and strict is not None
    assert loose.concurrency == 64
    assert strict.concurrency is not None and strict.concurrency > 64


def test_noise_moves_the_knee_by_one_level_at_most() -> None:
    """+-8% noise on every level (seeded): the knee stays at 16, or moves to 32 when a
    plateau reading lands 10% above a low one at 16; never earlier, never further."""
    knees = []
    for seed in range(200):
        rng = random.Random(seed)
        points = [(c, 100.0 * min(c, 16) * rng.uniform(0.92, 1.08)) for c in LEVELS]
        knee = find_knee(points)
        assert knee is not None
        knees.append(knee.concurrency)
    assert set(knees) <= {16, 32}
    assert knees.count(16) > 0.8 * len(knees)


def test_still_growing_has_no_knee() -> None:
    knee = find_knee((c, 50.0 * c) for c in LEVELS)
    assert knee is not None and knee.concurrency is None and knee.throughput is None
    assert knee.peak_concurrency == 512
    assert "extend --sweep" in knee.describe()


def test_throughput_falling_past_the_peak() -> None:
    # contention: more workers make it slower after 8
    knee = find_knee([(1, 100.0), (2, 200.0), (4, 400.0), (8, 800.0), (16, 700.0), (32, 500.0)])
    assert knee is not None and knee.concurrency == 8 and knee.peak_concurrency == 8


def test_levels_measured_twice_count_with_their_median() -> None:
    points = [(1, 100.0), (2, 200.0), (2, 190.0), (2, 900.0), (4, 210.0), (8, 205.0)]
    knee = find_knee(points)
    assert knee is not None and knee.concurrency == 2 and knee.throughput == 200.0


def test_uneven_levels_use_growth_per_doubling() -> None:
    # 1 -> 10 is 3.3 doublings; +20% over them is 6% a doubling: flat enough
    knee = find_knee([(1, 100.0), (10, 120.0)])
    assert knee is not None and knee.concurrency == 1
    assert math.isclose(knee.throughput or 0, 100.0)


def test_no_points_and_bad_input() -> None:
    assert find_knee([]) is None
    one = find_knee([(4, 100.0)])
    assert one is not None and one.concurrency is None  # nothing to compare with
    with pytest.raises(ValueError, match="threshold"):
        find_knee([(1, 1.0)], threshold=0)
    with pytest.raises(ValueError, match="concurrency levels"):
        find_knee([(0, 1.0)])
