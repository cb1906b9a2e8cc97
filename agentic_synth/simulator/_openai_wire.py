"""The OpenAI Chat Completions wire format (``POST /v1/chat/completions``)."""

from __future__ import annotations

import json
import time
from json.encoder import encode_basestring as _quote  # C-accelerated
from typing import Any

from .._types import Request
from ._engine import Outcome
from ._wire import ParsedCall, RateWindow, WireError, build_messages, content_text, dumps

__all__ = ["OpenAIWire"]

#: What a chat completion may produce when the caller sets no token limit.
_DEFAULT_MAX_TOKENS = 4096
_FINISH = {"end": "stop", "max_tokens": "length", "stop_sequence": "stop"}
_ERRORS: dict[str, tuple[str, str | None]] = {
    "invalid_request": ("invalid_request_error", None),
    "authentication": ("invalid_request_error", "invalid_api_key"),
    "no_key": ("invalid_request_error", None),
    # OpenAI's safety-system rejection, sent with 403 as a gateway's content block would.
    "permission": ("invalid_request_error", "content_policy_violation"),
    "not_found": ("invalid_request_error", "not_found"),
    "model_not_found": ("invalid_request_error", "model_not_found"),
    "quota": ("insufficient_quota", "insufficient_quota"),
    "rate_limit": ("requests", "rate_limit_exceeded"),
    "overloaded": ("server_error", "overloaded"),
    "api_error": ("server_error", None),
    "too_large": ("invalid_request_error", "request_too_large"),
}


_QUOTA_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, read the docs: "
    "https://platform.openai.com/docs/guides/error-codes/api-errors."
)
_CONTENT_MESSAGE = (
    "Your request was rejected as a result of our safety system. Your prompt may contain "
    "text that is not allowed by our safety system."
)
_NO_KEY_MESSAGE = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field "
    "(with blank username) if you're accessing the API from your browser and are prompted for "
    "a username and password. You can obtain an API key from "
    "https://platform.openai.com/account/api-keys."
)


def _masked(key: str) -> str:
    """A key as OpenAI quotes it back: its first 3 and last 4 characters, if long enough."""
    if len(key) <= 12:
        return "*" * len(key)
    return key[:3] + "*" * (len(key) - 7) + key[-4:]


def _duration(seconds: float) -> str:
    """OpenAI's reset format: ``"1s"``, ``"6m0s"``, ``"20ms"``."""
    if seconds < 1.0:
        return f"{round(seconds * 1000)}ms"
    minutes, secs = divmod(seconds, 60.0)
    return f"{int(minutes)}m{secs:.0f}s" if minutes else f"{secs:.3g}s"


def _schema_of(payload: dict[str, Any]) -> Any:
    fmt = payload.get("response_format")
    if not isinstance(fmt, dict):
        return None
    kind = fmt.get("type")
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict | bool):
            raise WireError(
                400,
                "invalid_request",
                "response_format.json_schema.schema must be an object",
                "response_format",
            )
        return schema
    return None


def _usage(call: ParsedCall, outcome: Outcome) -> dict[str, Any]:
    use = call.cache_use
    return {
        "prompt_tokens": outcome.input_tokens,
        "completion_tokens": outcome.output_tokens,
        "total_tokens": outcome.input_tokens + outcome.output_tokens,
        "prompt_tokens_details": {"cached_tokens": 0 if use is None else use.read},
    }


