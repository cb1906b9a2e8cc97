"""Random JSON values that validate against a JSON Schema.

Covers every keyword the dataset validator (``jsonschema-rs``) checks that a
record schema uses in practice:

- object: ``properties``, ``required``, ``additionalProperties``,
  ``patternProperties``, ``propertyNames``, ``dependentRequired``,
  ``min/maxProperties``, ``unevaluatedProperties: false``;
- array: ``items``, ``prefixItems`` (and the draft 4-7 tuple ``items`` /
  ``additionalItems``), ``min/maxItems``, ``uniqueItems``, ``contains`` with
  ``min/maxContains``;
- string: ``minLength``/``maxLength``, ``pattern`` (through
  :mod:`._regex_gen`), ``format`` (date, date-time, time, duration, email,
  idn-email, hostname, idn-hostname, ipv4, ipv6, uri, uri-reference, iri,
  iri-reference, uri-template, uuid, json-pointer, relative-json-pointer,
  regex), with values that pass format checking;
- numbers: ``minimum``, ``maximum``, ``exclusiveMinimum``/``exclusiveMaximum``
  (both draft styles), ``multipleOf``;
- ``enum``, ``const``, type lists, ``allOf`` (merged), ``anyOf`` (a random
  usable branch), ``oneOf`` (exactly one branch holds), ``not``,
  ``if``/``then``/``else``, ``$ref`` to local ``$defs``/``definitions`` (or any
  local JSON pointer, ``"#"`` included), with siblings.

Where merging is not exact (``oneOf``, ``not``, ``if``, ``allOf``,
``contains``, ``propertyNames``, ``dependentSchemas``), the value drawn is
checked against that subschema by ``jsonschema-rs`` in the root's context and
drawn again on a miss; a subschema no draw satisfies is a
:class:`ConfigurationError` that says so. ``$dynamicRef`` and remote ``$ref``
are not supported. Every choice comes from ``rng``: the same seed gives the
same value.
"""

from __future__ import annotations

import json
import math
import random
import uuid
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, TypeGuard

import jsonschema_rs

from .._exceptions import ConfigurationError
from ._regex_gen import matches, string_for_pattern
from ._text import _ADJECTIVES, _NOUNS, _VERBS

__all__ = ["generate_json"]

#: Past this nesting depth only required members and minimum counts are produced,
#: so recursive schemas terminate.
_MAX_DEPTH = 8
#: Past this depth the schema is taken to have no finite instance.
_GIVE_UP_DEPTH = 4 * _MAX_DEPTH
_NESTING_KEYS = ("properties", "items", "prefixItems", "anyOf", "oneOf", "allOf", "$ref")
_WORDS = (*_NOUNS, *_ADJECTIVES, *_VERBS)
#: Keywords whose draws are checked by a validator (merging them is not exact).
_CHECKED = frozenset(
    {
        "oneOf",
        "not",
        "if",
        "allOf",
        "contains",
        "propertyNames",
        "dependentSchemas",
    }
)
#: Draws per checked subschema before giving up on it.
_ATTEMPTS = 40
_ROOT_URI = "urn:agentic-synth:sim-root"
_MIN_KEYS = ("minimum", "minLength", "minItems", "minProperties", "minContains")
_MAX_KEYS = ("maximum", "maxLength", "maxItems", "maxProperties", "maxContains")


def generate_json(schema: Mapping[str, Any] | bool, rng: random.Random) -> Any:
    """A value valid under ``schema``, drawn from ``rng``."""
    return _Generator(schema, rng).value(schema, 0)


