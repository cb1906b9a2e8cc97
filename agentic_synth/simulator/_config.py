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

__all__ = ["FAULT_KINDS", "HOSTILE_FAULTS", "SCHEMA_FAULTS", "WIRE_ONLY_FAULTS", "SimConfig"]

#: Servers that misbehave at the HTTP level: what a client's response limits and
#: timeouts are for. Full effect on the mock server only.
HOSTILE_FAULTS = (
    "huge_headers",
    "huge_body",
    "endless_sse_line",
    "silent_stream",
    "interim_1xx",
    "trickle",
)
#: Every per-request fault the simulator can inject, in the order their rates are
#: stacked. New kinds go at the end, so a seed keeps giving the same outcomes.
FAULT_KINDS = (
    "429",
    "500",
    "529",
    "timeout",
    "reset",
    "malformed",
    "truncate",
    "stream_error",
    "quota",
    "not_found",
    "redirect",
    "long_retry_after",
    "no_retry",
    *HOSTILE_FAULTS,
    "invalid_output",
    "truncated_output",
)
#: Faults in the answer's content, for the correction loop: a 200 whose JSON breaks
#: the request's ``json_schema`` (wrong type, missing required key, enum outside the
#: set, pattern broken), or is cut mid-JSON with finish reason ``max_tokens``
#: (``length``). Only requests that carry a ``json_schema`` are affected; a request
#: without one whose draw lands in these bands gets a normal answer.
SCHEMA_FAULTS = ("invalid_output", "truncated_output")
#: Faults that only make full sense on the wire; the in-process provider maps them
#: to the error a client would see (connection error, overloaded error mid-stream,
#: response too large, timeout).
WIRE_ONLY_FAULTS = ("reset", "malformed", "truncate", "stream_error", *HOSTILE_FAULTS)
#: Statuses the redirect fault may answer with.
REDIRECT_STATUSES = (300, 301, 302, 303, 307, 308)
_NO_LATENCY = fixed(0.0)
_PROMPT_CACHE_VALUES = (True, False, "auto", "5m", "1h")


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Behaviour of a simulated model.

    Fault rates (``fault_*``) are probabilities per request (each in 0..1,
    summing to <= 1). Outcomes are deterministic given ``seed``, the request
    content and how many times that same content was seen before; the
    exceptions are ``fail_first_n`` (it counts arrivals, for breaker tests),
    ``forbidden`` (prompt content only: a blocked prompt stays blocked) and
    ``unauthorized`` (every request).
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
    #: Out of credit / quota: Anthropic's 400 "credit balance is too low", OpenAI's 429
    #: ``insufficient_quota``. 1.0 is an exhausted account.
    fault_quota: float = 0.0
    #: 404 model not found (Anthropic ``not_found_error``, OpenAI ``model_not_found``).
    fault_not_found: float = 0.0
    #: A ``redirect_status`` answer pointing at ``redirect_location``.
    fault_redirect: float = 0.0
    #: 429 with ``retry-after: long_retry_after`` (a minute by default).
    fault_long_retry_after: float = 0.0
    #: 500 with ``x-should-retry: false``: the server asks not to be retried.
    fault_no_retry: float = 0.0
    #: Mock server: a 200 answer with one header of ``huge_header_bytes`` before the rest.
    fault_huge_headers: float = 0.0
    #: Mock server: a 200 body of ``huge_body_bytes`` (endless when 0), never held in memory.
    fault_huge_body: float = 0.0
    #: Mock server: a 200 event stream whose ``data:`` line never ends.
    fault_endless_sse_line: float = 0.0
    #: Mock server: 200 and the headers, then silence (the connection stays open).
    fault_silent_stream: float = 0.0
    #: Mock server: ``100 Continue`` and ``103 Early Hints`` before a normal answer.
    fault_interim_1xx: float = 0.0
    #: Mock server: 200 and the headers, then one byte every ``trickle_interval`` s, forever.
    fault_trickle: float = 0.0
    #: Requests with a ``json_schema``: the JSON answered violates it in one realistic way
    #: (see :data:`SCHEMA_FAULTS`). Flag ``--fault-invalid-output``.
    fault_invalid_output: float = 0.0
    #: Requests with a ``json_schema``: the JSON is cut mid-way, finish reason
    #: ``max_tokens`` (OpenAI ``length``). Flag ``--fault-truncated-output``.
    fault_truncated_output: float = 0.0
    #: Share of prompts answered 403 ``permission_error`` (a gateway's content block):
    #: chosen by the prompt text and the seed, so the same prompt is always blocked.
    forbidden: float = 0.0
    #: Answer every request 401, like a server that does not know the key.
    unauthorized: bool = False
    #: Seconds sent in ``retry-after`` with 429 and 529 answers.
    retry_after: float = 1.0
    #: Seconds sent in ``retry-after`` by the ``long_retry_after`` fault.
    long_retry_after: float = 60.0
    #: Status and ``location`` of the redirect fault; no location: the same URL over https.
    redirect_status: int = 307
    redirect_location: str | None = None
    #: Bytes of the one header the ``huge_headers`` fault sends.
    huge_header_bytes: int = 1 << 20
    #: Bytes of the ``huge_body`` fault's body; 0 sends one that never ends.
    huge_body_bytes: int = 0
    #: Seconds between the bytes of the ``trickle`` fault.
    trickle_interval: float = 2.0
    #: Seconds the mock server holds a request that hit the timeout fault.
    hang: float = 30.0
    #: The first N requests (by arrival) fail with ``fail_first_kind``; requests the
    #: ``forbidden`` gate turns away never reach the model and do not count.
    fail_first_n: int = 0
    fail_first_kind: str = "500"
    #: Words per streamed text delta (real APIs send a few tokens per delta).
    stream_chunk_tokens: int = 4
    #: Limits reported in rate-limit response headers (per minute).
    requests_per_minute: int = 4000
    input_tokens_per_minute: int = 400_000
    output_tokens_per_minute: int = 80_000
    #: Prompt caching as the APIs do it: Anthropic ``cache_control`` breakpoints,
    #: OpenAI's automatic caching of long prompts; ``False``: a server without it.
    #: The in-process ``sim`` provider also plays the client, as the anthropic
    #: provider's ``prompt_cache`` option: ``True``/``"auto"``, ``False``, or a
    #: forced TTL ``"5m"``/``"1h"``.
    prompt_cache: bool | str = True
    #: Minimum cacheable prompt prefix in tokens; ``None``: the model's (Anthropic's
    #: table by model name, 1,024 on the OpenAI wire).
    prompt_cache_min_tokens: int | None = None
    #: Batch APIs: seconds a whole batch takes; its items finish one after another,
    #: evenly spread over it, so counts move between polls. 0: done on the first poll.
    batch_processing_time: float = 0.0
    #: Batch APIs: share of items that end ``errored`` (overloaded, server error or
    #: invalid request), drawn per item from its content and the seed.
    batch_error_rate: float = 0.0
    #: Batch APIs: seconds after creation when a batch expires; items not processed by
    #: then end ``expired`` (the real APIs give 24 hours).
    batch_expire_after: float = 86400.0
    #: Batch APIs: seconds a canceled batch stays ``canceling`` before it ends.
    batch_cancel_time: float = 0.0

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
        if not (_is_number(self.forbidden) and 0.0 <= self.forbidden <= 1.0):
            raise ConfigurationError(
                f"forbidden must be a share of prompts between 0 and 1, got {self.forbidden!r}"
            )
        if not isinstance(self.unauthorized, bool):
            raise ConfigurationError(
                f"unauthorized must be True or False, got {self.unauthorized!r}"
            )
        for name in ("retry_after", "hang", "long_retry_after"):
            value = getattr(self, name)
            if not (_is_number(value) and value >= 0):
                raise ConfigurationError(f"{name} must be >= 0 seconds, got {value!r}")
        for name in ("batch_processing_time", "batch_cancel_time"):
            value = getattr(self, name)
            if not (_is_number(value) and value >= 0):
                raise ConfigurationError(f"{name} must be >= 0 seconds, got {value!r}")
        if not (_is_number(self.batch_expire_after) and self.batch_expire_after > 0):
            raise ConfigurationError(
                f"batch_expire_after must be > 0 seconds, got {self.batch_expire_after!r}"
            )
        if not (_is_number(self.batch_error_rate) and 0.0 <= self.batch_error_rate <= 1.0):
            raise ConfigurationError(
                f"batch_error_rate must be a probability between 0 and 1, "
                f"got {self.batch_error_rate!r}"
            )
        if not (_is_number(self.trickle_interval) and self.trickle_interval > 0):
            raise ConfigurationError(
                f"trickle_interval must be > 0 seconds, got {self.trickle_interval!r}"
            )
        if self.redirect_status not in REDIRECT_STATUSES or isinstance(self.redirect_status, bool):
            raise ConfigurationError(
                f"redirect_status must be one of {', '.join(map(str, REDIRECT_STATUSES))}, "
                f"got {self.redirect_status!r}"
            )
        location = self.redirect_location
        if location is not None and (
            not isinstance(location, str) or not location or any(c in location for c in "\r\n\0")
        ):
            raise ConfigurationError(
                f"redirect_location must be a URL without line breaks or None, got {location!r}"
            )
        if not (_is_int(self.huge_body_bytes) and self.huge_body_bytes >= 0):
            raise ConfigurationError(
                f"huge_body_bytes must be an integer >= 0 (0: endless), "
                f"got {self.huge_body_bytes!r}"
            )
        for name in (
            "output_tokens",
            "stream_chunk_tokens",
            "huge_header_bytes",
            "requests_per_minute",
            "input_tokens_per_minute",
            "output_tokens_per_minute",
        ):
            value = getattr(self, name)
            if not (_is_int(value) and value >= 1):
                raise ConfigurationError(f"{name} must be an integer >= 1, got {value!r}")
        if not _is_int(self.seed):
            raise ConfigurationError(f"seed must be an integer, got {self.seed!r}")
        if not (_is_int(self.fail_first_n) and self.fail_first_n >= 0):
            raise ConfigurationError(
                f"fail_first_n must be an integer >= 0, got {self.fail_first_n!r}"
            )
        if not any(
            self.prompt_cache is v or (isinstance(v, str) and self.prompt_cache == v)
            for v in _PROMPT_CACHE_VALUES
        ):
            raise ConfigurationError(
                f"prompt_cache must be one of {', '.join(map(repr, _PROMPT_CACHE_VALUES))}, "
                f"got {self.prompt_cache!r}"
            )
        minimum = self.prompt_cache_min_tokens
        if minimum is not None and not (_is_int(minimum) and minimum >= 1):
            raise ConfigurationError(
                f"prompt_cache_min_tokens must be an integer >= 1 or None, got {minimum!r}"
            )
        if self.fail_first_kind not in FAULT_KINDS:
            raise ConfigurationError(
                f"fail_first_kind must be one of {', '.join(FAULT_KINDS)}, "
                f"got {self.fail_first_kind!r}"
            )

    @property
    def invalid_output(self) -> float:
        """Share of ``json_schema`` requests answered with schema-breaking JSON."""
        return self.fault_invalid_output

    @property
    def truncated_output(self) -> float:
        """Share of ``json_schema`` requests answered with JSON cut at ``max_tokens``."""
        return self.fault_truncated_output

    @property
    def fault_rates(self) -> dict[str, float]:
        """Non-zero fault rates by kind."""
        rates = {kind: getattr(self, f"fault_{kind}") for kind in FAULT_KINDS}
        return {kind: rate for kind, rate in rates.items() if rate > 0}

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any] | None) -> SimConfig:
        """Build from ``ModelSpec.options``: field names as keys, or a ``SimConfig``
        under ``"config"`` that the other keys then override. ``invalid_output`` and
        ``truncated_output`` name ``fault_invalid_output``/``fault_truncated_output``."""
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
        for alias in SCHEMA_FAULTS:
            if alias in values:
                if f"fault_{alias}" in values:
                    raise ConfigurationError(
                        f"give {alias!r} or 'fault_{alias}' (the same option), not both"
                    )
                values[f"fault_{alias}"] = values.pop(alias)
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


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))  # type: ignore[arg-type]
    )
