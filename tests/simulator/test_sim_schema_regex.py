"""The pattern generator: strings match (by Python's re and by jsonschema-rs), lengths
hold, draws are seeded, and what the subset cannot express is named."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentic_synth._exceptions import ConfigurationError
from agentic_synth.simulator._regex_gen import matches, string_for_pattern

PATTERNS = [
    "^[A-Z]{3}-[0-9]{4}$",
    "^\\d{3}-\\d{2}-\\d{4}$",
    "^[a-z0-9._%+-]+@[a-z0-9.-]+\\.[a-z]{2,}$",
    "^(\\+\\d{1,3} )?\\(?\\d{3}\\)?[ .-]?\\d{3}[ .-]?\\d{4}$",
    "^(foo|bar)+baz?$",
    "abc",
    "^[^\\s@]+$",
    "^#[0-9a-fA-F]{6}$",
    "^(?:[01]\\d|2[0-3]):[0-5]\\d$",
    "^\\w+$",
    "x{2,}y",
    "^.{5,10}$",
    "^[\\]\\-a]+$",
    "^(?<year>\\d{4})-(?<month>0[1-9]|1[0-2])$",
    "^[A-Z][a-z]*( [A-Z][a-z]*)*$",
    "^\\S+\\s\\S+$",
    "^[^0-9]{3}\\D\\W$",
    "^a*?b+?c??$",
    "^\\x41\\u0042[\\x30-\\x39]$",
    "^\\.\\*\\+\\?\\(\\)\\[\\]\\{\\}\\|\\^\\$\\\\\\/$",
    "^v\\d+\\.\\d+\\.\\d+(-[a-z]+\\.\\d+)?$",
    "\\bword\\b",
    "^[a-z]{2,3}(_[A-Z]{2})?$",
    "^a{0}b$",
    "^$",
    "^(a|)$",
    "a{,3}x",  # not a quantifier: literal braces (ECMA-262 Annex B) ... if it compiles
]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_draws_match(pattern: str) -> None:
    try:
        matches(pattern, "")
    except Exception:
        pytest.skip("jsonschema-rs does not compile this pattern, so no schema can use it")
    try:
        python_re: re.Pattern[str] | None = re.compile(pattern)
    except re.error:
        python_re = None
    seen = set()
    for seed in range(50):
        text = string_for_pattern(pattern, random.Random(seed))
        assert matches(pattern, text), (pattern, text)
        if python_re is not None:  # (?<name>...) is (?P<name>...) in Python
            assert python_re.search(text), (pattern, text)
        seen.add(text)
    fixed = {"abc", "^$", "^(a|)$", "^a{0}b$", "\\bword\\b", "^\\x41\\u0042[\\x30-\\x39]$"}
    fixed.add("^\\.\\*\\+\\?\\(\\)\\[\\]\\{\\}\\|\\^\\$\\\\\\/$")
    if pattern not in fixed:
        assert len(seen) > 1  # draws vary


def test_seeded() -> None:
    pattern = "^[a-z]{3,12}-\\d+$"
    a = [string_for_pattern(pattern, random.Random(s)) for s in range(20)]
    b = [string_for_pattern(pattern, random.Random(s)) for s in range(20)]
    assert a == b


@pytest.mark.parametrize(
    ("pattern", "low", "high"),
    [
        ("^[a-z]+$", 30, 32),
        ("^[a-z]*$", 0, 2),
        ("^[a-z]+( [a-z]+)*$", 50, 60),
        ("^x(ab)*$", 9, 9),
        ("^[A-Z]{2}\\d*$", 2, 2),
    ],
)
def test_lengths(pattern: str, low: int, high: int) -> None:
    for seed in range(30):
        text = string_for_pattern(pattern, random.Random(seed), low, high)
        assert low <= len(text) <= high and matches(pattern, text)


def test_lookaround_falls_back_to_a_constant_that_matches() -> None:
    assert string_for_pattern("^(?=a)a", random.Random(0)) == "a"
    assert string_for_pattern("^(?!x)[a-z]{3}$", random.Random(0)) == "abc"


@pytest.mark.parametrize(
    ("pattern", "needle"),
    [
        ("^(a)\\1$", "backreference"),
        ("^(?<=x)y$", "lookaround"),
        ("^\\p{Greek}$", "Unicode property"),
        ("^\\cJ$", "control escape"),
        ("[", "not a valid ECMA-262 regex"),
    ],
)
def test_unsupported_named(pattern: str, needle: str) -> None:
    with pytest.raises(ConfigurationError, match=needle):
        string_for_pattern(pattern, random.Random(0))


def test_impossible_length_named() -> None:
    with pytest.raises(ConfigurationError, match=r"length 5\.\.6"):
        string_for_pattern("^[a-z]{2}$", random.Random(0), 5, 6)


# --- hypothesis: patterns built from the subset ------------------------------------------

_atom = st.one_of(
    st.sampled_from(["a", "b", "Z", "0", "-", "_", "\\.", "\\d", "\\w", "\\s", "."]),
    st.sampled_from(["[a-c]", "[0-9A-F]", "[^a-z]", "[\\d_]", "[xyz-]"]),
)


def _quantified(atom: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(
        lambda a, q: a + q,
        atom,
        st.sampled_from(["", "", "?", "*", "+", "{2}", "{1,3}", "{2,}", "*?"]),
    )


def _groups(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    seq = st.lists(inner, min_size=1, max_size=4).map("".join)
    group = st.one_of(
        st.lists(seq, min_size=2, max_size=3).map(lambda xs: "(" + "|".join(xs) + ")"),
        seq.map(lambda x: "(?:" + x + ")"),
    )
    return st.one_of(seq, group.flatmap(lambda g: _quantified(st.just(g))))


_patterns = st.recursive(_quantified(_atom), _groups, max_leaves=8)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    body=st.lists(_patterns, min_size=1, max_size=4).map("".join),
    anchored=st.booleans(),
    seed=st.integers(0, 2**32),
)
def test_hypothesis_patterns(body: str, anchored: bool, seed: int) -> None:
    pattern = f"^{body}$" if anchored else body
    text = string_for_pattern(pattern, random.Random(seed))
    assert matches(pattern, text)
    assert re.search(pattern, text)
