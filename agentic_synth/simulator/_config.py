"""What a simulated model does: latency, streaming speed, output length and faults.

One :class:`SimConfig` drives both the in-process ``sim`` provider and the
loopback mock server, so a test can move from one to the other unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from .._exceptions import ConfigurationError
from ._latency import Latency, fixed, parse_latency

__all__ = ["FAULT_KINDS", "WIRE_ONLY_FAULTS", "SimConfig"]

#: Every fault the simulator can inject, in the order their rates are stacked.
FAULT_KINDS = (
    "429",
    "500",
    "529",
    "timeout",
    "reset",
    "malformed",
    "truncate",
    "stream_error",
)
#: Faults that only make full sense on the wire; the in-process provider maps them
#: to the error a client would see (connection error, overloaded error mid-stream).
WIRE_ONLY_FAULTS = ("reset", "malformed", "truncate", "stream_error")
_NO_LATENCY = fixed(0.0)


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Behaviour of a simulated model.

    Fault rates are probabilities per request (each in 0..1, summing to <= 1).
    Outcomes are deterministic given ``seed``, the request content and how many
    times that same content was seen before; ``fail_first_n`` is the exception
    (it counts arrivals, for fallback tests).
    """

    #: Time to the first token (seconds); a :class:`Latency` or ``"uniform:0.05,0.2"``.
    latency: Latency = _NO_LATENCY
    #: Streaming speed after the first token; ``None`` sends all tokens at once.
    tokens_per_s: float | None = None
    #: Typical output length in tokens (words): lengths spread over 0.5x..1.5x,
    #: then run to the end of the sentence, and are cut at ``max_tokens``.
    output_tokens: int = 64
    seed: int = 0
    fault_429: float = 0.0
    fault_500: float = 0.0
    fault_529: float = 0.0
    #: The request hangs: in-process until the request's timeout, on the wire ``hang`` s.
    fault_timeout: float = 0.0
    #: Close the socket without answering (mock server); ``APIConnectionError`` in-process.
    fault_reset: float = 0.0
    #: Answer 200 with a broken JSON body (or a broken SSE event).
    fault_malformed: float = 0.0
    #: Close the connection halfway through the response body / stream.
    fault_truncate: float = 0.0
    #: An ``overloaded_error`` event inside a 200 stream after some deltas (529 if not streaming).
    fault_stream_error: float = 0.0
    #: Seconds sent in ``retry-after`` with 429 and 529 answers.
    retry_after: float = 1.0
    #: Seconds the mock server holds a request that hit the timeout fault.
    hang: float = 30.0
    #: The first N requests (by arrival) fail with ``fail_first_kind``.
    fail_first_n: int = 0
    fail_first_kind: str = "500"
    #: Words per streamed text delta (real APIs send a few tokens per delta).
    stream_chunk_tokens: int = 4
    #: Limits reported in rate-limit response headers (per minute).
    requests_per_minute: int = 4000
    input_tokens_per_minute: int = 400_000
    output_tokens_per_minute: int = 80_000

    def __post_init__(self) -> None:
        if not isinstance(self.latency, Latency):
            object.__setattr__(self, "latency", parse_latency(self.latency))
        if self.tokens_per_s is not None and not (
            _is_number(self.tokens_per_s) and self.tokens_per_s > 0
        ):
            raise ConfigurationError(
                f"tokens_per_s must be a positive number or None (instant), "
                f"got {self.tokens_per_s!r}"
            )
        total = 0.0
        for kind in FAULT_KINDS:
            rate = getattr(self, f"fault_{kind}")
            if not (_is_number(rate) and 0.0 <= rate <= 1.0):
                raise ConfigurationError(
                    f"fault_{kind} must be a probability between 0 and 1, got {rate!r}"
                )
            total += rate
        if total > 1.0 + 1e-9:
            raise ConfigurationError(
                f"fault rates add up to {total:g} > 1; lower some of them so the sum is <= 1"
            )
        for name in ("retry_after", "hang"):
            value = getattr(self, name)
            if not (_is_number(value) and value >= 0):
                raise ConfigurationError(f"{name} must be >= 0 seconds, got {value!r}")
        for name in (
            "output_tokens",
            "stream_chunk_tokens",
            "requests_per_minute",
            "input_tokens_per_minute",
            "output_tokens_per_minute",
        ):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise ConfigurationError(f"{name} must be an integer >= 1, got {value!r}")
        if not (isinstance(self.seed, int) and not isinstance(self.seed, bool)):
            raise ConfigurationError(f"seed must be an integer, got {self.seed!r}")
        if not (isinstance(self.fail_first_n, int) and self.fail_first_n >= 0):
            raise ConfigurationError(
                f"fail_first_n must be an integer >= 0, got {self.fail_first_n!r}"
            )
        if self.fail_first_kind not in FAULT_KINDS:
            raise ConfigurationError(
                f"fail_first_kind must be one of {', '.join(FAULT_KINDS)}, "
                f"got {self.fail_first_kind!r}"
            )

    @property
    def fault_rates(self) -> dict[str, float]:
        """Non-zero fault rates by kind."""
        rates = {kind: getattr(self, f"fault_{kind}") for kind in FAULT_KINDS}
        return {kind: rate for kind, rate in rates.items() if rate > 0}

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any] | None) -> SimConfig:
        """Build from ``ModelSpec.options``: field names as keys, or a ``SimConfig``
        under ``"config"`` that the other keys then override."""
        if not options:
            return cls()
        if not isinstance(options, Mapping):
            raise ConfigurationError(
                f"sim options must be a mapping of SimConfig fields, got {type(options).__name__}"
            )
        values = dict(options)
        base = values.pop("config", None)
        if base is not None and not isinstance(base, SimConfig):
            raise ConfigurationError(
                f"options['config'] must be a SimConfig, got {type(base).__name__}"
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigurationError(
                f"unknown sim option(s) {', '.join(map(repr, unknown))}; "
                f"valid options are config, {', '.join(sorted(known))}"
            )
        if base is None:
            return cls(**values)
        return replace(base, **values) if values else base

    def to_mapping(self) -> dict[str, Any]:
        """Plain JSON-able values that :meth:`from_mapping` turns back into this config."""
        data = asdict(self)
        data["latency"] = str(self.latency)
        return data


def _is_number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))  # type: ignore[arg-type]
    )
