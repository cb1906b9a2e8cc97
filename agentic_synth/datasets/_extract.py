"""Find the JSON value a model meant, in text that may wrap it in prose or fences.

Models put JSON in ```json fences, add a sentence before or commentary after,
or emit several blocks. :func:`extract_json` tries, in order: the whole text;
each fenced block (``json``-labelled first, then unlabelled, then the rest);
the first balanced ``{...}``/``[...]`` in the text that parses. Brackets are
matched by one forward scan that knows JSON strings and escapes, so braces
inside string values do not confuse it, and the work is linear in the text
(every span is parsed at most twice; a candidate that never closes is retried
from the next bracket a bounded number of times).

:func:`array_elements` recovers the complete elements of a JSON array that was
cut short (``per_call`` answers stopped at ``max_tokens``).
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["array_elements", "extract_json", "loads"]

_FENCE = re.compile(r"(?:^|\n)[ \t]*(```+|~~~+)[ \t]*([A-Za-z0-9_+.-]*)[^\n]*\n")
_OPEN = {"{": "}", "[": "]"}
#: Candidates left unclosed at the end of the text that are retried from their next bracket.
_UNCLOSED_RETRIES = 4
_DECODER = json.JSONDecoder(parse_constant=lambda name: _reject_constant(name))
_WS = re.compile(r"[ \t\n\r]*")
#: ``{"key": [`` : an object wrapping the array of records.
_WRAPPER = re.compile(r'\{[ \t\n\r]*"(?:[^"\\]|\\.)*"[ \t\n\r]*:[ \t\n\r]*\[')


class _Constant(ValueError):
    """NaN and Infinity are not JSON."""


def _reject_constant(name: str) -> Any:
    raise _Constant(f"{name} is not valid JSON")


def loads(text: str) -> Any:
    """Strict JSON: like ``json.loads`` but NaN/Infinity are errors."""
    return _DECODER.decode(text)


def _try(text: str) -> tuple[bool, Any, str | None]:
    try:
        return True, loads(text), None
    except ValueError as exc:  # JSONDecodeError and _Constant
        return False, None, str(exc)
    except RecursionError:
        return False, None, "the JSON is nested too deeply"


def extract_json(text: str) -> tuple[Any, str | None]:
    """``(value, None)`` for the JSON value ``text`` holds, or ``(None, why not)``."""
    if not isinstance(text, str):
        return None, f"the output is not text (got {type(text).__name__})"
    stripped = text.strip().lstrip("\ufeff")
    if not stripped:
        return None, "the output is empty; reply with the JSON value only"
    if stripped[0] in '{["-0123456789tfn':
        ok, value, _ = _try(stripped)
        if ok:
            return value, None
    fence_error: str | None = None
    if "```" in text or "~~~" in text:
        for body, closed in _fenced_blocks(text):
            inner = body.strip()
            if not inner:
                continue
            ok, value, error = _try(inner)
            if ok:
                return value, None
            found = _first_balanced(inner)
            if found is not None:
                return found, None
            if fence_error is None:
                if not closed:
                    fence_error = "the fenced JSON block is cut off (no closing fence)"
                else:
                    fence_error = f"the fenced block is not valid JSON: {error}"
    found = _first_balanced(text)
    if found is not None:
        return found, None
    if fence_error is not None:
        return None, fence_error
    return None, _why_not(text)


def _fenced_blocks(text: str) -> list[tuple[str, bool]]:
    """Bodies of fenced blocks (``json``-labelled first), with whether each was closed."""
    labelled: list[tuple[int, str, bool]] = []
    pos = 0
    while True:
        match = _FENCE.search(text, pos)
        if match is None:
            break
        fence, label = match.group(1), match.group(2).lower()
        start = match.end()
        close = re.compile(r"\n[ \t]*" + re.escape(fence[0]) + "{" + str(len(fence)) + ",}")
        end_match = close.search(text, start - 1)
        if end_match is None:
            body, closed, pos = text[start:], False, len(text)
        else:
            body, closed, pos = text[start : end_match.start()], True, end_match.end()
        rank = 0 if label in ("json", "jsonc", "json5") else 1 if not label else 2
        labelled.append((rank, body, closed))
    labelled.sort(key=lambda item: item[0])  # stable: document order within a rank
    return [(body, closed) for _, body, closed in labelled]


def _balanced_spans(text: str, start: int) -> tuple[list[tuple[int, int, int]], int | None]:
    """Spans ``(begin, end, depth)`` of balanced brackets at depth 0 and 1 from
    ``start`` on, in closing order, and where an unclosed candidate began (``None``
    if every candidate closed).

    Outside brackets quotes are prose and ignored; inside, JSON strings are skipped
    with their escapes. A closing bracket that does not match abandons the candidate.
    """
    spans: list[tuple[int, int, int]] = []
    stack: list[tuple[str, int]] = []
    i = start
    n = len(text)
    find = text.find
    while i < n:
        if not stack:
            # jump to the next opening bracket
            a, b = find("{", i), find("[", i)
            if a < 0 and b < 0:
                return spans, None
            i = b if a < 0 else a if b < 0 else min(a, b)
            stack.append((_OPEN[text[i]], i))
            i += 1
            continue
        c = text[i]
        if c == '"':
            i += 1
            while i < n:
                c = text[i]
                if c == "\\":
                    i += 2
                    continue
                if c == '"':
                    break
                i += 1
        elif c in _OPEN:
            stack.append((_OPEN[c], i))
        elif c in "}]":
            want, begin = stack.pop()
            if c != want:
                stack.clear()  # not JSON: look for the next candidate after here
            elif len(stack) <= 1:
                spans.append((begin, i + 1, len(stack)))
        i += 1
    return spans, (stack[0][1] if stack else None)


def _first_balanced(text: str) -> Any | None:
    """The first balanced ``{...}``/``[...]`` span (outermost first, then the spans
    directly inside it) that parses, or ``None``."""
    start = 0
    for _ in range(_UNCLOSED_RETRIES + 1):
        spans, unclosed = _balanced_spans(text, start)
        children: list[tuple[int, int, int]] = []
        for span in spans:  # closing order: a span's children come just before it
            begin, end, depth = span
            if depth == 1:
                children.append(span)
                continue
            ok, value, _ = _try(text[begin:end])
            if ok:
                return value
            for c_begin, c_end, _ in children:
                if c_begin > begin:
                    ok, value, _ = _try(text[c_begin:c_end])
                    if ok:
                        return value
            children.clear()
        if unclosed is None:
            return None
        start = unclosed + 1
    return None


def _why_not(text: str) -> str:
    spans, unclosed = _balanced_spans(text, 0)
    tops = [s for s in spans if s[2] == 0]
    if tops:
        begin, end, _ = tops[0]
        _, _, error = _try(text[begin:end])
        return f"the output holds no valid JSON object or array: {error}"
    if unclosed is not None:
        return (
            f"the JSON starting at character {unclosed} is cut off "
            f"(a '{text[unclosed]}' is never closed)"
        )
    return "no JSON object or array found in the output; reply with the JSON value only"


def array_elements(text: str) -> tuple[list[Any], bool] | None:
    """The complete elements of the JSON array that ``text`` starts (or of the array
    inside a one-key wrapper object ``{"records": [...]}``), even when the text stops
    mid-array.

    Returns ``(elements, closed)``: ``closed`` is whether the array's ``]`` was
    reached. An element counts only when complete: a ``,`` or ``]`` follows it, or
    the text ends right after a complete object, array or string (a number cut
    short, ``12`` of ``1234``, is not taken). ``None`` when the JSON in ``text``
    starts with an object that is not such a wrapper, or there is no array.
    """
    n = len(text)
    pos = 0
    for _ in range(8):  # a few brackets in the prose before the real JSON
        a, b = text.find("{", pos), text.find("[", pos)
        if a < 0 and b < 0:
            return None
        at = b if a < 0 else a if b < 0 else min(a, b)
        if text[at] == "{":
            wrapper = _WRAPPER.match(text, at)
            if wrapper is None:
                if _looks_like_object(text, at):
                    return None  # the JSON is an object, not an array of records
                pos = at + 1
                continue
            elements, closed, ok = _scan_array(text, wrapper.end(), n)
        else:
            elements, closed, ok = _scan_array(text, at + 1, n)
        if ok:
            return elements, closed
        pos = at + 1
    return None


def _looks_like_object(text: str, at: int) -> bool:
    """Whether the ``{`` at ``at`` opens a JSON object (``{}`` or ``{"key"``)."""
    j = _WS.match(text, at + 1).end()  # type: ignore[union-attr]
    return j >= len(text) or text[j] in '"}'


def _scan_array(text: str, i: int, n: int) -> tuple[list[Any], bool, bool]:
    """Elements from just after a ``[``; ``ok`` is False if it does not look like JSON."""
    elements: list[Any] = []
    i = _WS.match(text, i).end()  # type: ignore[union-attr]
    if i < n and text[i] == "]":
        return elements, True, True
    while i < n:
        try:
            value, end = _DECODER.raw_decode(text, i)
        except (ValueError, RecursionError):
            return elements, False, bool(elements) or text[i] in '{["-0123456789tfn'
        j = _WS.match(text, end).end()  # type: ignore[union-attr]
        if j >= n:
            # cut right after an element: complete unless a number that may go on
            if not (isinstance(value, int | float) and not isinstance(value, bool)):
                elements.append(value)
            return elements, False, True
        if text[j] == ",":
            elements.append(value)
            i = _WS.match(text, j + 1).end()  # type: ignore[union-attr]
            continue
        if text[j] == "]":
            elements.append(value)
            return elements, True, True
        return elements, False, bool(elements)
    return elements, False, True
