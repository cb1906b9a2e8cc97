"""Random JSON values that validate against a JSON Schema.

Covers what structured-output schemas use in practice: object (properties,
required, additionalProperties, min/maxProperties), array (items, prefixItems,
min/maxItems, uniqueItems), string (enum, const, min/maxLength, formats date,
date-time, time, email, uri, uuid, hostname, ipv4), integer/number (minimum,
maximum, exclusive bounds in both draft styles, multipleOf), boolean, null,
type lists, allOf (merged), anyOf/oneOf (first usable branch) and ``$ref`` to
local ``$defs``/``definitions``. ``pattern`` is not honoured.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard

from .._exceptions import ConfigurationError
from ._text import _ADJECTIVES, _NOUNS, _VERBS

__all__ = ["generate_json"]

#: Past this nesting depth only required members and minimum counts are produced,
#: so recursive schemas terminate.
_MAX_DEPTH = 8
#: Past this depth the schema is taken to have no finite instance.
_GIVE_UP_DEPTH = 4 * _MAX_DEPTH
_NESTING_KEYS = ("properties", "items", "prefixItems", "anyOf", "oneOf", "allOf", "$ref")
_WORDS = (*_NOUNS, *_ADJECTIVES, *_VERBS)
_TYPE_ORDER = ("object", "array", "string", "integer", "number", "boolean", "null")


def generate_json(schema: Mapping[str, Any] | bool, rng: random.Random) -> Any:
    """A value valid under ``schema``, drawn from ``rng``."""
    return _Generator(schema, rng).value(schema, 0)


class _Generator:
    __slots__ = ("rng", "root")

    def __init__(self, root: Mapping[str, Any] | bool, rng: random.Random) -> None:
        self.root = root
        self.rng = rng

    def resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        seen = 0
        while "$ref" in schema:
            ref = schema["$ref"]
            if not isinstance(ref, str) or not ref.startswith("#"):
                raise ConfigurationError(
                    f"only local $ref like '#/$defs/Name' is supported, got {ref!r}"
                )
            target: Any = self.root
            for part in ref[1:].split("/"):
                if not part:
                    continue
                part = part.replace("~1", "/").replace("~0", "~")
                if isinstance(target, Mapping) and part in target:
                    target = target[part]
                elif isinstance(target, Sequence) and part.isdigit():
                    target = target[int(part)]
                else:
                    raise ConfigurationError(f"$ref {ref!r} does not resolve in the schema")
            siblings = {k: v for k, v in schema.items() if k != "$ref"}
            if isinstance(target, bool):
                target = {} if target else {"not": {}}
            schema = {**target, **siblings} if siblings else target
            seen += 1
            if seen > 64:
                raise ConfigurationError(f"$ref {ref!r} loops without reaching a schema")
        return schema

    def value(self, schema: Mapping[str, Any] | bool, depth: int) -> Any:
        if depth > _GIVE_UP_DEPTH:
            raise ConfigurationError(
                "the schema recurses without a way out (every instance would be infinite); "
                "make the recursive member optional or allow empty arrays"
            )
        if schema is True:
            return self.string({}, depth)
        if schema is False or not isinstance(schema, Mapping):
            raise ConfigurationError("no JSON value can satisfy the schema 'false'")
        schema = self.resolve(schema)
        if "allOf" in schema:
            schema = self.merge_all_of(schema)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return self.rng.choice(list(schema["enum"]))
        for key in ("anyOf", "oneOf"):
            if key in schema:
                rest = {k: v for k, v in schema.items() if k != key}
                branch = self.resolve_branch(schema[key], depth)
                return self.value({**rest, **branch} if rest else branch, depth)
        kind = self.pick_type(schema, depth)
        if kind == "object":
            return self.object(schema, depth)
        if kind == "array":
            return self.array(schema, depth)
        if kind == "string":
            return self.string(schema, depth)
        if kind == "integer":
            return self.integer(schema)
        if kind == "number":
            return self.number(schema)
        if kind == "boolean":
            return self.rng.random() < 0.5
        return None

    def resolve_branch(self, branches: Sequence[Any], depth: int) -> Mapping[str, Any]:
        usable = [{} if b is True else self.resolve(b) for b in branches if b is not False]
        if not usable:
            raise ConfigurationError("anyOf/oneOf has no usable branch")
        if depth >= _MAX_DEPTH:
            # Deep in a recursive schema: prefer a branch that cannot recurse further.
            for branch in usable:
                if not any(k in branch for k in _NESTING_KEYS) and branch.get("type") not in (
                    "object",
                    "array",
                ):
                    return branch
        return usable[0]

    def merge_all_of(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            if part is True:
                continue
            part = self.resolve(part)
            if "allOf" in part:
                part = self.merge_all_of(part)
            for key, value in part.items():
                if key == "properties":
                    merged["properties"] = {**merged.get("properties", {}), **value}
                elif key == "required":
                    merged["required"] = [*merged.get("required", []), *value]
                elif key in ("minimum", "minLength", "minItems", "exclusiveMinimum"):
                    merged[key] = max(merged.get(key, value), value)
                elif key in ("maximum", "maxLength", "maxItems", "exclusiveMaximum"):
                    merged[key] = min(merged.get(key, value), value)
                else:
                    merged.setdefault(key, value)
        return merged

    def pick_type(self, schema: Mapping[str, Any], depth: int) -> str:
        declared = schema.get("type")
        if isinstance(declared, str):
            return declared
        if isinstance(declared, list) and declared:
            options = [t for t in declared if t != "null"] or ["null"]
            if depth >= _MAX_DEPTH:
                # Prefer leaves (and null) when deep, so recursion stops.
                leaves = [t for t in declared if t not in ("object", "array")]
                options = leaves or options
            return str(self.rng.choice(options))
        if any(k in schema for k in ("properties", "required", "additionalProperties")):
            return "object"
        if any(k in schema for k in ("items", "prefixItems", "minItems", "maxItems")):
            return "array"
        if any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "multipleOf")):
            return "number"
        return "string"

    def object(self, schema: Mapping[str, Any], depth: int) -> dict[str, Any]:
        rng = self.rng
        properties: Mapping[str, Any] = schema.get("properties", {})
        required = list(dict.fromkeys(schema.get("required", [])))
        out: dict[str, Any] = {}
        for name in required:
            out[name] = self.value(properties.get(name, True), depth + 1)
        optional = [name for name in properties if name not in out]
        deep = depth >= _MAX_DEPTH
        for name in optional:
            if not deep and rng.random() < 0.7:
                out[name] = self.value(properties[name], depth + 1)
        max_props = schema.get("maxProperties")
        if max_props is not None:
            for name in [n for n in out if n not in required][: max(len(out) - max_props, 0)]:
                del out[name]
        min_props = schema.get("minProperties", 0)
        for name in optional:
            if len(out) >= min_props:
                break
            out.setdefault(name, self.value(properties[name], depth + 1))
        extra_schema = schema.get("additionalProperties", True)
        n = 0
        while len(out) < min_props and extra_schema is not False:
            n += 1
            key = f"{rng.choice(_NOUNS)}_{n}"
            if key not in properties:
                out[key] = self.value(extra_schema, depth + 1)
        return out

    def array(self, schema: Mapping[str, Any], depth: int) -> list[Any]:
        rng = self.rng
        prefix = list(schema.get("prefixItems", []))
        items = schema.get("items", True)
        if isinstance(items, list):  # draft 4-7 tuple form
            prefix, items = items, schema.get("additionalItems", True)
        lo = int(schema.get("minItems", 0))
        hi = schema.get("maxItems")
        hi = int(hi) if hi is not None else max(lo, 3) + (0 if depth >= _MAX_DEPTH else 1)
        if items is False:
            hi = min(hi, len(prefix))
        count = lo if depth >= _MAX_DEPTH else rng.randint(lo, max(lo, min(hi, lo + 4)))
        if lo == 0 and count == 0 and depth < _MAX_DEPTH and hi > 0:
            count = 1
        unique = bool(schema.get("uniqueItems"))
        out: list[Any] = []
        attempts = 0
        while len(out) < count and attempts < count * 20 + 20:
            attempts += 1
            index = len(out)
            item_schema = prefix[index] if index < len(prefix) else items
            item = self.value(item_schema, depth + 1)
            if unique and any(_json_equal(item, other) for other in out):
                continue
            out.append(item)
        return out

    def string(self, schema: Mapping[str, Any], depth: int) -> str:
        rng = self.rng
        fmt = schema.get("format")
        if fmt is not None:
            formatted = self.formatted(str(fmt))
            if formatted is not None:
                return formatted
        lo = int(schema.get("minLength", 0))
        hi_raw = schema.get("maxLength")
        hi = int(hi_raw) if hi_raw is not None else max(lo, 40)
        words = [rng.choice(_WORDS) for _ in range(rng.randint(1, 4))]
        text = " ".join(words)
        while len(text) < lo:
            text += " " + rng.choice(_WORDS)
        if len(text) > hi:
            text = text[:hi].rstrip() if hi > 0 else ""
            if len(text) < lo:
                text = text.ljust(lo, "x")
        return text

    def formatted(self, fmt: str) -> str | None:
        rng = self.rng
        if fmt in ("date", "date-time", "time"):
            date = (
                f"{rng.randint(2019, 2026):04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
            )
            time = f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z"
            return {"date": date, "time": time}.get(fmt, f"{date}T{time}")
        if fmt in ("email", "idn-email"):
            return f"{rng.choice(_NOUNS)}.{rng.choice(_NOUNS)}@example.com"
        if fmt in ("uri", "url", "iri", "uri-reference", "iri-reference"):
            return f"https://example.com/{rng.choice(_NOUNS)}/{rng.randint(1, 9999)}"
        if fmt == "uuid":
            return str(uuid.UUID(int=rng.getrandbits(128), version=4))
        if fmt in ("hostname", "idn-hostname"):
            return f"{rng.choice(_NOUNS)}.example.com"
        if fmt == "ipv4":
            return ".".join(str(rng.randint(1, 254)) for _ in range(4))
        return None

    def bounds(self, schema: Mapping[str, Any]) -> tuple[float, float, bool, bool]:
        lo = schema.get("minimum", -math.inf)
        hi = schema.get("maximum", math.inf)
        lo_open = hi_open = False
        exclusive_min = schema.get("exclusiveMinimum")
        exclusive_max = schema.get("exclusiveMaximum")
        if exclusive_min is True:
            lo_open = True
        elif _is_num(exclusive_min) and exclusive_min >= lo:
            lo, lo_open = exclusive_min, True
        if exclusive_max is True:
            hi_open = True
        elif _is_num(exclusive_max) and exclusive_max <= hi:
            hi, hi_open = exclusive_max, True
        return float(lo), float(hi), lo_open, hi_open

    def integer(self, schema: Mapping[str, Any]) -> int:
        lo_f, hi_f, lo_open, hi_open = self.bounds(schema)
        lo = math.floor(lo_f) + 1 if lo_open and lo_f == math.floor(lo_f) else lo_f
        hi = math.ceil(hi_f) - 1 if hi_open and hi_f == math.ceil(hi_f) else hi_f
        lo_i = math.ceil(lo) if math.isfinite(lo) else None
        hi_i = math.floor(hi) if math.isfinite(hi) else None
        if lo_i is None and hi_i is None:
            lo_i, hi_i = 0, 1000
        elif lo_i is None:
            lo_i = hi_i - 1000  # type: ignore[operator]
        elif hi_i is None:
            hi_i = lo_i + 1000
        assert lo_i is not None and hi_i is not None
        multiple = schema.get("multipleOf")
        if _is_num(multiple) and multiple > 0 and float(multiple).is_integer():
            step = int(multiple)
            first = -(-lo_i // step)
            last = hi_i // step
            if first <= last:
                return self.rng.randint(first, last) * step
        return self.rng.randint(lo_i, max(lo_i, hi_i))

    def number(self, schema: Mapping[str, Any]) -> float | int:
        multiple = schema.get("multipleOf")
        if _is_num(multiple) and multiple > 0:
            lo, hi, _, _ = self.bounds(schema)
            lo = lo if math.isfinite(lo) else (hi - 1000 * multiple if math.isfinite(hi) else 0)
            hi = hi if math.isfinite(hi) else lo + 1000 * multiple
            first = math.floor(lo / multiple) + 1
            last = math.ceil(hi / multiple) - 1
            # k * m must divide back to a whole number in float arithmetic too.
            for _ in range(32):
                if first > last:
                    break
                value = self.rng.randint(first, last) * multiple
                quotient = value / multiple
                if quotient == int(quotient) and lo <= value <= hi:
                    return value  # type: ignore[no-any-return]
            return self.integer(schema)
        lo, hi, lo_open, hi_open = self.bounds(schema)
        if not math.isfinite(lo) and not math.isfinite(hi):
            lo, hi = 0.0, 1000.0
        elif not math.isfinite(lo):
            lo = hi - 1000.0
        elif not math.isfinite(hi):
            hi = lo + 1000.0
        value = round(self.rng.uniform(lo, hi), 2)
        if value < lo or value > hi or (lo_open and value <= lo) or (hi_open and value >= hi):
            value = (lo + hi) / 2.0
        return value


def _is_num(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)