class _Generator:
    __slots__ = ("_checkers", "_registry", "rng", "root")

    def __init__(self, root: Mapping[str, Any] | bool, rng: random.Random) -> None:
        self.root = root
        self.rng = rng
        self._registry: Any = None
        #: id(node) -> (node, validator); the node is held so its id stays unique.
        self._checkers: dict[int, tuple[Any, Any]] = {}

    # -- references and merging --------------------------------------------------------

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
            schema = self.merge([target, siblings]) if siblings else target
            seen += 1
            if seen > 64:
                raise ConfigurationError(f"$ref {ref!r} loops without reaching a schema")
        return schema

    def merge(self, parts: Sequence[Any]) -> dict[str, Any]:
        """One schema that holds where every part holds: exact for the keywords the
        generator reads; otherwise marked ``__lossy`` so the draw is checked against
        the parts (kept under ``__parts``)."""
        merged: dict[str, Any] = {}
        allowed: set[str] | None = None
        lossy = False
        for raw in parts:
            if raw is True:
                continue
            part = {"not": {}} if raw is False else self.resolve(raw)
            if "allOf" in part:
                part = self.merge_all_of(part)
            if "__lossy" in part or not _CHECKED.isdisjoint(part):
                lossy = True
            if part.get("additionalProperties") is False:
                names = set(part.get("properties", {}))
                allowed = names if allowed is None else allowed & names
            for key, value in part.items():
                if key.startswith("__"):
                    if key == "__allowed":
                        allowed = set(value) if allowed is None else allowed & set(value)
                    elif key == "__also":
                        merged["__also"] = [*merged.get("__also", []), *value]
                elif key not in merged:
                    merged[key] = value
                elif key == "properties":
                    props = dict(merged["properties"])
                    for name, sub in value.items():
                        props[name] = {"allOf": [props[name], sub]} if name in props else sub
                    merged["properties"] = props
                elif key == "required":
                    merged["required"] = list(dict.fromkeys([*merged["required"], *value]))
                elif key in _MIN_KEYS:
                    merged[key] = max(merged[key], value)
                elif key in _MAX_KEYS:
                    merged[key] = min(merged[key], value)
                elif key == "exclusiveMinimum" and _is_num(value) and _is_num(merged[key]):
                    merged[key] = max(merged[key], value)
                elif key == "exclusiveMaximum" and _is_num(value) and _is_num(merged[key]):
                    merged[key] = min(merged[key], value)
                elif key == "type":
                    merged["type"] = _intersect_types(merged["type"], value)
                elif key == "enum":
                    merged["enum"] = [
                        v for v in merged["enum"] if any(_json_equal(v, w) for w in value)
                    ]
                elif key == "additionalProperties":
                    if value is False or merged[key] is False:
                        merged[key] = False
                    elif isinstance(value, Mapping) and isinstance(merged[key], Mapping):
                        merged[key] = {"allOf": [merged[key], value]}
                elif key in ("items", "contains", "propertyNames", "not") and isinstance(
                    value, Mapping
                ):
                    merged[key] = {"allOf": [merged[key], value]}
                elif key in ("anyOf", "oneOf"):
                    # both must hold: draw a branch of each, check the draw against both
                    merged["__also"] = [*merged.get("__also", []), {key: value}]
                    lossy = True
                elif not _json_equal(merged[key], value):
                    lossy = True  # e.g. two patterns: the first is drawn, both are checked
        if allowed is not None:
            merged["__allowed"] = allowed
        merged["__parts"] = list(parts)
        if lossy:
            merged["__lossy"] = True
        return merged

    def merge_all_of(self, schema: Mapping[str, Any]) -> dict[str, Any]:
        rest = {k: v for k, v in schema.items() if k != "allOf"}
        return self.merge([rest, *schema["allOf"]])

    # -- checking draws --------------------------------------------------------------

    def accepts(self, node: Mapping[str, Any], value: Any) -> bool:
        """Whether ``value`` is valid under ``node`` (read in the root's context)."""
        entry = self._checkers.get(id(node))
        if entry is None:
            if self._registry is None:
                self._registry = jsonschema_rs.Registry([(_ROOT_URI, _public(self.root))])
            document = _public(node)
            if isinstance(self.root, Mapping) and "$schema" in self.root:
                document = {"$schema": self.root["$schema"], **document}
            try:
                checker = jsonschema_rs.validator_for(
                    _rebase(document),
                    registry=self._registry,
                    validate_formats=True,
                    offline=True,
                )
            except (jsonschema_rs.ValidationError, ValueError) as exc:
                raise ConfigurationError(f"the schema does not compile: {exc}") from None
            entry = (node, checker)
            self._checkers[id(node)] = entry
        return bool(entry[1].is_valid(value))

    # -- values ------------------------------------------------------------------------

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
        node = self.resolve(schema)
        if _CHECKED.isdisjoint(node) and "__lossy" not in node:
            return self.draw(node, depth)
        for _ in range(_ATTEMPTS):
            candidate = self.draw(node, depth)
            if self.accepts(node, candidate):
                return candidate
        raise ConfigurationError(
            f"no value drawn in {_ATTEMPTS} tries satisfies the subschema "
            f"{_brief(node)}; its oneOf/not/if/allOf parts may contradict each other"
        )

    def draw(self, node: Mapping[str, Any], depth: int) -> Any:
        """One value for ``node``, exact for every keyword but those in :data:`_CHECKED`."""
        schema: Mapping[str, Any] = node
        if "allOf" in schema:
            schema = self.merge_all_of(schema)
        if "if" in schema:
            # aim for one branch; the check on the whole node confirms the aim
            rest = {k: v for k, v in schema.items() if k not in ("if", "then", "else")}
            if self.rng.random() < 0.5:
                schema = self.merge([rest, schema["if"], schema.get("then", True)])
            else:
                schema = self.merge([rest, schema.get("else", True)])
        also = schema.get("__also")
        if also:
            chosen = [self.pick_branch(next(iter(entry.values())), depth) for entry in also]
            rest = {k: v for k, v in schema.items() if k != "__also"}
            schema = self.merge([rest, *chosen])
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return self.enum(schema)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                rest = {k: v for k, v in schema.items() if k != key}
                branch = self.pick_branch(schema[key], depth)
                return self.draw(self.merge([rest, branch]) if rest else branch, depth)
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

    def enum(self, schema: Mapping[str, Any]) -> Any:
        options = list(schema["enum"])
        declared = schema.get("type")
        if declared is not None:
            kinds = {declared} if isinstance(declared, str) else set(declared)
            options = [v for v in options if _type_of(v) in kinds or _fits_integer(v, kinds)]
        if not options:
            raise ConfigurationError(f"no enum value of {_brief(schema)} fits its type")
        return options[int(self.rng.random() * len(options))]

    def pick_branch(self, branches: Sequence[Any], depth: int) -> Mapping[str, Any]:
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
        return usable[int(self.rng.random() * len(usable))]

    def pick_type(self, schema: Mapping[str, Any], depth: int) -> str:
        declared = schema.get("type")
        if isinstance(declared, str):
            return declared
        if isinstance(declared, list):
            if not declared:
                raise ConfigurationError(f"{_brief(schema)} allows no type (allOf parts clash)")
            options = [t for t in declared if t != "null"] or ["null"]
            if depth >= _MAX_DEPTH:
                # Prefer leaves (and null) when deep, so recursion stops.
                leaves = [t for t in declared if t not in ("object", "array")]
                options = leaves or options
            return str(options[int(self.rng.random() * len(options))])
        if any(
            k in schema
            for k in ("properties", "required", "additionalProperties", "patternProperties")
        ):
            return "object"
        if any(k in schema for k in ("items", "prefixItems", "minItems", "maxItems", "contains")):
            return "array"
        if any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "multipleOf")):
            return "number"
        return "string"

    # -- objects -----------------------------------------------------------------------

    def schema_for_key(self, schema: Mapping[str, Any], name: str) -> Any:
        """The schema a member named ``name`` must satisfy, or ``None`` if not allowed."""
        allowed = schema.get("__allowed")
        if allowed is not None and name not in allowed:
            return None
        parts: list[Any] = []
        properties = schema.get("properties", {})
        if name in properties:
            parts.append(properties[name])
        for pattern, sub in schema.get("patternProperties", {}).items():
            if matches(pattern, name):
                parts.append(sub)
        if not parts:
            extra = schema.get("additionalProperties", True)
            if extra is False or schema.get("unevaluatedProperties", True) is False:
                return None
            return extra
        return parts[0] if len(parts) == 1 else {"allOf": parts}

    def object(self, schema: Mapping[str, Any], depth: int) -> dict[str, Any]:
        rng = self.rng
        properties: Mapping[str, Any] = schema.get("properties", {})
        required = list(dict.fromkeys(schema.get("required", [])))
        out: dict[str, Any] = {}
        for name in required:
            sub = self.schema_for_key(schema, name)
            if sub is None:
                raise ConfigurationError(
                    f"{name!r} is required but no schema allows it (additionalProperties: false)"
                )
            out[name] = self.value(sub, depth + 1)
        optional: dict[str, Any] = {}
        for name in properties:
            if name not in out:
                sub = self.schema_for_key(schema, name)
                if sub is not None and sub is not False:
                    optional[name] = sub
        deep = depth >= _MAX_DEPTH
        for name, sub in optional.items():
            if not deep and rng.random() < 0.7:
                out[name] = self.value(sub, depth + 1)
        max_props = schema.get("maxProperties")
        if max_props is not None:
            for name in [n for n in out if n not in required][: max(len(out) - max_props, 0)]:
                del out[name]
        min_props = schema.get("minProperties", 0)
        for name, sub in optional.items():
            if len(out) >= min_props:
                break
            if name not in out:
                out[name] = self.value(sub, depth + 1)
        self.extra_members(schema, out, min_props, depth)
        dependent = schema.get("dependentRequired", {})
        for _ in range(len(dependent) + 1):
            missing = [d for key in list(out) for d in dependent.get(key, []) if d not in out]
            if not missing:
                break
            for name in missing:
                sub = self.schema_for_key(schema, name)
                out[name] = self.value(True if sub is None else sub, depth + 1)
        return out

    def extra_members(
        self, schema: Mapping[str, Any], out: dict[str, Any], min_props: int, depth: int
    ) -> None:
        """Members beyond the declared ones, until ``minProperties`` is met."""
        rng = self.rng
        patterns = list(schema.get("patternProperties", {}))
        names_schema = schema.get("propertyNames")
        name_pattern = names_schema.get("pattern") if isinstance(names_schema, Mapping) else None
        n = 0
        while len(out) < min_props and n < 4 * min_props + 8:
            n += 1
            if patterns:
                pattern = patterns[n % len(patterns)]
                key = string_for_pattern(pattern, rng, 1)
            elif isinstance(name_pattern, str):
                key = string_for_pattern(name_pattern, rng, 1)
            else:
                key = f"{rng.choice(_NOUNS)}_{n}"
            if key in out:
                continue
            sub = self.schema_for_key(schema, key)
            if sub is None:
                continue
            out[key] = self.value(sub, depth + 1)

    # -- arrays ------------------------------------------------------------------------

    def array(self, schema: Mapping[str, Any], depth: int) -> list[Any]:
        rng = self.rng
        prefix = list(schema.get("prefixItems", []))
        items = schema.get("items", True)
        if isinstance(items, list):  # draft 4-7 tuple form
            prefix, items = items, schema.get("additionalItems", True)
        if schema.get("unevaluatedItems", True) is False and "items" not in schema:
            items = False
        lo = int(schema.get("minItems", 0))
        hi = schema.get("maxItems")
        hi = int(hi) if hi is not None else max(lo, 3) + (0 if depth >= _MAX_DEPTH else 1)
        if items is False:
            hi = min(hi, len(prefix))
        contains = schema.get("contains")
        need = 0
        if contains is not None:
            need = int(schema.get("minContains", 1))
            lo = max(lo, need)
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
            if need and count - index <= need and index >= len(prefix):
                # the last ``need`` places hold items that match ``contains``
                item_schema = {"allOf": [item_schema, contains]}
            item = self.value(item_schema, depth + 1)
            if unique and any(_json_equal(item, other) for other in out):
                continue
            out.append(item)
        return out

    # -- strings -----------------------------------------------------------------------

    def string(self, schema: Mapping[str, Any], depth: int) -> str:
        rng = self.rng
        lo = int(schema.get("minLength", 0))
        hi_raw = schema.get("maxLength")
        pattern = schema.get("pattern")
        fmt = schema.get("format")
        formatted = None if fmt is None else self.formatted(str(fmt))
        if formatted is not None:
            if pattern is None:
                return formatted
            for _ in range(_ATTEMPTS):
                if matches(pattern, formatted):
                    return formatted
                formatted = self.formatted(str(fmt))
                assert formatted is not None
            raise ConfigurationError(
                f"no {fmt} value drawn in {_ATTEMPTS} tries matches pattern {pattern!r}"
            )
        if isinstance(pattern, str):
            return string_for_pattern(pattern, rng, lo, None if hi_raw is None else int(hi_raw))
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
        if fmt == "uri-template":
            return f"https://example.com/{rng.choice(_NOUNS)}/{{id}}"
        if fmt == "uuid":
            return str(uuid.UUID(int=rng.getrandbits(128), version=4))
        if fmt in ("hostname", "idn-hostname"):
            return f"{rng.choice(_NOUNS)}.example.com"
        if fmt == "ipv4":
            return ".".join(str(rng.randint(1, 254)) for _ in range(4))
        if fmt == "ipv6":
            return "2001:db8:" + ":".join(f"{rng.randint(0, 0xFFFF):x}" for _ in range(6))
        if fmt == "duration":
            return f"P{rng.randint(1, 30)}DT{rng.randint(0, 23)}H{rng.randint(0, 59)}M"
        if fmt == "json-pointer":
            return f"/{rng.choice(_NOUNS)}/{rng.randint(0, 9)}"
        if fmt == "relative-json-pointer":
            return f"{rng.randint(0, 3)}/{rng.choice(_NOUNS)}"
        if fmt == "regex":
            return f"^{rng.choice(_NOUNS)}-[0-9]+$"
        return None

    # -- numbers -----------------------------------------------------------------------

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
        if _is_num(multiple) and multiple > 0:
            step = _integral_step(multiple)
            if step is not None:
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
            decimals = _decimals(multiple)
            # k * m, rounded to m's decimals, must also pass validators that divide
            # in float arithmetic (7.77 / 0.01 is 776.9999999999999 there)
            for _ in range(64):
                if first > last:
                    break
                value = self.rng.randint(first, last) * multiple
                if decimals is not None:
                    value = round(value, decimals)
                if lo <= value <= hi and _multiple_ok(value, multiple):
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


