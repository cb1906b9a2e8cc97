"""Whether a JSON Schema fits OpenAI's strict Structured Outputs subset.

``strict: true`` makes the API enforce the schema, but it answers 400 to a
schema outside its subset; ``strict: false`` is accepted for any schema. So the
provider asks for strict only when this check passes, and a schema it cannot
prove eligible goes with ``strict: false`` (followed, not enforced).

The rules, from OpenAI's Structured Outputs guide ("Supported schemas"):

- the root is an object, not an ``anyOf``;
- every object sets ``additionalProperties: false`` and lists all its
  ``properties`` in ``required`` (optional fields are ``["T", "null"]`` unions);
- types: string, number, integer, boolean, object, array, null, plus
  ``enum``, ``const``, ``anyOf`` and ``$ref`` to ``$defs`` (recursion allowed);
- constraints: string ``pattern``, ``format`` (date-time, time, date,
  duration, email, hostname, ipv4, ipv6, uuid); number ``minimum``,
  ``maximum``, ``exclusiveMinimum``, ``exclusiveMaximum``, ``multipleOf``;
  array ``minItems``, ``maxItems``; ``title`` and ``description`` annotations;
- not supported: ``allOf``, ``not``, ``if``/``then``/``else``,
  ``dependentRequired``, ``dependentSchemas``, ``patternProperties``,
  ``oneOf`` and anything else not listed above;
- at most 5,000 object properties in all, 10 levels of nesting and 1,000
  enum values.

Anything else (``default``, ``minLength``, ``$schema``, tuple ``items``, a
remote ``$ref``) makes the schema ineligible: the check is conservative.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["strict_eligible"]

_KEYWORDS = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "enum",
        "const",
        "anyOf",
        "$ref",
        "$defs",
        "definitions",
        "title",
        "description",
        "pattern",
        "format",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minItems",
        "maxItems",
    }
)
_TYPES = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})
_FORMATS = frozenset(
    {"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"}
)
_MAX_PROPERTIES = 5000
_MAX_DEPTH = 10
_MAX_ENUM_VALUES = 1000


class _Ineligible(Exception):
    """The schema is outside the strict subset."""


class _Walk:
    def __init__(self) -> None:
        self.properties = 0
        self.enum_values = 0

    def node(self, schema: Any, depth: int) -> None:
        if not isinstance(schema, Mapping):
            raise _Ineligible
        if not _KEYWORDS.issuperset(schema):
            raise _Ineligible
        kind = schema.get("type")
        kinds = kind if isinstance(kind, list) else [] if kind is None else [kind]
        if not all(isinstance(k, str) and k in _TYPES for k in kinds):
            raise _Ineligible
        fmt = schema.get("format")
        if fmt is not None and fmt not in _FORMATS:
            raise _Ineligible
        ref = schema.get("$ref")
        if ref is not None and not (
            isinstance(ref, str) and (ref == "#" or ref.startswith(("#/$defs/", "#/definitions/")))
        ):
            raise _Ineligible
        for key in ("$defs", "definitions"):
            defs = schema.get(key)
            if defs is not None:
                if not isinstance(defs, Mapping):
                    raise _Ineligible
                for sub in defs.values():
                    self.node(sub, depth)
        enum = schema.get("enum")
        if enum is not None:
            if not isinstance(enum, list):
                raise _Ineligible
            self.enum_values += len(enum)
            if self.enum_values > _MAX_ENUM_VALUES:
                raise _Ineligible
        any_of = schema.get("anyOf")
        if any_of is not None:
            if not isinstance(any_of, list) or not any_of:
                raise _Ineligible
            for sub in any_of:
                self.node(sub, depth)
        if "object" in kinds or "properties" in schema:
            self.object(schema, depth + 1)
        elif "additionalProperties" in schema or "required" in schema:
            raise _Ineligible
        if "items" in schema:
            self.node(schema["items"], depth)

    def object(self, schema: Mapping[str, Any], depth: int) -> None:
        if depth > _MAX_DEPTH or schema.get("additionalProperties") is not False:
            raise _Ineligible
        properties = schema.get("properties", {})
        required = schema.get("required", [])
        if not isinstance(properties, Mapping) or not isinstance(required, list):
            raise _Ineligible
        if len(required) != len(properties) or set(required) != set(properties):
            raise _Ineligible
        self.properties += len(properties)
        if self.properties > _MAX_PROPERTIES:
            raise _Ineligible
        for sub in properties.values():
            self.node(sub, depth)


def strict_eligible(schema: Mapping[str, Any]) -> bool:
    """True when ``schema`` can be sent with ``strict: true`` (see the module doc)."""
    if not isinstance(schema, Mapping) or "anyOf" in schema:
        return False
    kind = schema.get("type")
    if kind != "object":
        return False
    try:
        _Walk().node(schema, 0)
    except (_Ineligible, RecursionError, TypeError):
        return False
    return True
