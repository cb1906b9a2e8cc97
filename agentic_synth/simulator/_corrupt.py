"""Schema violations a model really makes, for the ``invalid_output`` fault.

Given a valid value and its schema, :func:`corrupt` makes one mistake (one per
record in a many-record answer) of the kinds models make: a wrong type
(``"42"`` for an integer, a number for a string), a missing required key, an
enum value outside the set, or a string that breaks its ``pattern``. Mistakes
are placed only where the schema is definite (not inside an ``anyOf``/``oneOf``/
``not``/``if`` branch, where another branch could still accept the value), and
the result is checked with ``jsonschema-rs``: it is always invalid. When a
schema leaves no such place (``{}`` accepts anything), :func:`corrupt` returns
``None`` and the caller answers with prose instead of JSON, which no schema
accepts.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

import jsonschema_rs

from ._regex_gen import matches
from ._schema_json import _Generator, _type_of

__all__ = ["corrupt"]

#: What an answer says when the mistake is not JSON at all.
PROSE = "Sure! Here is the data you asked for, with every field filled in as requested."
_Site = Callable[[Any], Any]  # applied to the value's deep copy, returns the new root
_UNDEFINITE = ("anyOf", "oneOf", "not", "if")


def corrupt(value: Any, schema: Mapping[str, Any], rng: random.Random) -> Any | None:
    """``value`` with one realistic violation of ``schema``, or ``None`` if none is sure.

    An answer holding several records (a JSON array, or an object wrapping one) gets
    one mistake in every record, as a model that misreads the schema makes it in
    each: so the share of invalid records is the injected rate whatever ``per_call``.
    """
    sites: list[tuple[str, list[Any], Any]] = []
    _Walk(schema, rng, sites).node(value, schema, [], 0)
    if not sites:
        return None
    checker = _checker(json.dumps(schema, sort_keys=True))
    every = _one_per_record(value, sites, rng)
    if every is not None:
        broken = copy.deepcopy(value)
        for kind, path, replacement in every:
            broken = _apply(broken, path, kind, replacement)
        if not checker.is_valid(broken):
            return broken
    order = list(range(len(sites)))
    rng.shuffle(order)
    for index in order[:8]:
        kind, path, replacement = sites[index]
        broken = _apply(copy.deepcopy(value), path, kind, replacement)
        if not checker.is_valid(broken):
            return broken
    return None


def _one_per_record(value: Any, sites: list[Any], rng: random.Random) -> list[Any] | None:
    """One site inside each record of a many-record answer, if every record has one."""
    if isinstance(value, list):
        depth, records = 1, len(value)
    elif isinstance(value, dict) and len(value) == 1:
        (inner,) = value.values()
        if not isinstance(inner, list):
            return None
        depth, records = 2, len(inner)
    else:
        return None
    if records < 2:
        return None
    by_record: dict[Any, list[Any]] = {}
    for site in sites:
        path = site[1]
        if len(path) >= depth:
            by_record.setdefault(path[depth - 1], []).append(site)
    if len(by_record) != records:
        return None
    return [group[int(rng.random() * len(group))] for group in by_record.values()]


@lru_cache(maxsize=128)
def _checker(schema_text: str) -> Any:
    return jsonschema_rs.validator_for(json.loads(schema_text), offline=True)


def _apply(root: Any, path: list[Any], kind: str, replacement: Any) -> Any:
    if not path:
        return replacement
    parent = root
    for part in path[:-1]:
        parent = parent[part]
    if kind == "missing":
        del parent[path[-1]]
    else:
        parent[path[-1]] = replacement
    return root


class _Walk:
    """Collects ``(kind, path, replacement)`` mistakes along the schema's definite paths."""

    def __init__(self, root: Mapping[str, Any], rng: random.Random, sites: list[Any]) -> None:
        self.gen = _Generator(root, rng)
        self.rng = rng
        self.sites = sites

    def node(self, value: Any, schema: Any, path: list[Any], depth: int) -> None:
        if depth > 64 or not isinstance(schema, Mapping):
            return
        schema = self.gen.resolve(schema)
        if "allOf" in schema:
            schema = self.gen.merge_all_of(schema)
        allowed = _allowed_types(self.gen, schema)
        if allowed is not None:
            wrong = _wrong_type(value, allowed)
            if wrong is not None:
                self.sites.append(("type", path, wrong))
        if "enum" in schema:
            outside = _outside_enum(value, schema["enum"])
            if outside is not None:
                self.sites.append(("enum", path, outside))
        pattern = schema.get("pattern")
        if isinstance(value, str) and isinstance(pattern, str):
            broken = _breaks_pattern(value, pattern)
            if broken is not None:
                self.sites.append(("pattern", path, broken))
        if any(k in schema for k in _UNDEFINITE):
            return  # below a choice, another branch might accept a change
        if isinstance(value, dict):
            for name in schema.get("required", []):
                if name in value:
                    self.sites.append(("missing", [*path, name], None))
            for name, member in value.items():
                sub = self.gen.schema_for_key(schema, name)
                if sub is not None:
                    self.node(member, sub, [*path, name], depth + 1)
        elif isinstance(value, list):
            prefix = schema.get("prefixItems", [])
            items = schema.get("items")
            if isinstance(items, list):
                prefix, items = items, schema.get("additionalItems")
            for i, member in enumerate(value):
                sub = prefix[i] if i < len(prefix) else items
                if sub is not None:
                    self.node(member, sub, [*path, i], depth + 1)


