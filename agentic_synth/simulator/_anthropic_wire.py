"""The Anthropic Messages API wire format (``POST /v1/messages``).

Shapes follow the ``anthropic`` SDK's own types (``Message``, ``Raw*Event``,
error bodies), so the official client parses every answer unchanged.
"""

from __future__ import annotations

from json.encoder import encode_basestring as _quote  # C-accelerated
from typing import Any

from .._types import Request
from ._engine import Outcome
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
        return ParsedCall(request, model, bool(payload.get("stream")))

    def _message(self, call: ParsedCall, outcome: Outcome | None, ident: str) -> dict[str, Any]:
        return {
            "id": f"msg_{ident}",
            "type": "message",
            "role": "assistant",
            "model": call.model,
            "content": [] if outcome is None else [{"type": "text", "text": outcome.text}],
            "stop_reason": None if outcome is None else _STOP_REASONS[outcome.finish],
            "stop_sequence": None if outcome is None else outcome.stop_sequence,
            "usage": {
                "input_tokens": 0,
                "output_tokens": 0,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        }

    def body(self, call: ParsedCall, outcome: Outcome, ident: str) -> bytes:
        message = self._message(call, outcome, ident)
        usage = message["usage"]
        usage["input_tokens"] = outcome.input_tokens
        usage["output_tokens"] = outcome.output_tokens
        return dumps(message)

    def stream_head(self, call: ParsedCall, outcome: Outcome, ident: str) -> bytes:
        message = self._message(call, None, ident)
        message["usage"]["input_tokens"] = outcome.input_tokens
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
