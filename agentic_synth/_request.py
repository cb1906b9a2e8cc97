"""Build and validate a canonical :class:`Request` from what a user passes in.

Validation happens once, here, at the edge of the engine, so a bad input fails
with an error that names the fix instead of a stack trace from inside a task.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._exceptions import InvalidRequestError
from ._types import Message, Request

__all__ = ["GenerationParams", "Prompt", "build_request", "canonical_bytes"]

#: What one input may be: a prompt string, a list of chat messages, or a mapping
#: with ``prompt`` or ``messages`` plus per-input parameter overrides.
Prompt = str | Sequence[Mapping[str, Any]] | Mapping[str, Any]

_PARAM_NAMES = frozenset(
    {"max_tokens", "system", "temperature", "top_p", "stop", "json_schema", "timeout", "extra"}
)
_ROLES = ("user", "assistant")


@dataclass(frozen=True, slots=True)
class GenerationParams:
    """Parameters shared by every input of a call, validated once per call."""

    max_tokens: int = 1024
    system: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    json_schema: Mapping[str, Any] | None = None
    timeout: float | None = None
    extra: Mapping[str, Any] | None = None

    @classmethod
    def from_kwargs(cls, base: GenerationParams | None = None, **kwargs: Any) -> GenerationParams:
        unknown = set(kwargs) - _PARAM_NAMES
        if unknown:
            raise InvalidRequestError(
                f"unknown generation parameter(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(_PARAM_NAMES))} "
                "(put provider-specific fields in extra={...})"
            )
        values = {} if base is None else {n: getattr(base, n) for n in _PARAM_NAMES}
        values.update({k: v for k, v in kwargs.items() if v is not None})
        if "stop" in kwargs and kwargs["stop"] is not None:
            values["stop"] = _check_stop(kwargs["stop"])
        params = cls(**values)
        params.validate()
        return params

    def validate(self) -> None:
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int):
            raise InvalidRequestError(
                f"max_tokens must be a positive integer, got {self.max_tokens!r}"
            )
        if self.max_tokens <= 0:
            raise InvalidRequestError(
                f"max_tokens must be > 0, got {self.max_tokens}; pass e.g. max_tokens=512"
            )
        t, top_p, timeout = self.temperature, self.top_p, self.timeout
        if t is not None and not (_is_number(t) and 0.0 <= t <= 2.0):
            raise InvalidRequestError(f"temperature must be a number in [0, 2], got {t!r}")
        if top_p is not None and not (_is_number(top_p) and 0.0 < top_p <= 1.0):
            raise InvalidRequestError(f"top_p must be a number in (0, 1], got {top_p!r}")
        if timeout is not None and not (
            _is_number(timeout) and timeout > 0 and math.isfinite(timeout)
        ):
            raise InvalidRequestError(
                f"timeout must be a positive number of seconds, got {timeout!r}"
            )
        if self.system is not None and not isinstance(self.system, str):
            raise InvalidRequestError(f"system must be a string, got {type(self.system).__name__}")
        if self.json_schema is not None and not isinstance(self.json_schema, Mapping):
            raise InvalidRequestError("json_schema must be a JSON Schema given as a dict")
        if self.extra is not None and not isinstance(self.extra, Mapping):
            raise InvalidRequestError("extra must be a dict of provider-specific body fields")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_stop(stop: object) -> tuple[str, ...]:
    if isinstance(stop, str):
        return (stop,)
    if isinstance(stop, Sequence) and all(isinstance(s, str) and s for s in stop):
        return tuple(stop)
    raise InvalidRequestError("stop must be a non-empty string or a list of non-empty strings")


def _messages(value: object) -> tuple[list[Message], str | None]:
    """The conversation and the text of its leading ``system`` messages, if any.

    OpenAI-format conversations start with ``{"role": "system", ...}``: those are
    hoisted into the system prompt (as LiteLLM does); a system message after the
    first user or assistant turn has no equivalent in every API and is refused.
    """
    if isinstance(value, str):
        if not value.strip():
            raise InvalidRequestError("the prompt is empty; pass some text or a list of messages")
        return [{"role": "user", "content": value}], None
    if not isinstance(value, Sequence) or isinstance(value, bytes | bytearray):
        raise InvalidRequestError(
            f"an input is a prompt string, a list of messages or a dict, got {type(value).__name__}"
        )
    if not value:
        raise InvalidRequestError(
            "messages is empty; pass at least one {'role': 'user', 'content': '...'}"
        )
    out: list[Message] = []
    system: list[str] = []
    for i, m in enumerate(value):
        if not isinstance(m, Mapping):
            raise InvalidRequestError(
                f"message {i} must be a dict with 'role' and 'content', got {type(m).__name__}"
            )
        role, content = m.get("role"), m.get("content")
        if role in ("system", "developer"):
            if out:
                raise InvalidRequestError(
                    f"message {i} is a '{role}' message after the conversation started; "
                    "put system text first (or in the system= parameter)"
                )
            if not isinstance(content, str) or not content:
                raise InvalidRequestError(f"message {i} needs non-empty string 'content'")
            system.append(content)
            continue
        if role not in _ROLES:
            raise InvalidRequestError(f"message {i} has role {role!r}; use 'user' or 'assistant'")
        if not isinstance(content, str) or not content:
            raise InvalidRequestError(f"message {i} needs non-empty string 'content'")
        out.append({"role": role, "content": content})
    if not out:
        raise InvalidRequestError(
            "messages has only system text; add a {'role': 'user', 'content': '...'} message"
        )
    if out[0]["role"] != "user":
        raise InvalidRequestError("the first message must have role 'user'")
    return out, "\n\n".join(system) if system else None


def build_request(item: Prompt, params: GenerationParams) -> Request:
    """One input plus the call's parameters -> a validated :class:`Request`.

    An :class:`InvalidRequestError` given as the input stands for an input that
    could not even be read (a malformed line of a file): it becomes that input's
    error record.
    """
    if isinstance(item, str):  # the common case, kept short
        if not item or item.isspace():
            raise InvalidRequestError("the prompt is empty; pass some text or a list of messages")
        messages: list[Message] = [{"role": "user", "content": item}]
        system: str | None = None
    elif isinstance(item, Mapping):
        has_prompt, has_messages = "prompt" in item, "messages" in item
        if has_prompt == has_messages:
            raise InvalidRequestError(
                "a dict input needs exactly one of 'prompt' or 'messages' "
                f"(got keys: {', '.join(sorted(map(str, item))) or 'none'})"
            )
        messages, system = _messages(item["prompt"] if has_prompt else item["messages"])
        overrides = {k: v for k, v in item.items() if k not in ("prompt", "messages")}
        if overrides:
            params = GenerationParams.from_kwargs(params, **overrides)
    elif isinstance(item, InvalidRequestError):
        raise item
    else:
        messages, system = _messages(item)
    if system is not None and params.system:
        system = f"{params.system}\n\n{system}"
    return Request(
        messages=messages,
        max_tokens=params.max_tokens,
        system=params.system if system is None else system,
        temperature=params.temperature,
        top_p=params.top_p,
        stop=params.stop,
        json_schema=params.json_schema,
        timeout=params.timeout,
        extra=params.extra,
    )


def canonical_bytes(request: Request, model: str = "") -> bytes:
    """A stable byte encoding of everything that determines a request's answer.

    Used for fingerprints (cache keys, exact-repeat dedup) and as the simulator's
    seed. Each part is length-prefixed, so no content can forge a boundary; lone
    surrogates are kept (``surrogatepass``) rather than raising. The timeout is
    left out: it changes when an answer arrives, not what it is.
    """
    parts = [
        model,
        str(request.max_tokens),
        request.system or "",
        repr(request.temperature),
        repr(request.top_p),
        "\x1f".join(request.stop),
    ]
    for message in request.messages:
        parts.append(message["role"])
        parts.append(message["content"])
    if request.json_schema is not None:
        parts.append(json.dumps(request.json_schema, sort_keys=True, default=str))
    if request.extra:
        parts.append(json.dumps(request.extra, sort_keys=True, default=str))
    return "".join(f"{len(p)}:{p}" for p in parts).encode("utf-8", "surrogatepass")
