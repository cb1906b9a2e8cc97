"""The knee of a concurrency sweep: the level past which throughput stops growing.

Rule (chosen over Kneedle): the knee is the smallest level ``c`` such that no higher
level ``c'`` in the sweep beats its throughput by ``threshold`` per doubling or more::

    X(c') < X(c) * (1 + threshold * log2(c' / c))    for every c' > c

With the default ``threshold=0.10`` that reads "past the knee, doubling concurrency
buys less than 10% more throughput", which is what a user sizing ``-c`` wants to
know. Kneedle (Satopaa et al., 2011) finds the point of maximum curvature relative
to the chord between the sweep's end points instead: extending the sweep moves its
answer and it has no unit a reader can check, while this rule only depends on the
points around the knee. The allowance grows with the distance (``log2``) so that
noise on one far level does not push the knee out, and one noisy low reading at a
level moves the knee by at most that level.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Knee", "find_knee"]


@dataclass(frozen=True, slots=True)
class Knee:
    """Where throughput stops growing, and what the sweep saw."""

    #: The knee level, or ``None`` when throughput was still growing at the top level.
    concurrency: int | None
    #: Throughput at the knee (``None`` without a knee).
    throughput: float | None
    peak_concurrency: int
    peak_throughput: float
    threshold: float

    def describe(self) -> str:
        if self.concurrency is None:
            return (
                f"no knee: throughput still grows by {self.threshold:.0%} or more per doubling "
                f"at {self.peak_concurrency}; extend --sweep"
            )
        return (
            f"knee at concurrency {self.concurrency} ({self.throughput:,.0f} req/s): doubling "
            f"past it adds less than {self.threshold:.0%}"
        )


def find_knee(points: Iterable[tuple[int, float]], threshold: float = 0.10) -> Knee | None:
    """The knee of ``(concurrency, throughput)`` points (see the module doc); ``None``
    without a point. A level measured more than once counts with its median."""
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    by_level: dict[int, list[float]] = {}
    for level, throughput in points:
        if level < 1:
            raise ValueError(f"concurrency levels are >= 1, got {level}")
        by_level.setdefault(level, []).append(throughput)
    if not by_level:
        return None
    curve = [(level, _median(values)) for level, values in sorted(by_level.items())]
    peak_level, peak = max(curve, key=lambda p: p[1])
    for i, (level, x) in enumerate(curve[:-1]):  # the top level has nothing to compare
        if all(y < x * (1 + threshold * math.log2(c / level)) for c, y in curve[i + 1 :]):
            return Knee(level, x, peak_level, peak, threshold)
    return Knee(None, None, peak_level, peak, threshold)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
