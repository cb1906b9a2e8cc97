"""extract_json finds the JSON a model meant inside prose, fences and commentary."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentic_synth.datasets._extract import array_elements, extract_json, loads


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ("  [1, 2]\n", [1, 2]),
        ('Sure! Here it is: {"a": "}{"} Hope that helps {really}.', {"a": "}{"}),
        ('```json\n{"a": [1, 2]}\n```\nNote: {x} is a placeholder.', {"a": [1, 2]}),
        ('```\n{"plain": true}\n```', {"plain": True}),
        ('```python\nprint(1)\n```\n```json\n{"b": 2}\n```', {"b": 2}),
        ('First:\n```json\n{"first": 1}\n```\nSecond:\n```json\n{"second": 2}\n```', {"first": 1}),
        ("prefix {bad} then [1,2,3] end", [1, 2, 3]),
        ('note {x: {"a": 1}}', {"a": 1}),
        ('He said "hi {" and then {"k": 2}', {"k": 2}),
        ('{"escaped": "a \\" } quote"} trailing', {"escaped": 'a " } quote'}),
        ('{"nested": {"deep": [{"x": "]"}]}}', {"nested": {"deep": [{"x": "]"}]}}),
        ('~~~json\n{"tilde": 1}\n~~~', {"tilde": 1}),
        ('```json\n  {"indented": 1}\n  ```', {"indented": 1}),
        ('\ufeff{"bom": 1}', {"bom": 1}),
        ('[1, 2] and {"a": 1}', [1, 2]),
        ("mismatched {] then [3]", [3]),
    ],
)
def test_finds_the_intended_value(text: str, expected: Any) -> None:
    assert extract_json(text) == (expected, None)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("no json here at all", "no JSON object or array"),
        ('{"a": 1', "cut off"),
        ('```json\n{"a":', "cut off"),
        ('```json\n{"a": oops}\n```', "not valid JSON"),
        ('{"a": NaN}', "NaN is not valid JSON"),
        ("{'single': 'quotes'}", "no valid JSON"),
    ],
)
def test_says_why_not(text: str, needle: str) -> None:
    value, error = extract_json(text)
    assert value is None
    assert error is not None and needle in error


def test_not_text() -> None:
    assert extract_json(b"{}")[1] == "the output is not text (got bytes)"  # type: ignore[arg-type]


def test_strict_loads_rejects_constants() -> None:
    with pytest.raises(ValueError, match="Infinity"):
        loads("[Infinity]")


# --- hypothesis: any JSON embedded in prose comes back ------------------------------------

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
_containers = st.one_of(
    st.lists(_json, max_size=4), st.dictionaries(st.text(max_size=8), _json, max_size=4)
)
# Prose before the value holds no bracket (or it would be a candidate of its own);
# neither side holds a fence (a fenced block is preferred over bare JSON).
_before = st.text(st.characters(exclude_characters="{[`~"), max_size=60)
_after = st.text(st.characters(exclude_characters="`~"), max_size=60)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(value=_containers, before=_before, after=_after, indent=st.sampled_from([None, 2]))
def test_any_json_in_prose_round_trips(value: Any, before: str, after: str, indent: Any) -> None:
    text = before + json.dumps(value, indent=indent, ensure_ascii=False) + after
    assert extract_json(text) == (value, None)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(value=_json, before=_after, after=_after, label=st.sampled_from(["json", "", "JSON"]))
def test_any_json_in_a_fence_round_trips(value: Any, before: str, after: str, label: str) -> None:
    text = f"{before}\n```{label}\n{json.dumps(value)}\n```\n{after}"
    assert extract_json(text) == (value, None)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(text=st.text(max_size=200))
def test_never_raises(text: str) -> None:
    value, error = extract_json(text)
    assert (error is None) or value is None


def test_pathological_inputs_finish() -> None:
    """Quadratic scanning would not finish these (no timing asserted: it would hang)."""
    n = 200_000
    assert extract_json("[" * n)[1] is not None
    assert extract_json("{" * n)[1] is not None
    assert extract_json('{"' * n)[1] is not None
    assert extract_json("{]" * n)[1] is not None
    assert extract_json("[" * n + "]" * (n - 1))[1] is not None
    assert extract_json("{x}" * n + '{"ok": 1}') == ({"ok": 1}, None)


# --- arrays cut short -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[{"a": 1}, {"b": 2}, {"c":', ([{"a": 1}, {"b": 2}], False)),
        ('[{"a": 1}, {"b": 2}', ([{"a": 1}, {"b": 2}], False)),
        ('{"records": [{"a": 1}, 12', ([{"a": 1}], False)),
        ('```json\n[{"a": 1}, {"b"', ([{"a": 1}], False)),
        ("Records [see below]: [1, 2, 3", ([1, 2], False)),
        ("Here are [2] records: [1, 2]", ([2], True)),  # the first array is taken
        ("[]", ([], True)),
        ("[", ([], False)),
        ('[{"a": 1}] trailing', ([{"a": 1}], True)),
    ],
)
def test_array_elements(text: str, expected: tuple[list[Any], bool]) -> None:
    assert array_elements(text) == expected


def test_array_elements_none_without_array() -> None:
    assert array_elements('{"a": 1}') is None
