"""Plain data passed along one request's path: the request, its outcome, stream events.

Slotted dataclasses, no validation here: :mod:`agentic_synth._request` builds a
:class:`Request` from user input and validates it once, at the edge.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

__all__ = [
    "FINISH_REASONS",
    "Completion",
    "Failure",
    "Message",
    "ProviderResponse",
    "ProviderStreamEnd",
    "Request",
    "Result",
    "StreamCompleted",
    "StreamEvent",
    "TextDelta",
    "Usage",
    "normalize_finish_reason",
]


class Message(TypedDict):
    role: Literal["user", "assistant"]
    content: str


@dataclass(slots=True)
class Request:
    """A canonical generation request, independent of provider wire formats."""

    messages: list[Message]
    max_tokens: int
    system: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    #: Ask for JSON output matching this JSON Schema (providers enforce it as they can).
    json_schema: Mapping[str, Any] | None = None
    #: Per-request deadline in seconds for one provider call.
    timeout: float | None = None
    #: Extra provider-specific body fields, passed through untouched.
    extra: Mapping[str, Any] | None = None

    def with_timeout(self, timeout: float) -> Request:
        """A copy with another per-call timeout (cheaper than dataclasses.replace)."""
        return Request(
            self.messages,
            self.max_tokens,
            self.system,
            self.temperature,
            self.top_p,
            self.stop,
            self.json_schema,
            timeout,
            self.extra,
        )

    def prompt_text(self) -> str:
        """All message text joined, for token estimates and similarity."""
        if len(self.messages) == 1 and self.system is None:
            return self.messages[0]["content"]
        parts = [self.system] if self.system else []
        parts.extend(m["content"] for m in self.messages)
        return "\n".join(parts)


@dataclass(slots=True)
class Usage:
    """Tokens of one call. ``input_tokens`` is the whole prompt, cached parts
    included; ``cache_creation_input_tokens`` of it were written to the provider's
    prompt cache and ``cache_read_input_tokens`` read from it (billed differently)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    #: Of ``cache_creation_input_tokens``, those written with a 1-hour TTL (priced
    #: higher than 5-minute writes).
    cache_creation_1h_input_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


#: The finish reasons a :class:`Completion` reports, whatever the provider called them.
FINISH_REASONS = ("stop", "length", "tool_use", "content_filter", "unknown")

_FINISH_ALIASES = {
    # Anthropic stop_reason
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_use",
    "refusal": "content_filter",
    # OpenAI-compatible finish_reason
    "stop": "stop",
    "eos": "stop",
    "length": "length",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "content_filter",
}


def normalize_finish_reason(raw: str | None) -> str:
    """A provider's stop/finish reason as one of :data:`FINISH_REASONS`."""
    if not raw:
        return "unknown"
    return _FINISH_ALIASES.get(raw) or _FINISH_ALIASES.get(raw.lower(), "unknown")


@dataclass(slots=True)
class ProviderResponse:
    """What a provider returns for one successful non-streaming call."""

    text: str
    #: The provider's own value (``end_turn``, ``stop``, ...); the engine normalises it.
    finish_reason: str
    usage: Usage
    request_id: str | None = None
    #: Rate-limit related response headers (lower-cased names), for adaptive limits.
    headers: Mapping[str, str] | None = None


@dataclass(slots=True)
class TextDelta:
    """A piece of generated text, in order."""

    text: str
    type: Literal["text"] = "text"


@dataclass(slots=True)
class ProviderStreamEnd:
    """Last event of a provider stream: why it stopped and what it cost."""

    finish_reason: str
    usage: Usage
    request_id: str | None = None
    headers: Mapping[str, str] | None = None
    type: Literal["end"] = "end"


@dataclass(slots=True)
class Completion:
    """One successful generation."""

    text: str
    #: The model that served it, as ``provider:model``.
    model: str
    usage: Usage
    #: Seconds from the request entering the engine to its completion.
    latency: float
    #: Why generation stopped, the same for every provider: ``stop``, ``length``
    #: (max_tokens reached: the text is cut), ``tool_use``, ``content_filter`` or ``unknown``.
    finish_reason: str
    attempts: int = 1
    cached: bool = False
    request_id: str | None = None
    #: Seconds to the first token (streaming only).
    ttft: float | None = None
    #: Models tried and given up on before ``model`` served it.
    fallbacks: tuple[str, ...] = ()
    #: Position in the batch (``None`` for single calls).
    index: int | None = None
    #: Batch index of the near-duplicate input whose result this one reuses.
    duplicate_of: int | None = None
    #: Set when output dedup found this text too close to an earlier one.
    near_duplicate_of: int | None = None
    #: The provider's own finish reason (``end_turn``, ``max_tokens``, ``stop``, ...).
    raw_finish_reason: str | None = None
    #: USD this result cost: usage at the model's prices (batch prices for a batch
    #: result), 0.0 for a cache replay, ``None`` when the model has no known price.
    cost: float | None = None
    #: The provider batch that answered it (``generate_batch(mode="batch")``), else ``None``.
    batch_id: str | None = None
    ok: Literal[True] = field(default=True, repr=False)


@dataclass(slots=True)
class Failure:
    """The record a batch keeps for an input that failed: the batch goes on.

    Not an exception: ``error`` holds the exception that ended the input. (Called
    ``GenerationError`` before 0.2; that name remains as a deprecated alias.)
    """

    error: BaseException
    index: int | None = None
    model: str | None = None
    attempts: int = 0
    ok: Literal[False] = field(default=False, repr=False)

    @property
    def error_type(self) -> str:
        return type(self.error).__name__

    @property
    def message(self) -> str:
        return str(self.error)

    @property
    def status(self) -> int | None:
        return getattr(self.error, "status", None)


Result = Completion | Failure


@dataclass(slots=True)
class StreamCompleted:
    """Final event of :meth:`Synth.generate_stream`: the whole completion with usage."""

    completion: Completion
    type: Literal["completed"] = "completed"


StreamEvent = TextDelta | StreamCompleted


def __getattr__(name: str) -> Any:
    if name == "GenerationError":
        import warnings

        warnings.warn(
            "GenerationError is now called Failure (it is a record, not an exception); "
            "the old name will be removed",
            DeprecationWarning,
            stacklevel=2,
        )
        return Failure
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