class OpenAIWire:
    path = "/v1/chat/completions"

    def authorized(self, headers: dict[str, str], api_key: str) -> bool:
        return headers.get("authorization") == f"Bearer {api_key}"

    def parse(self, payload: Any) -> ParsedCall:
        if not isinstance(payload, dict):
            raise WireError(400, "invalid_request", "request body must be a JSON object")
        model = payload.get("model")
        if not isinstance(model, str) or not model:
            raise WireError(400, "invalid_request", "you must provide a model parameter", "model")
        messages = payload.get("messages")
        if not isinstance(messages, list) or not messages:
            raise WireError(
                400, "invalid_request", "'messages' must contain at least one message", "messages"
            )
        system: list[str] = []
        raw: list[tuple[str, str]] = []
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise WireError(
                    400, "invalid_request", f"messages[{i}].role is required", "messages"
                )
            text = content_text(message.get("content") or "", f"messages[{i}]")
            if message["role"] in ("system", "developer"):
                system.append(text)
            else:
                raw.append((message["role"], text))
        max_tokens = payload.get("max_completion_tokens", payload.get("max_tokens"))
        if max_tokens is None:
            max_tokens = _DEFAULT_MAX_TOKENS
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise WireError(
                400, "invalid_request", "max_tokens must be an integer >= 1", "max_tokens"
            )
        stop = payload.get("stop") or ()
        if isinstance(stop, str):
            stop = (stop,)
        if not isinstance(stop, list | tuple) or not all(isinstance(s, str) for s in stop):
            raise WireError(400, "invalid_request", "stop must be a string or a list", "stop")
        temperature = payload.get("temperature")
        top_p = payload.get("top_p")
        options = payload.get("stream_options")
        request = Request(
            messages=build_messages(raw or [("user", "")]),
            max_tokens=max_tokens,
            system="\n".join(system) if system else None,
            temperature=float(temperature) if isinstance(temperature, int | float) else None,
            top_p=float(top_p) if isinstance(top_p, int | float) else None,
            stop=tuple(stop),
            json_schema=_schema_of(payload),
        )
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        blocks = [(text, f"{role[0]}{i}", None) for i, (role, text) in enumerate(raw)]
        if system:
            blocks.insert(0, ("\n".join(system), "s", None))
        return ParsedCall(
            request, model, bool(payload.get("stream")), include_usage, blocks=tuple(blocks)
        )

    def body(self, call: ParsedCall, outcome: Outcome, ident: str) -> bytes:
        return dumps(
            {
                "id": f"chatcmpl-{ident}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": call.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": outcome.text, "refusal": None},
                        "logprobs": None,
                        "finish_reason": _FINISH[outcome.finish],
                    }
                ],
                "usage": _usage(call, outcome),
                "system_fingerprint": "fp_sim",
            }
        )

    def _chunk(self, call: ParsedCall, ident: str, choices: str, usage: str | None = None) -> bytes:
        # Hand-assembled: one json.dumps per delta instead of per chunk.
        tail = f',"usage":{usage}' if usage is not None else ""
        if usage is None and call.include_usage:
            tail = ',"usage":null'
        return (
            f'data: {{"id":"chatcmpl-{ident}","object":"chat.completion.chunk",'
            f'"created":{int(time.time())},"model":{json.dumps(call.model)},'
            f'"system_fingerprint":"fp_sim","choices":{choices}{tail}}}\n\n'
        ).encode()

    def stream_head(self, call: ParsedCall, outcome: Outcome, ident: str) -> bytes:
        return self._chunk(
            call,
            ident,
            '[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},'
            '"logprobs":null,"finish_reason":null}]',
        )

    def stream_delta(self, call: ParsedCall, piece: str, ident: str) -> bytes:
        content = _quote(piece)
        return self._chunk(
            call,
            ident,
            f'[{{"index":0,"delta":{{"content":{content}}},"logprobs":null,"finish_reason":null}}]',
        )

    def stream_tail(self, call: ParsedCall, outcome: Outcome, ident: str) -> bytes:
        finish = _FINISH[outcome.finish]
        out = self._chunk(
            call,
            ident,
            f'[{{"index":0,"delta":{{}},"logprobs":null,"finish_reason":"{finish}"}}]',
        )
        if call.include_usage:
            usage = dumps(_usage(call, outcome)).decode()
            out += self._chunk(call, ident, "[]", usage)
        return out + b"data: [DONE]\n\n"

    def stream_error(self, kind: str, message: str) -> bytes:
        kind_name, code = _ERRORS[kind]
        body = dumps(
            {"error": {"message": message, "type": kind_name, "param": None, "code": code}}
        )
        return b"data: " + body + b"\n\n"

    def stream_garbage(self) -> bytes:
        return b'data: {"id":"chatcmpl-","object":"chat.completion.chunk","choi\n\n'

    def error_body(self, error: WireError, request_id: str) -> bytes:
        kind_name, code = _ERRORS[error.kind]
        return dumps(
            {
                "error": {
                    "message": error.message,
                    "type": kind_name,
                    "param": error.param,
                    "code": code,
                }
            }
        )

    def auth_error(self, headers: dict[str, str]) -> WireError:
        auth = headers.get("authorization", "")
        key = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        if not key:
            return WireError(401, "no_key", _NO_KEY_MESSAGE)
        return WireError(
            401,
            "authentication",
            f"Incorrect API key provided: {_masked(key)}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
        )

    def fault_error(self, fault: str, model: str) -> WireError:
        if fault == "quota":
            return WireError(429, "quota", _QUOTA_MESSAGE)
        if fault == "not_found":
            return WireError(
                404,
                "model_not_found",
                f"The model `{model}` does not exist or you do not have access to it.",
            )
        return WireError(403, "permission", _CONTENT_MESSAGE)

    def overloaded_status(self) -> int:
        return 503

    def request_id_header(self) -> str:
        return "x-request-id"

    def rate_headers(
        self, limits: tuple[int, int, int], window: RateWindow, reset_s: float
    ) -> list[tuple[str, str]]:
        rpm, itpm, otpm = limits
        tokens = itpm + otpm
        used = window.input_tokens + window.output_tokens
        reset = _duration(reset_s)
        return [
            ("x-ratelimit-limit-requests", str(rpm)),
            ("x-ratelimit-limit-tokens", str(tokens)),
            ("x-ratelimit-remaining-requests", str(max(rpm - window.requests, 0))),
            ("x-ratelimit-remaining-tokens", str(max(tokens - used, 0))),
            ("x-ratelimit-reset-requests", reset),
            ("x-ratelimit-reset-tokens", reset),
        ]
