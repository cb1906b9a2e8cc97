"""Latency distributions for simulated model calls.

A :class:`Latency` turns two uniform numbers in ``[0, 1)`` into a delay in
seconds, so the simulator can draw them from a request's own hash instead of a
shared random generator (which would make outcomes depend on interleaving).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from .._exceptions import ConfigurationError

__all__ = ["Latency", "fixed", "lognormal", "parse_latency", "uniform"]

#: z-score of the 99th percentile of a standard normal distribution.
_Z99 = 2.3263
_TWO_PI = 2.0 * math.pi


@dataclass(frozen=True, slots=True)
class Latency:
    """A delay distribution: ``fixed``, ``uniform`` or ``lognormal``.

    For ``fixed`` only ``a`` is used; for ``uniform`` ``a``..``b`` is the range;
    for ``lognormal`` ``a`` is the median (p50) and ``b`` the 99th percentile.
    """

    kind: Literal["fixed", "uniform", "lognormal"]
    a: float
    b: float = 0.0

    def __post_init__(self) -> None:
        if not all(math.isfinite(v) and v >= 0 for v in (self.a, self.b)):
            raise ConfigurationError(
                f"latency values must be finite and >= 0 seconds, got {self.a!r}, {self.b!r}"
            )
        if self.kind == "uniform" and self.b < self.a:
            raise ConfigurationError(
                f"uniform latency needs lo <= hi, got uniform:{self.a:g},{self.b:g}; swap them"
            )
        if self.kind == "lognormal" and not (0 < self.a <= self.b):
            raise ConfigurationError(
                f"lognormal latency needs 0 < p50 <= p99, got lognormal:{self.a:g},{self.b:g}"
            )
        if self.kind not in ("fixed", "uniform", "lognormal"):
            raise ConfigurationError(
                f"unknown latency kind {self.kind!r}; use fixed, uniform or lognormal"
            )

    @property
    def is_zero(self) -> bool:
        """True when every sample is 0 (the simulator can skip sleeping)."""
        return self.kind == "fixed" and self.a == 0.0

    def sample(self, u1: float, u2: float) -> float:
        """Map two independent uniforms in ``[0, 1)`` to a delay in seconds."""
        if self.kind == "fixed":
            return self.a
        if self.kind == "uniform":
            return self.a + (self.b - self.a) * u1
        # Box-Muller: one standard normal from two uniforms (1 - u1 lies in (0, 1]).
        z = math.sqrt(-2.0 * math.log(1.0 - u1)) * math.cos(_TWO_PI * u2)
        mu = math.log(self.a)
        sigma = (math.log(self.b) - mu) / _Z99
        return math.exp(mu + sigma * z)

    def __str__(self) -> str:
        if self.kind == "fixed":
            return str(self.a)
        return f"{self.kind}:{self.a},{self.b}"


def fixed(seconds: float) -> Latency:
    """Every request takes exactly ``seconds``."""
    return Latency("fixed", float(seconds))


def uniform(lo: float, hi: float) -> Latency:
    """Delays spread evenly between ``lo`` and ``hi`` seconds."""
    return Latency("uniform", float(lo), float(hi))


def lognormal(p50: float, p99: float) -> Latency:
    """Long-tailed delays with the given median and 99th percentile (seconds)."""
    return Latency("lognormal", float(p50), float(p99))


def parse_latency(text: str | float | Latency) -> Latency:
    """Parse ``"0.1"``, ``"uniform:0.05,0.2"`` or ``"lognormal:0.1,0.8"`` (seconds)."""
    if isinstance(text, Latency):
        return text
    if isinstance(text, bool):
        raise ConfigurationError(f"latency must be seconds or a string, got {text!r}")
    if isinstance(text, int | float):
        return fixed(text)
    if not isinstance(text, str):
        raise ConfigurationError(
            f"latency must be seconds, a Latency or a string, got {type(text).__name__}"
        )
    kind, sep, rest = text.strip().partition(":")
    try:
        if not sep:
            return fixed(float(kind))
        values = [float(v) for v in rest.split(",")]
    except ValueError:
        raise ConfigurationError(_latency_help(text)) from None
    kind = kind.strip().lower()
    if kind == "fixed" and len(values) == 1:
        return fixed(values[0])
    if kind in ("uniform", "lognormal") and len(values) == 2:
        return Latency(kind, values[0], values[1])  # type: ignore[arg-type]
    raise ConfigurationError(_latency_help(text))


def _latency_help(text: str) -> str:
    return (
        f"cannot parse latency {text!r}; write seconds ('0.1'), 'uniform:LO,HI' "
        "or 'lognormal:P50,P99'"
    )
