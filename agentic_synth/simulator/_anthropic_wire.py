"""The Anthropic Messages API wire format (``POST /v1/messages``).

Shapes follow the ``anthropic`` SDK's own types (``Message``, ``Raw*Event``,
error bodies), so the official client parses every answer unchanged.
"""

from __future__ import annotations

from json.encoder import encode_basestring as _quote  # C-accelerated
from typing import Any

from .._types import Request
from ._engine import Outcome
from ._prompt_cache import Block
from ._wire import ParsedCall, RateWindow, WireError, build_messages, content_text, dumps

__all__ = ["CREDIT_MESSAGE", "PERMISSION_MESSAGE", "AnthropicWire"]

#: The API's words for an account out of credit (sent as a 400 ``invalid_request_error``).
CREDIT_MESSAGE = (
    "Your credit balance is too low to access the Anthropic API. "
    "Please go to Plans & Billing to upgrade or purchase credits."
)
PERMISSION_MESSAGE = "Your API key does not have permission to use the specified resource."

_STOP_REASONS = {"end": "end_turn", "max_tokens": "max_tokens", "stop_sequence": "stop_sequence"}
_ERROR_TYPES = {
    "invalid_request": "invalid_request_error",
    "authentication": "authentication_error",
    "no_key": "authentication_error",
    "permission": "permission_error",
    "not_found": "not_found_error",
    "model_not_found": "not_found_error",
    "quota": "invalid_request_error",
    "rate_limit": "rate_limit_error",
    "overloaded": "overloaded_error",
    "api_error": "api_error",
    "too_large": "request_too_large",
}
_BLOCK_START = (
    b"event: content_block_start\n"
    b'data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n'
    b'event: ping\ndata: {"type": "ping"}\n\n'
)
_DELTA_PREFIX = (
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":'
)
_BLOCK_STOP = b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
_MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
#: Breakpoints the API accepts per request.
MAX_CACHE_BREAKPOINTS = 4


def _cache_ttl(mark: Any, where: str) -> str:
    """The TTL a ``cache_control`` object asks for, checked as the API checks it."""
    if not isinstance(mark, dict) or mark.get("type") != "ephemeral":
        raise WireError(400, "invalid_request", f"{where}.type: Input should be 'ephemeral'")
    ttl = mark.get("ttl", "5m")
    if ttl not in ("5m", "1h"):
        raise WireError(400, "invalid_request", f"{where}.ttl: Input should be '5m' or '1h'")
    return str(ttl)


def _block(block: Any, tag: str, where: str) -> Block | None:
    if isinstance(block, str):
        return (block, tag, None)
    if not isinstance(block, dict) or not isinstance(block.get("text"), str):
        return None  # images and the like: no text to count
    mark = block.get("cache_control")
    return (
        block["text"],
        tag,
        None if mark is None else _cache_ttl(mark, f"{where}.cache_control"),
    )


def _cache_blocks(payload: dict[str, Any], system: Any, messages: list[Any]) -> tuple[Block, ...]:
    """The prompt's text blocks when any is marked ``cache_control``, else none.

    A top-level ``cache_control`` (automatic caching) marks the last block. More
    than 4 breakpoints, or a 1-hour one after a 5-minute one, is a 400.
    """
    top = payload.get("cache_control")
    if (
        top is None
        and not isinstance(system, list)
        and not any(isinstance(m.get("content"), list) for m in messages)
    ):
        return ()  # plain strings: nothing can be marked
    blocks: list[Block] = []
    if isinstance(system, str):
        if system:
            blocks.append((system, "s", None))
    elif isinstance(system, list):
        for i, item in enumerate(system):
            found = _block(item, "s", f"system.{i}")
            if found is not None:
                blocks.append(found)
    for i, message in enumerate(messages):
        content = message.get("content")
        tag = f"{message['role'][0]}{i}"
        if isinstance(content, str):
            blocks.append((content, tag, None))
            continue
        for j, item in enumerate(content):
            found = _block(item, tag, f"messages.{i}.content.{j}")
            if found is not None:
                blocks.append(found)
    if top is not None and blocks:
        text, tag, ttl = blocks[-1]
        blocks[-1] = (text, tag, ttl or _cache_ttl(top, "cache_control"))
    marked = [block[2] for block in blocks if block[2] is not None]
    if not marked:
        return ()
    if len(marked) > MAX_CACHE_BREAKPOINTS:
        raise WireError(
            400,
            "invalid_request",
            f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be "
            f"provided. Found {len(marked)}.",
        )
    if "5m" in marked and "1h" in marked[marked.index("5m") :]:
        raise WireError(
            400,
            "invalid_request",
            "a cache_control block with ttl='1h' must not come after one with ttl='5m'",
        )
    return tuple(blocks)


