"""What the two wire formats have in common, so the server can drive either one."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Protocol

from .._types import Message, Request
from ._engine import Outcome
from ._prompt_cache import Block, CacheUse

__all__ = ["ParsedCall", "RateWindow", "Wire", "WireError", "content_text", "dumps"]


def dumps(value: Any) -> bytes:
    """Compact JSON, as the real APIs send it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(slots=True)
class WireError(Exception):
    """A request the API would reject, with the error ``kind`` it would name."""

    status: int
    #: ``invalid_request``, ``authentication``, ``no_key``, ``permission``, ``not_found``,
    #: ``model_not_found``, ``quota``, ``rate_limit``, ``overloaded`` or ``api_error``;
    #: each wire spells it its own way.
    kind: str
    message: str
    param: str | None = None


@dataclass(slots=True)
class ParsedCall:
    """A validated API call: the canonical request plus wire-only details."""

    request: Request
    model: str
    stream: bool
    #: OpenAI ``stream_options.include_usage``.
    include_usage: bool = False
    #: The prompt's blocks, for the prompt cache (Anthropic: only when one is marked).
    blocks: tuple[Block, ...] = ()
    #: What the prompt cache did for this call (set by the server).
    cache_use: CacheUse | None = None


def content_text(content: Any, where: str) -> str:
    """Text of a message ``content``: a string or a list of text blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, dict):
                text = block.get("text")
                if isinstance(text, str):
                    parts.append(text)
            else:
                raise WireError(400, "invalid_request", f"{where}: content blocks must be objects")
        return "\n".join(parts)
    raise WireError(400, "invalid_request", f"{where}: content must be a string or a list")


def build_messages(raw: list[tuple[str, str]]) -> list[Message]:
    return [
        Message(role="assistant" if role == "assistant" else "user", content=text)
        for role, text in raw
    ]


class RateWindow:
    """Per-minute usage, for the rate-limit headers both APIs send."""

    __slots__ = ("input_tokens", "output_tokens", "requests", "reset_at", "started")

    def __init__(self) -> None:
        self._start(time.time())

    def _start(self, now: float) -> None:
        self.started = now
        self.requests = self.input_tokens = self.output_tokens = 0
        #: When the window resets, as RFC 3339 (Anthropic's ``*-reset`` headers).
        self.reset_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 60.0))

    def record(self, input_tokens: int, output_tokens: int) -> float:
        """Count one request; return seconds until the window resets."""
        now = time.time()
        if now - self.started >= 60.0:
            self._start(now)
        self.requests += 1
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        return max(self.started + 60.0 - now, 0.0)


class Wire(Protocol):
    """One API dialect: parse calls, render answers, errors and stream events."""

    path: str

    def authorized(self, headers: dict[str, str], api_key: str) -> bool: ...

    def parse(self, payload: Any) -> ParsedCall: ...

    def body(self, call: ParsedCall, outcome: Outcome, ident: str) -> bytes: ...

    def stream_head(self, call: ParsedCall, outcome: Outcome, ident: str) -> bytes: ...

    def stream_delta(self, call: ParsedCall, piece: str, ident: str) -> bytes: ...

    def stream_tail(self, call: ParsedCall, outcome: Outcome, ident: str) -> bytes: ...

    def stream_error(self, kind: str, message: str) -> bytes: ...

    def stream_garbage(self) -> bytes:
        """An event whose JSON is cut short (the malformed-response fault)."""
        ...

    def error_body(self, error: WireError, request_id: str) -> bytes: ...

    def auth_error(self, headers: dict[str, str]) -> WireError:
        """The API's 401 for a missing or wrong key, as it words it."""
        ...

    def fault_error(self, fault: str, model: str) -> WireError:
        """The API's own answer to ``quota``, ``not_found`` and ``forbidden``."""
        ...

    def overloaded_status(self) -> int: ...

    def request_id_header(self) -> str: ...

    def rate_headers(
        self, config_limits: tuple[int, int, int], window: RateWindow, reset_s: float
    ) -> list[tuple[str, str]]: ...
