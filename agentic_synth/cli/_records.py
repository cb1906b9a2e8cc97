"""Reading inputs and writing results as JSON Lines."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import IO, Any

from .._exceptions import ConfigurationError
from .._types import Completion, Failure, Result

__all__ = ["read_inputs", "result_record"]


def read_inputs(stream: IO[str], name: str) -> Iterator[Any]:
    """Yield inputs lazily: a JSON object per line (``prompt`` or ``messages`` plus
    parameter overrides), a JSON string per line, or plain text lines."""
    for lineno, line in enumerate(stream, 1):
        text = line.rstrip("\n")
        if not text.strip():
            continue
        if text.lstrip()[:1] in '{["':
            try:
                item = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigurationError(
                    f"{name}:{lineno}: not valid JSON ({exc.msg}); write one JSON object per line "
                    "or plain text prompts"
                ) from exc
            yield item
        else:
            yield text


def result_record(index: int, result: Result) -> dict[str, Any]:
    """A JSON-ready record: the same keys for every success, and for every error."""
    if isinstance(result, Completion):
        record: dict[str, Any] = {
            "index": index,
            "ok": True,
            "text": result.text,
            "model": result.model,
            "finish_reason": result.finish_reason,
            "input_tokens": result.usage.input_tokens,
            "output_tokens": result.usage.output_tokens,
            "latency": round(result.latency, 6),
            "attempts": result.attempts,
        }
        if result.fallbacks:
            record["fallbacks"] = list(result.fallbacks)
        if result.duplicate_of is not None:
            record["duplicate_of"] = result.duplicate_of
        if result.near_duplicate_of is not None:
            record["near_duplicate_of"] = result.near_duplicate_of
        return record
    assert isinstance(result, Failure)
    return {
        "index": index,
        "ok": False,
        "error_type": result.error_type,
        "message": result.message,
        "status": result.status,
        "model": result.model,
        "attempts": result.attempts,
    }
