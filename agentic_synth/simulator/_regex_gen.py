"""Random strings that match a JSON Schema ``pattern`` (an ECMA-262 regex).

Covers the regex subset schemas use: literals and escaped metacharacters,
``.``, classes ``[a-z0-9_]`` and negated ``[^...]`` (with escapes inside),
``\\d \\w \\s \\D \\W \\S``, ``\\p{L} \\p{Lu} \\p{Ll} \\p{N} \\p{Nd}`` (ASCII
members only), ``\\n \\t \\r \\f \\v \\0 \\xHH \\uHHHH``, quantifiers ``* + ?
{m} {m,} {m,n}`` (lazy forms too), groups ``(...)``, ``(?:...)``,
``(?<name>...)``, alternation ``|``, anchors ``^ $`` and word boundaries
``\\b \\B`` (taken as empty, then checked).

Every string is checked against the pattern by ``jsonschema-rs`` (ECMA-262
semantics: ``pattern`` is a search, not a full match) before it is returned;
a miss is drawn again. What the subset cannot express — lookarounds
``(?=...)``, backreferences ``\\1``, ``\\k<name>``, other Unicode properties —
falls back to a few constants that still match when one does (``"a"`` for
``(?=a)a``), and otherwise raises :class:`ConfigurationError` naming the
construct. Unbounded quantifiers repeat 0-3 extra times, more (or fewer) when
``minLength``/``maxLength`` ask for it.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jsonschema_rs

from .._exceptions import ConfigurationError

__all__ = ["RegexUnsupported", "matches", "string_for_pattern"]

_DIGITS = string.digits
_UPPER = string.ascii_uppercase
_LOWER = string.ascii_lowercase
_WORD = _UPPER + _LOWER + _DIGITS + "_"
_SPACE = " "
#: What negated classes and ``.`` draw from: printable ASCII (no line breaks).
_UNIVERSE = "".join(chr(c) for c in range(0x20, 0x7F))
#: What ``.`` draws from: letters, digits and a space read like real values.
_DOT = _LOWER + _UPPER + _DIGITS + " "
_ALL_SPACE = " \t\n\r\f\v"
_PROPERTIES = {
    "L": _UPPER + _LOWER,
    "Letter": _UPPER + _LOWER,
    "Lu": _UPPER,
    "Uppercase_Letter": _UPPER,
    "Ll": _LOWER,
    "Lowercase_Letter": _LOWER,
    "N": _DIGITS,
    "Nd": _DIGITS,
    "Number": _DIGITS,
}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v", "0": "\0"}
#: Strings tried when the pattern is outside the subset (or every draw missed).
_FALLBACKS = ("a", "A", "0", "1", "abc", "a1", "A1", "example", "", " ", "_", "-", "a-1", "x@y.z")
_ATTEMPTS = 40


class RegexUnsupported(ValueError):
    """The pattern uses a construct outside the generator's subset."""


# -- the pattern as a tree ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Chars:
    choices: str


@dataclass(frozen=True, slots=True)
class _Seq:
    items: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class _Alt:
    options: tuple[_Seq, ...]


@dataclass(frozen=True, slots=True)
class _Repeat:
    node: Any
    low: int
    high: int | None


_EMPTY = _Seq(())


