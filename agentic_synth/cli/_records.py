"""Output rows: one JSON object per input, with the same keys for every row.

A success and a failure carry the same keys (unused ones are null), so a
results file loads as one table (pandas, DuckDB, datasets) without a schema of
its own. See :data:`ROW_HELP` for the documented schema.
"""

from __future__ import annotations

import json
from typing import Any

from .._types import Completion, Failure, Result
from ._inputs import Input

__all__ = ["RESULT_KEYS", "ROW_HELP", "result_line", "result_row"]

#: Keys every row has, in order; the input's extra fields come between ``prompt`` and ``ok``.
RESULT_KEYS = (
    "index",
    "id",
    "prompt",
    "ok",
    "text",
    "model",
    "finish_reason",
    "input_tokens",
    "output_tokens",
    "cost",
    "latency",
    "attempts",
    "fallbacks",
    "cached",
    "duplicate_of",
    "near_duplicate_of",
    "error_type",
    "message",
    "status",
)
_TAKEN = frozenset(RESULT_KEYS)

ROW_HELP = """\
output: one JSON object per input, every row with the same keys:
  index          0-based position of the input among the inputs ({i} of --prompt;
                 with --input, blank lines are not inputs, so it counts non-blank lines)
  id             the input's "id" field (any JSON value), else null
  prompt         null when the input has an id; else its prompt (text) or messages (list);
                 null for a line that could not be read (its message says FILE:LINE)
  <fields>       the input's other fields (not prompt/messages/id or a generation
                 parameter), as given; one named like a key here is written as
                 input_<name> (input_text, input_ok, ...)
  ok             true: a completion; false: this input failed, the job went on
  text, model, finish_reason (stop|length|tool_use|content_filter|unknown),
  input_tokens, output_tokens, cost (USD; 0 when replayed, null when the model has no
  price), latency (seconds), attempts, fallbacks (models given up on),
  cached (true: replayed from --cache, no call made),
  duplicate_of / near_duplicate_of (index of the earlier input, with --dedup-*)
  error_type, message, status   why it failed (null on success)"""


def _free_key(name: str, row: dict[str, Any]) -> str:
    while name in _TAKEN or name in row:
        name = f"input_{name}"
    return name


def result_row(index: int, source: Input | None, result: Result) -> dict[str, Any]:
    """The output row of one input (``source`` is None if it was not kept)."""
    ident = None if source is None else source.id
    row: dict[str, Any] = {
        "index": index,
        "id": ident,
        "prompt": None if source is None or ident is not None else source.prompt,
    }
    if source is not None and source.extras:
        for name, value in source.extras.items():
            row[_free_key(name, row)] = value
    if isinstance(result, Completion):
        usage = result.usage
        row["ok"] = True
        row["text"] = result.text
        row["model"] = result.model
        row["finish_reason"] = result.finish_reason
        row["input_tokens"] = usage.input_tokens
        row["output_tokens"] = usage.output_tokens
        row["cost"] = None if result.cost is None else round(result.cost, 10)
        row["latency"] = round(result.latency, 6)
        row["attempts"] = result.attempts
        row["fallbacks"] = list(result.fallbacks)
        row["cached"] = result.cached
        row["duplicate_of"] = result.duplicate_of
        row["near_duplicate_of"] = result.near_duplicate_of
        row["error_type"] = row["message"] = row["status"] = None
        return row
    assert isinstance(result, Failure)
    row["ok"] = False
    row["text"] = None
    row["model"] = result.model
    row["finish_reason"] = row["input_tokens"] = row["output_tokens"] = None
    row["cost"] = row["latency"] = None
    row["attempts"] = result.attempts
    row["fallbacks"] = []
    row["cached"] = False
    row["duplicate_of"] = row["near_duplicate_of"] = None
    row["error_type"] = result.error_type
    row["message"] = result.message
    row["status"] = result.status
    return row


_dumps = json.JSONEncoder(ensure_ascii=False).encode


def result_line(index: int, source: Input | None, result: Result) -> bytes:
    """The row as one UTF-8 JSON line. A lone surrogate (from a ``\\ud800`` escape in
    the input or a model's output) is written as its JSON escape, not refused."""
    return (_dumps(result_row(index, source, result)) + "\n").encode("utf-8", "backslashreplace")