def _allowed_types(gen: _Generator, schema: Mapping[str, Any]) -> set[str] | None:
    """The JSON types ``schema`` allows, or ``None`` if any type might pass."""
    if "const" in schema:
        return {_type_of(schema["const"])}
    if "enum" in schema:
        return {_type_of(v) for v in schema["enum"]}
    declared = schema.get("type")
    if declared is not None:
        return {declared} if isinstance(declared, str) else set(declared)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            union: set[str] = set()
            for branch in schema[key]:
                if not isinstance(branch, Mapping):
                    return None
                branch = gen.resolve(branch)
                if "allOf" in branch:
                    branch = gen.merge_all_of(branch)
                kinds = _allowed_types(gen, branch)
                if kinds is None:
                    return None
                union |= kinds
            return union
    return None


def _wrong_type(value: Any, allowed: set[str]) -> Any | None:
    """A value of a type ``allowed`` excludes, as a model would write it."""
    if "number" in allowed:
        allowed = allowed | {"integer"}
    kind = _type_of(value)
    if kind in ("integer", "number"):
        options: list[Any] = [str(value), [value]]
    elif kind == "string":
        options = [len(value) or 1, [value], None]
    elif kind == "boolean":
        options = ["yes" if value else "no", int(value)]
    elif kind == "null":
        options = ["null", "", 0]
    elif kind == "array":
        options = [", ".join(map(str, value)), value[0] if value else None]
    else:
        options = [json.dumps(value), [value]]
    for option in options:
        option_kind = _type_of(option)
        if option_kind not in allowed and not (option_kind == "integer" and "number" in allowed):
            return option
    return None


def _outside_enum(value: Any, enum: list[Any]) -> Any | None:
    if isinstance(value, str):
        for candidate in (value.upper(), value.capitalize(), f"{value}_other", "other"):
            if candidate not in enum:
                return candidate
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        numbers = [v for v in enum if isinstance(v, int | float) and not isinstance(v, bool)]
        return int(max(numbers, default=0)) + 1
    return None


def _breaks_pattern(value: str, pattern: str) -> str | None:
    for candidate in (value + "!", "!" + value, value.lower(), value.upper(), value[:-1], ""):
        if candidate != value and not matches(pattern, candidate):
            return candidate
    return None