class _Parser:
    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0

    def fail(self, what: str) -> RegexUnsupported:
        return RegexUnsupported(f"{what} at position {self.i} of pattern {self.p!r}")

    def parse(self) -> _Alt:
        tree = self.alternation()
        if self.i < len(self.p):
            raise self.fail("unbalanced ')'")
        return tree

    def alternation(self) -> _Alt:
        options = [self.sequence()]
        while self.i < len(self.p) and self.p[self.i] == "|":
            self.i += 1
            options.append(self.sequence())
        return _Alt(tuple(options))

    def sequence(self) -> _Seq:
        items: list[Any] = []
        p = self.p
        while self.i < len(p) and p[self.i] not in "|)":
            atom = self.atom()
            if atom is None:
                continue
            items.append(self.quantified(atom))
        return _Seq(tuple(items))

    def quantified(self, atom: Any) -> Any:
        p = self.p
        while self.i < len(p):
            c = p[self.i]
            if c == "*":
                low, high = 0, None
                self.i += 1
            elif c == "+":
                low, high = 1, None
                self.i += 1
            elif c == "?":
                low, high = 0, 1
                self.i += 1
            elif c == "{":
                bounds = self.braces()
                if bounds is None:
                    return atom  # a literal '{' (Annex B): the next atom reads it
                low, high = bounds
            else:
                return atom
            if self.i < len(p) and p[self.i] == "?":
                self.i += 1  # lazy: the same strings
            atom = _Repeat(atom, low, high)
        return atom

    def braces(self) -> tuple[int, int | None] | None:
        p = self.p
        end = p.find("}", self.i)
        if end < 0:
            return None
        body = p[self.i + 1 : end]
        low_text, comma, high_text = body.partition(",")
        if not low_text.isdigit() or (high_text and not high_text.isdigit()):
            return None
        low = int(low_text)
        high = low if not comma else (int(high_text) if high_text else None)
        if high is not None and high < low:
            raise self.fail("quantifier {m,n} with n < m")
        self.i = end + 1
        return low, high

    def atom(self) -> Any:
        p = self.p
        c = p[self.i]
        self.i += 1
        if c in "^$":
            return None  # anchors: the draw is the whole match; checked afterwards
        if c == ".":
            return _Chars(_DOT)
        if c == "[":
            return self.char_class()
        if c == "(":
            return self.group()
        if c == "\\":
            return self.escape(in_class=False)
        if c in "*+?":
            raise self.fail(f"nothing to repeat before {c!r}")
        if c == "{" and self.braces_ahead():
            raise self.fail("nothing to repeat before '{'")
        return _Chars(c)

    def braces_ahead(self) -> bool:
        start = self.i - 1
        self.i = start
        found = self.braces() is not None
        self.i = start + 1
        return found

    def group(self) -> Any:
        p = self.p
        if p.startswith("?", self.i):
            if p.startswith("?:", self.i):
                self.i += 2
            elif p.startswith(("?<=", "?<!"), self.i) or p.startswith(("?=", "?!"), self.i):
                raise self.fail("lookaround")
            elif p.startswith(("?<", "?P<"), self.i):
                end = p.find(">", self.i)
                if end < 0:
                    raise self.fail("unterminated group name")
                self.i = end + 1
            else:
                raise self.fail("inline flags or an unknown group")
        inner = self.alternation()
        if self.i >= len(p) or p[self.i] != ")":
            raise self.fail("missing ')'")
        self.i += 1
        return inner

    def escape(self, *, in_class: bool) -> Any:
        p = self.p
        if self.i >= len(p):
            raise self.fail("a trailing backslash")
        c = p[self.i]
        self.i += 1
        if c == "d":
            return _Chars(_DIGITS)
        if c == "w":
            return _Chars(_WORD)
        if c == "s":
            return _Chars(_SPACE)
        if c in "DWS":
            excluded = {"D": _DIGITS, "W": _WORD, "S": _ALL_SPACE}[c]
            return _Chars("".join(ch for ch in _UNIVERSE if ch not in excluded))
        if c in "bB":
            if in_class and c == "b":
                return _Chars("\b")
            return None  # word boundary: checked afterwards
        if c in _ESCAPES:
            return _Chars(_ESCAPES[c])
        if c == "x" or c == "u":
            width = 2 if c == "x" else 4
            digits = p[self.i : self.i + width]
            if len(digits) == width and all(d in string.hexdigits for d in digits):
                self.i += width
                return _Chars(chr(int(digits, 16)))
            return _Chars(c)
        if c in "pP":
            if c == "P" or not p.startswith("{", self.i):
                raise self.fail("a Unicode property escape other than \\p{L|Lu|Ll|N|Nd}")
            end = p.find("}", self.i)
            name = p[self.i + 1 : end] if end > 0 else ""
            members = _PROPERTIES.get(name.removeprefix("General_Category="))
            if members is None:
                raise self.fail(f"the Unicode property \\p{{{name}}}")
            self.i = end + 1
            return _Chars(members)
        if c.isdigit() or c == "k":
            raise self.fail("a backreference")
        if c == "c":
            raise self.fail("a control escape")
        return _Chars(c)  # an escaped metacharacter or identity escape

    def char_class(self) -> _Chars:
        p = self.p
        negate = p.startswith("^", self.i)
        if negate:
            self.i += 1
        members: list[str] = []
        while True:
            if self.i >= len(p):
                raise self.fail("missing ']'")
            c = p[self.i]
            if c == "]":
                self.i += 1
                break
            start = self.class_atom()
            if (
                isinstance(start, str)
                and p.startswith("-", self.i)
                and self.i + 1 < len(p)
                and p[self.i + 1] != "]"
            ):
                self.i += 1
                end = self.class_atom()
                if not isinstance(end, str):
                    raise self.fail("a range ending in a class escape")
                if ord(end) < ord(start):
                    raise self.fail("a range out of order")
                members.extend(chr(o) for o in range(ord(start), ord(end) + 1))
            elif isinstance(start, str):
                members.append(start)
            else:
                members.extend(start.choices)
        unique = "".join(dict.fromkeys(members))
        if negate:
            unique = "".join(ch for ch in _UNIVERSE if ch not in unique)
            if not unique:
                unique = "é"
        if not unique:
            raise self.fail("an empty class []")
        return _Chars(unique)

    def class_atom(self) -> str | _Chars:
        """One character of a class, or a class escape (``\\d``) as its members."""
        c = self.p[self.i]
        self.i += 1
        if c != "\\":
            return c
        node = self.escape(in_class=True)
        assert isinstance(node, _Chars)
        return node.choices if len(node.choices) == 1 else node