def _schema_of(payload: dict[str, Any]) -> Any:
    for key in ("output_config", "output_format"):
        holder = payload.get(key)
        if isinstance(holder, dict):
            fmt = holder.get("format", holder) if key == "output_config" else holder
            if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
                schema = fmt.get("schema")
                if not isinstance(schema, dict | bool):
                    raise WireError(400, "invalid_request", f"{key}: schema must be an object")
                return schema
    return None


def _usage(call: ParsedCall, outcome: Outcome) -> dict[str, Any]:
    """Usage as the API reports it: ``input_tokens`` is what the cache did not cover."""
    use = call.cache_use
    read = written = written_1h = 0
    if use is not None:
        read, written, written_1h = use.read, use.written, use.written_1h
    return {
        "input_tokens": max(outcome.input_tokens - read - written, 0),
        "output_tokens": outcome.output_tokens,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": written - written_1h,
            "ephemeral_1h_input_tokens": written_1h,
        },
    }


class AnthropicWire:
    path = "/v1/messages"

    def authorized(self, headers: dict[str, str], api_key: str) -> bool:
        if headers.get("x-api-key") == api_key:
            return True
        return headers.get("authorization") == f"Bearer {api_key}"

    def parse(self, payload: Any) -> ParsedCall:
        if not isinstance(payload, dict):
            raise WireError(400, "invalid_request", "request body must be a JSON object")
        model = payload.get("model")
        if not isinstance(model, str) or not model:
            raise WireError(400, "invalid_request", "model: Field required")
        max_tokens = payload.get("max_tokens")
        if max_tokens is None:
            raise WireError(400, "invalid_request", "max_tokens: Field required")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise WireError(400, "invalid_request", "max_tokens: Input should be >= 1")
        messages = payload.get("messages")
        if not isinstance(messages, list) or not messages:
            raise WireError(400, "invalid_request", "messages: at least one message is required")
        raw: list[tuple[str, str]] = []
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
                raise WireError(
                    400, "invalid_request", f"messages.{i}.role: must be 'user' or 'assistant'"
                )
            raw.append((message["role"], content_text(message.get("content"), f"messages.{i}")))
        system = payload.get("system")
        system_text = None if system is None else content_text(system, "system")
        stop = payload.get("stop_sequences") or ()
        if not isinstance(stop, list | tuple) or not all(isinstance(s, str) for s in stop):
            raise WireError(400, "invalid_request", "stop_sequences: must be a list of strings")
        temperature = payload.get("temperature")
        top_p = payload.get("top_p")
        request = Request(
            messages=build_messages(raw),
            max_tokens=max_tokens,
            system=system_text,
            temperature=float(temperature) if isinstance(temperature, int | float) else None,
            top_p=float(top_p) if isinstance(top_p, int | float) else None,
            stop=tuple(stop),
            json_schema=_schema_of(payload),
        )
        blocks = _cache_blocks(payload, system, messages)
        return ParsedCall(request, model, bool(payload.get("stream")), blocks=blocks)

    def _message(self, call: ParsedCall, outcome: Outcome | None, ident: str) -> dict[str, Any]:
        return {
            "id": f"msg_{ident}",
            "type": "message",
            "role": "assistant",
            "model": call.model,
            "content": [] if outcome is None else [{"type": "text", "text": outcome.text}],
            "stop_reason": None if outcome is None else _STOP_REASONS[outcome.finish],
            "stop_sequence": None if outcome is None else outcome.stop_sequence,
            "usage": {} if outcome is None else _usage(call, outcome),
        }

    def body(self, call: ParsedCall, outcome: Outcome, ident: str) -> bytes:
        message = self._message(call, outcome, ident)
        message["usage"]["output_tokens"] = outcome.output_tokens
        return dumps(message)

    def stream_head(self, call: ParsedCall, outcome: Outcome, ident: str) -> bytes:
        message = self._message(call, None, ident)
        message["usage"] = _usage(call, outcome)
        message["usage"]["output_tokens"] = 1
        start = dumps({"type": "message_start", "message": message})
        return b"event: message_start\ndata: " + start + b"\n\n" + _BLOCK_START

    def stream_delta(self, call: ParsedCall, piece: str, ident: str) -> bytes:
        return _DELTA_PREFIX + _quote(piece).encode() + b"}}\n\n"

    def stream_tail(self, call: ParsedCall, outcome: Outcome, ident: str) -> bytes:
        delta = dumps(
            {
                "type": "message_delta",
                "delta": {
                    "stop_reason": _STOP_REASONS[outcome.finish],
                    "stop_sequence": outcome.stop_sequence,
                },
                "usage": {"output_tokens": outcome.output_tokens},
            }
        )
        return _BLOCK_STOP + b"event: message_delta\ndata: " + delta + b"\n\n" + _MESSAGE_STOP

    def stream_error(self, kind: str, message: str) -> bytes:
        body = dumps({"type": "error", "error": {"type": _ERROR_TYPES[kind], "message": message}})
        return b"event: error\ndata: " + body + b"\n\n"

    def stream_garbage(self) -> bytes:
        return _DELTA_PREFIX[:-20] + b"\n\n"

    def error_body(self, error: WireError, request_id: str) -> bytes:
        return dumps(
            {
                "type": "error",
                "error": {"type": _ERROR_TYPES[error.kind], "message": error.message},
                "request_id": request_id,
            }
        )

    def error_type(self, error: WireError) -> str:
        """The ``error.type`` this API sends for ``error``."""
        return _ERROR_TYPES[error.kind]

    def auth_error(self, headers: dict[str, str]) -> WireError:
        if not headers.get("x-api-key") and not headers.get("authorization"):
            return WireError(401, "no_key", "x-api-key header is required")
        return WireError(401, "authentication", "invalid x-api-key")

    def fault_error(self, fault: str, model: str) -> WireError:
        if fault == "quota":
            return WireError(400, "quota", CREDIT_MESSAGE)
        if fault == "not_found":
            return WireError(404, "model_not_found", f"model: {model}")
        return WireError(403, "permission", PERMISSION_MESSAGE)

    def overloaded_status(self) -> int:
        return 529

    def request_id_header(self) -> str:
        return "request-id"

    def rate_headers(
        self, limits: tuple[int, int, int], window: RateWindow, reset_s: float
    ) -> list[tuple[str, str]]:
        reset = window.reset_at
        rpm, itpm, otpm = limits
        return [
            ("anthropic-ratelimit-requests-limit", str(rpm)),
            ("anthropic-ratelimit-requests-remaining", str(max(rpm - window.requests, 0))),
            ("anthropic-ratelimit-requests-reset", reset),
            ("anthropic-ratelimit-input-tokens-limit", str(itpm)),
            (
                "anthropic-ratelimit-input-tokens-remaining",
                str(max(itpm - window.input_tokens, 0)),
            ),
            ("anthropic-ratelimit-input-tokens-reset", reset),
            ("anthropic-ratelimit-output-tokens-limit", str(otpm)),
            (
                "anthropic-ratelimit-output-tokens-remaining",
                str(max(otpm - window.output_tokens, 0)),
            ),
            ("anthropic-ratelimit-output-tokens-reset", reset),
            ("anthropic-ratelimit-tokens-limit", str(itpm + otpm)),
            (
                "anthropic-ratelimit-tokens-remaining",
                str(max(itpm + otpm - window.input_tokens - window.output_tokens, 0)),
            ),
            ("anthropic-ratelimit-tokens-reset", reset),
        ]
