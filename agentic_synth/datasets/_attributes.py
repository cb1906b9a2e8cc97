"""Attributes: seeded samplers whose values condition each record's prompt.

Diversity is why people generate synthetic data: a persona, a topic, a difficulty
per record keeps ten thousand answers from being ten thousand rewordings of one.
``attributes={"topic": ["billing", "shipping"], "difficulty": {"easy": 0.7,
"hard": 0.3}}``: a list is sampled uniformly, a mapping of values to weights by
weight. Sampling is keyed by the seed and the slot, so slot 17 gets the same
attributes in every run of the job (resume and byte-identical files need that)
whatever order the slots run in.

Generation parameters may be distributions too (``temperature={"uniform": [0.6,
1.0]}``, ``{"normal": [0.8, 0.1]}``), sampled per request and clipped to the
parameter's range.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from .._exceptions import InvalidRequestError

__all__ = ["AttributeSampler", "ParamSampler"]


def _rng(seed: int, slot: int, what: str) -> random.Random:
    return random.Random(f"{seed}:{what}:{slot}")


class AttributeSampler:
    """Values of each attribute for a slot, deterministic under ``seed``."""

    __slots__ = ("_choices", "_seed")

    def __init__(self, attributes: Mapping[str, Any] | None, seed: int) -> None:
        self._seed = seed
        self._choices: list[tuple[str, list[Any], list[float] | None]] = []
        for name, spec in (attributes or {}).items():
            if not isinstance(name, str) or not name.isidentifier():
                raise InvalidRequestError(
                    f"attribute names must be identifiers (they fill {{name}} in the "
                    f"instructions), got {name!r}"
                )
            if isinstance(spec, Mapping):
                values = list(spec)
                weights = [spec[v] for v in values]
                if (
                    not values
                    or any(
                        isinstance(w, bool) or not isinstance(w, int | float) or w < 0
                        for w in weights
                    )
                    or sum(weights) <= 0
                ):
                    raise InvalidRequestError(
                        f"attribute {name!r}: a mapping gives each value a weight >= 0 "
                        "(at least one > 0), e.g. {'easy': 0.7, 'hard': 0.3}"
                    )
                self._choices.append((name, values, [float(w) for w in weights]))
            elif isinstance(spec, Sequence) and not isinstance(spec, str | bytes):
                values = list(spec)
                if not values:
                    raise InvalidRequestError(f"attribute {name!r} has no values")
                self._choices.append((name, values, None))
            else:
                raise InvalidRequestError(
                    f"attribute {name!r} must be a list of values or a mapping of values "
                    f"to weights, got {type(spec).__name__}"
                )

    @property
    def names(self) -> list[str]:
        return [name for name, _, _ in self._choices]

    def sample(self, slot: int) -> dict[str, Any]:
        if not self._choices:
            return {}  # no generator to seed (a fresh dict: callers may add to it)
        rng = _rng(self._seed, slot, "attributes")
        out: dict[str, Any] = {}
        for name, values, weights in self._choices:
            out[name] = (
                values[rng.randrange(len(values))]
                if weights is None
                else (rng.choices(values, weights=weights)[0])
            )
        return out


#: The range each sampled generation parameter is clipped to.
_PARAM_RANGES = {"temperature": (0.0, 2.0), "top_p": (1e-6, 1.0)}


class ParamSampler:
    """Generation parameters that may be distributions, one draw per request."""

    __slots__ = ("_fixed", "_seed", "_varying")

    def __init__(self, params: Mapping[str, Any], seed: int) -> None:
        self._seed = seed
        self._fixed: dict[str, Any] = {}
        self._varying: dict[str, tuple[str, float, float]] = {}
        for name, value in params.items():
            if isinstance(value, Mapping) and name in _PARAM_RANGES:
                if len(value) != 1:
                    raise InvalidRequestError(
                        f"{name} as a distribution is one of {{'uniform': [low, high]}} or "
                        f"{{'normal': [mean, stdev]}}, got {dict(value)!r}"
                    )
                ((kind, args),) = value.items()
                if kind not in ("uniform", "normal") or not (
                    isinstance(args, Sequence)
                    and len(args) == 2
                    and all(isinstance(a, int | float) for a in args)
                ):
                    raise InvalidRequestError(
                        f"{name}: use {{'uniform': [low, high]}} or {{'normal': [mean, stdev]}}"
                    )
                self._varying[name] = (kind, float(args[0]), float(args[1]))
            else:
                self._fixed[name] = value

    def sample(self, slot: int, attempt: int) -> dict[str, Any]:
        if not self._varying:
            return self._fixed
        rng = _rng(self._seed, slot * 1000 + attempt, "params")
        out = dict(self._fixed)
        for name, (kind, a, b) in self._varying.items():
            value = rng.uniform(a, b) if kind == "uniform" else rng.gauss(a, b)
            low, high = _PARAM_RANGES[name]
            out[name] = round(min(high, max(low, value)), 4)
        return out