_TYPE_NAMES: dict[type, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    type(None): "null",
    list: "array",
    dict: "object",
}


def _type_of(value: Any) -> str:
    name = _TYPE_NAMES.get(type(value))
    if name is not None:
        return name
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _fits_integer(value: Any, kinds: set[str]) -> bool:
    """Integers are numbers; whole floats are integers."""
    kind = _type_of(value)
    if kind == "integer":
        return "number" in kinds
    return kind == "number" and "integer" in kinds and float(value).is_integer()


def _intersect_types(a: Any, b: Any) -> list[str]:
    left = {a} if isinstance(a, str) else set(a)
    right = {b} if isinstance(b, str) else set(b)
    both = left & right
    if ("integer" in left and "number" in right) or ("number" in left and "integer" in right):
        both.add("integer")
    order = ("object", "array", "string", "integer", "number", "boolean", "null")
    return [t for t in order if t in both]


def _integral_step(multiple: float) -> int | None:
    """The smallest whole multiple of ``multiple`` (``2.5`` -> ``5``), if a small one."""
    for k in range(1, 1001):
        step = multiple * k
        if abs(step - round(step)) < 1e-9 and round(step) > 0:
            return round(step)
    return None


def _decimals(multiple: float) -> int | None:
    """Decimal places of ``multiple`` as written (``0.01`` -> 2), if it has few."""
    text = repr(float(multiple))
    if "e" in text or "E" in text:
        mantissa, _, exponent = text.lower().partition("e")
        places = len(mantissa.partition(".")[2].rstrip("0")) - int(exponent)
        return places if 0 <= places <= 15 else None
    places = len(text.partition(".")[2].rstrip("0"))
    return places if places <= 15 else None