@lru_cache(maxsize=1024)
def _tree(pattern: str) -> _Alt:
    return _Parser(pattern).parse()


@lru_cache(maxsize=1024)
def _checker(pattern: str) -> Any:
    return jsonschema_rs.validator_for({"type": "string", "pattern": pattern})


def matches(pattern: str, text: str) -> bool:
    """Whether ``text`` matches ``pattern`` as JSON Schema means it (an ECMA-262 search)."""
    return bool(_checker(pattern).is_valid(text))


# -- drawing -----------------------------------------------------------------------------


def _draw(node: Any, rng: random.Random, extra: int, fill: bool, out: list[str]) -> None:
    """Append one match of ``node``: unbounded repeats run ``low`` to ``low + extra``
    times; with ``fill`` every repeat takes its most (so length follows ``extra``)."""
    if isinstance(node, _Chars):
        choices = node.choices
        out.append(choices[int(rng.random() * len(choices))])
    elif isinstance(node, _Seq):
        for item in node.items:
            _draw(item, rng, extra, fill, out)
    elif isinstance(node, _Alt):
        options = node.options
        _draw(options[int(rng.random() * len(options))], rng, extra, fill, out)
    else:
        high = node.high if node.high is not None else node.low + extra
        for _ in range(high if fill else rng.randint(node.low, high)):
            _draw(node.node, rng, extra, fill, out)


def string_for_pattern(
    pattern: str, rng: random.Random, min_length: int = 0, max_length: int | None = None
) -> str:
    """A string matching ``pattern`` with ``min_length <= len <= max_length``."""
    try:
        checker = _checker(pattern)
    except (jsonschema_rs.ValidationError, ValueError) as exc:
        raise ConfigurationError(f"pattern {pattern!r} is not a valid ECMA-262 regex") from exc
    high = max_length if max_length is not None else max(min_length, 0) + 10**6

    def fits(text: str) -> bool:
        return min_length <= len(text) <= high and bool(checker.is_valid(text))

    unsupported: RegexUnsupported | None = None
    try:
        tree = _tree(pattern)
    except RegexUnsupported as exc:
        unsupported = exc
    else:
        extra = 3
        for _ in range(_ATTEMPTS):
            out: list[str] = []
            _draw(tree, rng, extra, False, out)
            text = "".join(out)
            if fits(text):
                return text
            if len(text) < min_length:
                extra = extra * 2 + (min_length - len(text))
            elif len(text) > high:
                extra = max(0, extra // 2)
        if min_length or max_length is not None:
            # a narrow length window: every repeat at its most, for each extra in turn
            for extra in range(min_length + 2):
                out = []
                _draw(tree, rng, extra, True, out)
                text = "".join(out)
                if fits(text):
                    return text
                if len(text) > high:
                    break
    for candidate in _FALLBACKS:
        if fits(candidate):
            return candidate
    if min_length > 0:
        for candidate in _FALLBACKS:
            padded = candidate * (min_length // max(len(candidate), 1) + 1)
            if fits(padded[: max(min_length, 1)]):
                return padded[: max(min_length, 1)]
    why = f" ({unsupported})" if unsupported is not None else ""
    bounds = f" of length {min_length}..{max_length}" if min_length or max_length else ""
    raise ConfigurationError(
        f"the simulator cannot make a string{bounds} matching pattern {pattern!r}{why}; "
        "it supports literals, classes, \\d \\w \\s, quantifiers, groups, alternation "
        "and anchors"
    )
