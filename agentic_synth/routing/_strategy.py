"""Route strategies: in which order a request tries the models.

Each returns a list of candidate slots; the router walks it, skipping models
whose breaker refuses, falling back down the list on failure.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Protocol

from .._exceptions import ConfigurationError

__all__ = ["STRATEGIES", "SlotView", "Strategy", "make_strategy"]

STRATEGIES = ("priority", "round_robin", "weighted", "least_latency", "least_busy")


class SlotView(Protocol):
    weight: float
    in_flight: int
    #: Smoothed seconds per output token (EWMA); None until measured.
    latency_per_token: float | None


Strategy = Callable[[Sequence[SlotView]], list[int]]


def make_strategy(
    name: str, *, explore: float = 0.05, rng: random.Random | None = None
) -> Strategy:
    """The ordering function for ``name`` (see :data:`STRATEGIES`)."""
    if name not in STRATEGIES:
        raise ConfigurationError(f"unknown strategy {name!r}; use one of {', '.join(STRATEGIES)}")
    if not 0.0 <= explore <= 1.0:
        raise ConfigurationError(f"explore must be a share in [0, 1], got {explore!r}")
    rand = rng or random.Random()

    if name == "priority":

        def priority(slots: Sequence[SlotView]) -> list[int]:
            return list(range(len(slots)))

        return priority

    if name == "round_robin":
        counter = 0

        def round_robin(slots: Sequence[SlotView]) -> list[int]:
            nonlocal counter
            n = len(slots)
            start = counter % n
            counter += 1
            return [(start + i) % n for i in range(n)]

        return round_robin

    if name == "weighted":

        def weighted(slots: Sequence[SlotView]) -> list[int]:
            # weighted sampling without replacement (Efraimidis-Spirakis keys)
            keys = [rand.random() ** (1.0 / s.weight) for s in slots]
            return sorted(range(len(slots)), key=keys.__getitem__, reverse=True)

        return weighted

    if name == "least_busy":

        def least_busy(slots: Sequence[SlotView]) -> list[int]:
            return sorted(range(len(slots)), key=lambda i: slots[i].in_flight)

        return least_busy

    def least_latency(slots: Sequence[SlotView]) -> list[int]:
        order = list(range(len(slots)))
        if len(order) > 1 and rand.random() < explore:
            # a small share of traffic goes elsewhere, so a recovered model is noticed
            first = rand.randrange(len(order))
            order.insert(0, order.pop(first))
            return order
        # unmeasured models sort first: they must be tried to be ranked
        return sorted(
            order,
            key=lambda i: -1.0 if (v := slots[i].latency_per_token) is None else v,
        )

    return least_latency