@lru_cache(maxsize=256)
def _multiple_checker(multiple: float) -> Any:
    return jsonschema_rs.validator_for({"multipleOf": multiple})


def _multiple_ok(value: float, multiple: float) -> bool:
    """A multiple both by float division (``jsonschema``) and by ``jsonschema-rs``."""
    quotient = value / multiple
    return quotient == int(quotient) and bool(_multiple_checker(multiple).is_valid(value))


def _public(node: Any) -> Any:
    """The schema ``node`` stands for, without the generator's bookkeeping: a merged
    node is the ``allOf`` of its parts."""
    if isinstance(node, Mapping):
        parts = node.get("__parts")
        if parts is not None:
            return {"allOf": [_public(p) for p in parts]}
        return {k: v for k, v in node.items() if not k.startswith("__")}
    return node


def _rebase(node: Any) -> Any:
    """``node`` with local ``$ref``s pointing into the registered root document."""
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#"):
                out[key] = _ROOT_URI + value
            elif key in ("enum", "const", "default", "examples") or key.startswith("__"):
                if not key.startswith("__"):
                    out[key] = value
            else:
                out[key] = _rebase(value)
        return out
    if isinstance(node, list):
        return [_rebase(v) for v in node]
    return node


def _brief(schema: Any) -> str:
    text = json.dumps(_public(schema), default=str)
    return text if len(text) <= 120 else text[:117] + "..."
