"""One object for a record schema: checked once, then validating every answer.

:class:`SchemaSpec` takes a JSON Schema dict or a pydantic v2 model class. At
construction the schema is checked against its metaschema (Draft 2020-12
unless ``$schema`` names another draft), compiled, and refused when no record
could satisfy it, so a bad schema is an :class:`InvalidRequestError` naming
each problem before anything is sent.

Per-record validation uses ``jsonschema-rs`` with format checking on; pydantic
models validate with the model itself (their validators and coercions are the
truth for them). The choice is measured by ``benchmarks/bench_validators.py``
(one realistic order record: nested objects, an array of lines, ``$ref``,
enums, a pattern, uuid/date-time/email/uri/ipv4 formats; 2 cores, CPython
3.11; baseline ``json.loads`` of the same record 3.6 us):

=================  ==========  ==============  ===============  ============
validator          valid (us)  4 errors (us)   errors reported  tricky cases
=================  ==========  ==============  ===============  ============
jsonschema-rs      3.7         9.8             all 4            27/27
fastjsonschema     15.7        2.5             first only       22/27
jsonschema         192         207             all 4            25/27
=================  ==========  ==============  ===============  ============

``jsonschema-rs`` costs about what parsing the JSON costs, a quarter of the
engine's ~15 us per request, where ``jsonschema`` would cost 13 times the
engine (the whole :meth:`SchemaSpec.parse` of a bare JSON answer, extraction,
parse and validation, measured 12 us on a loaded machine in a later run);
``fastjsonschema`` is drafts 4-7 only (it ignores ``prefixItems``,
``unevaluatedProperties`` and ``dependentRequired``), stops at the first
violation (a correction turn should list them all), and like ``jsonschema``
runs ``pattern`` with Python's ``re`` (no ``\\p{L}``; ``\\d`` matches Arabic
digits where ECMA-262 says ``[0-9]``). The metaschema check runs once per
schema and uses ``jsonschema``, whose errors carry the context (the failed
``anyOf`` branches) that a precise message needs; ``jsonschema-rs`` then
compiles the schema, which catches patterns that are not ECMA-262 regexes and
``$ref`` that do not resolve (offline: remote references are refused), and its
``canonicalize`` proves a schema unsatisfiable (``false``, ``{"not": {}}``,
``minLength`` above ``maxLength``, a required property that can hold nothing).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jsonschema
import jsonschema_rs

from .._exceptions import InvalidRequestError
from .._types import normalize_finish_reason
from ..providers._openai_strict import strict_eligible
from ._extract import array_elements, extract_json
from ._pointer import MISSING, follow_pointer

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = ["SchemaSpec", "Verdict"]

#: Violations listed in one error message; the rest are counted.
MAX_ERROR_LINES = 20
#: Characters of one violation's text (messages quote the offending value).
_LINE_CHARS = 240

_D2020 = "https://json-schema.org/draft/2020-12/schema"
_DRAFTS: dict[str, tuple[type[Any], str]] = {
    "json-schema.org/draft/2020-12/schema": (jsonschema.Draft202012Validator, "2020-12"),
    "json-schema.org/draft/2019-09/schema": (jsonschema.Draft201909Validator, "2019-09"),
    "json-schema.org/draft-07/schema": (jsonschema.Draft7Validator, "draft-07"),
    "json-schema.org/draft-06/schema": (jsonschema.Draft6Validator, "draft-06"),
    "json-schema.org/draft-04/schema": (jsonschema.Draft4Validator, "draft-04"),
}
_TYPES = "array, boolean, integer, null, number, object, string"
#: How to fix a keyword whose value the metaschema refused, by keyword.
_FIXES: dict[str, str] = {
    "type": f"use one of {_TYPES}, or a list of them",
    "properties": "map each property name to a schema (an object, or true/false)",
    "required": "use a list of property-name strings",
    "enum": "use a list of the allowed values",
    "items": "use a schema (an object, or true/false); for a tuple use prefixItems",
    "prefixItems": "use a non-empty list of schemas",
    "additionalProperties": "use a schema, or true/false",
    "pattern": "use an ECMA-262 regular expression string",
    "format": "use a format name string such as 'date-time' or 'email'",
    "$ref": "use a URI reference string such as '#/$defs/Name'",
    "$defs": "map each definition name to a schema",
    "definitions": "map each definition name to a schema",
    "anyOf": "use a non-empty list of schemas",
    "oneOf": "use a non-empty list of schemas",
    "allOf": "use a non-empty list of schemas",
    "not": "use a schema",
    "multipleOf": "use a number greater than 0",
    "minimum": "use a number",
    "maximum": "use a number",
    "exclusiveMinimum": "use a number (2020-12) or true/false (draft-04)",
    "exclusiveMaximum": "use a number (2020-12) or true/false (draft-04)",
    "uniqueItems": "use true or false",
    "$schema": f"use a metaschema URI such as '{_D2020}'",
}
_COUNTS = (
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "minContains",
    "maxContains",
)
_FIXES.update(dict.fromkeys(_COUNTS, "use an integer >= 0"))
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of validating one answer (or one element of an array answer).

    ``record`` is the validated value (a dict, or the model instance for a pydantic
    schema) and ``error`` is ``None``; or ``record`` is ``None`` and ``error`` says
    every violation with its JSON path, in words a person and a model can act on.
    """

    record: Any
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


class SchemaSpec:
    """A record schema, checked and compiled once (see the module doc).

    Build with :meth:`of`. ``json_schema`` is a private copy: changing the dict
    given to :meth:`of` afterwards changes nothing here.
    """

    __slots__ = (
        "_validator",
        "columns",
        "draft",
        "json_schema",
        "model",
        "strict_eligible",
        "title",
    )

    json_schema: dict[str, Any]
    model: type[BaseModel] | None
    title: str | None
    #: Top-level property names in schema order (a sink's column layout).
    columns: tuple[str, ...]
    #: Whether OpenAI's strict structured-output mode accepts the schema.
    strict_eligible: bool
    #: The draft the schema is read as (``"2020-12"``, ``"draft-07"``, ...).
    draft: str

    def __init__(self, json_schema: dict[str, Any], model: type[BaseModel] | None = None) -> None:
        """Use :meth:`of`; this trusts ``json_schema`` to be a private copy."""
        self.json_schema = json_schema
        self.model = model
        self.draft = _check_metaschema(json_schema)
        self._validator = _compile(json_schema)
        _check_satisfiable(json_schema)
        title = json_schema.get("title")
        self.title = (
            title if isinstance(title, str) else (model.__name__ if model is not None else None)
        )
        self.columns = tuple(_columns(json_schema))
        self.strict_eligible = strict_eligible(json_schema)

    @classmethod
    def of(cls, schema: Any) -> SchemaSpec:
        """A spec for ``schema``: a JSON Schema dict, a pydantic v2 ``BaseModel``
        subclass, or a :class:`SchemaSpec` (returned as it is)."""
        if isinstance(schema, SchemaSpec):
            return schema
        if isinstance(schema, type):
            model = _as_model(schema)
            return cls(_private_copy(model.model_json_schema()), model)
        if isinstance(schema, Mapping):
            return cls(_private_copy(schema))
        if isinstance(schema, bool):
            raise InvalidRequestError(
                f"the schema is {str(schema).lower()}: a record schema must be an object "
                "describing the record, e.g. {'type': 'object', 'properties': {...}}"
                + ("; false accepts no record at all" if schema is False else "")
            )
        raise InvalidRequestError(
            f"schema must be a JSON Schema dict or a pydantic BaseModel subclass, "
            f"got {type(schema).__name__}"
        )

    def __repr__(self) -> str:
        kind = f"model={self.model.__name__}" if self.model is not None else f"draft={self.draft}"
        return f"SchemaSpec(title={self.title!r}, {kind}, columns={list(self.columns)})"

    # -- validation ------------------------------------------------------------------

    def validate(self, value: Any) -> Verdict:
        """Validate one decoded record."""
        if self.model is not None:
            return _validate_model(self.model, value)
        validator = self._validator
        try:
            if validator.is_valid(value):
                return Verdict(value, None)
            return Verdict(None, _message(_violations(validator.iter_errors(value))))
        except (ValueError, TypeError, OverflowError) as exc:
            return Verdict(None, f"the value is not JSON data: {exc}")

    def parse(self, text: str, *, finish_reason: str | None = None) -> Verdict:
        """Extract the JSON value from a model's ``text``, parse it and validate it.

        An answer cut at ``max_tokens`` (``finish_reason`` ``"length"`` or a
        provider's spelling of it) is never valid, even when its JSON parses.
        """
        if _was_cut(finish_reason):
            return Verdict(None, _CUT)
        value, error = extract_json(text)
        if error is not None:
            return Verdict(None, f"the output is not valid JSON: {error}")
        return self.validate(value)

    def parse_many(self, text: str, k: int, *, finish_reason: str | None = None) -> list[Verdict]:
        """``k`` verdicts for an answer meant to hold ``k`` records.

        The answer is a JSON array of records, or an object whose one property is
        that array; each element is validated on its own. Missing elements (fewer
        than ``k``) are error verdicts, and elements past ``k`` are ignored. An
        answer cut at ``max_tokens`` still yields the elements completed before
        the cut; the cut one and those after it are errors.
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InvalidRequestError(f"k must be an integer >= 1, got {k!r}")
        cut = _was_cut(finish_reason)
        elements, closed, problem = self._elements(text)
        if elements is None:
            reason = _CUT if cut else f"the output is not a JSON array of records: {problem}"
            return [Verdict(None, reason)] * k
        verdicts = [self.validate(element) for element in elements[:k]]
        got = len(verdicts)
        if got < k:
            if cut or not closed:
                missing = (
                    f"the output was cut off at max_tokens after {got} complete record(s) of "
                    f"{k}; this record is missing"
                )
            else:
                missing = f"the output held {got} record(s) of the {k} asked for"
            verdicts.extend([Verdict(None, missing)] * (k - got))
        return verdicts

    def _elements(self, text: str) -> tuple[list[Any] | None, bool, str | None]:
        """The answer's records, whether its array was closed, and why there are none."""
        value, error = extract_json(text)
        if error is None:
            if isinstance(value, list):
                return value, True, None
            inner = self._wrapped(value)
            if inner is not None:
                return inner, True, None
        # an array cut short: extract_json can only see an element inside it
        recovered = array_elements(text)
        if recovered is not None and (error is not None or not recovered[1]):
            return recovered[0], recovered[1], None
        if error is None:
            if isinstance(value, dict):
                return [value], True, None  # one record where an array was asked for
            return None, True, f"got {_json_type(value)}"
        return None, False, error

    def _wrapped(self, value: Any) -> list[Any] | None:
        """The array of ``{"records": [...]}``, unless the object is itself a record."""
        if isinstance(value, dict) and len(value) == 1:
            (inner,) = value.values()
            if isinstance(inner, list):
                try:
                    if self._validator.is_valid(value):
                        return None
                except (ValueError, TypeError, OverflowError):
                    pass
                return inner
        return None

    # -- schemas for requests ----------------------------------------------------------

    def array_schema(self, k: int, *, key: str | None = None) -> dict[str, Any]:
        """The schema of an answer holding ``k`` records: ``{"type": "array", "items":
        <record>, "minItems": k, "maxItems": k}``, or with ``key`` an object whose one
        required property is that array (OpenAI strict mode wants an object root).

        The record's ``$defs``/``definitions`` move to the new root, so its
        ``"#/$defs/..."`` references still resolve; other local references are
        re-pointed into the record's new place.
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InvalidRequestError(f"k must be an integer >= 1, got {k!r}")
        record = dict(self.json_schema)
        hoisted: dict[str, Any] = {
            name: record.pop(name) for name in ("$defs", "definitions") if name in record
        }
        dialect = record.pop("$schema", None)
        where = "#/items" if key is None else f"#/properties/{_escape(key)}/items"
        record = _repoint(record, where)
        hoisted = {name: _repoint(defs, where) for name, defs in hoisted.items()}
        array: dict[str, Any] = {"type": "array", "items": record, "minItems": k, "maxItems": k}
        root: dict[str, Any]
        if key is None:
            root = array
        else:
            root = {
                "type": "object",
                "properties": {key: array},
                "required": [key],
                "additionalProperties": False,
            }
        front: dict[str, Any] = {} if dialect is None else {"$schema": dialect}
        return {**front, **root, **hoisted}


_CUT = (
    "the output was cut off at max_tokens (finish_reason 'length'), so it is incomplete "
    "and not accepted; keep the values shorter so the whole JSON fits"
)


def _was_cut(finish_reason: str | None) -> bool:
    return finish_reason is not None and normalize_finish_reason(finish_reason) == "length"


# -- construction ---------------------------------------------------------------------------


def _as_model(cls: type[Any]) -> type[BaseModel]:
    try:
        from pydantic import BaseModel
    except ImportError:  # pragma: no cover - pydantic is installed in every test env
        raise InvalidRequestError(
            f"{cls.__name__} is a class, and a class schema must be a pydantic BaseModel "
            "subclass; pydantic is not installed (pip install pydantic)"
        ) from None
    if not issubclass(cls, BaseModel):
        raise InvalidRequestError(
            f"{cls.__name__} is not a pydantic BaseModel subclass; pass a model class "
            "or a JSON Schema dict"
        )
    return cls


def _private_copy(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy through JSON: the schema must be JSON, and is ours from now on."""
    try:
        copied = json.loads(json.dumps(schema, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InvalidRequestError(f"the schema is not JSON data: {exc}") from None
    assert isinstance(copied, dict)
    return copied


def _check_metaschema(schema: dict[str, Any]) -> str:
    """The draft name; raises naming every problem the metaschema finds."""
    dialect = schema.get("$schema", _D2020)
    if not isinstance(dialect, str):
        raise InvalidRequestError(
            f"invalid JSON Schema: #/$schema: {dialect!r} is not a string; fix: {_FIXES['$schema']}"
        )
    known = _DRAFTS.get(dialect.split("://", 1)[-1].rstrip("#").rstrip("/"))
    if known is None:
        raise InvalidRequestError(
            f"invalid JSON Schema: #/$schema: unknown metaschema {dialect!r}; fix: use one of "
            + ", ".join(f"'https://{uri}'" for uri in _DRAFTS)
        )
    cls, draft = known
    problems: list[str] = []
    seen: set[str] = set()
    errors = cls(cls.META_SCHEMA).iter_errors(schema)
    for error in sorted(errors, key=lambda e: [str(p) for p in e.absolute_path]):
        line = _metaschema_problem(error)
        if line not in seen:
            seen.add(line)
            problems.append(line)
    if problems:
        raise InvalidRequestError(_schema_message(f"invalid JSON Schema ({draft})", problems))
    return draft


def _metaschema_problem(error: jsonschema.ValidationError) -> str:
    path = list(error.absolute_path)
    pointer = "#" + "".join("/" + _escape(str(p)) for p in path)
    keyword = str(path[-1]) if path else ""
    # a keyword's value is checked against the metaschema of that keyword; but a
    # path inside properties/$defs names a property or definition, not a keyword
    parent = str(path[-2]) if len(path) >= 2 else ""
    if parent in ("properties", "$defs", "definitions", "patternProperties", "dependentSchemas"):
        keyword = ""
    message = error.message
    if error.validator in ("anyOf", "oneOf") and error.context:
        best = jsonschema.exceptions.best_match(error.context)
        if best is not None:
            message = best.message
    fix = _FIXES.get(keyword)
    if fix is None:
        fix = "use a schema (an object, or true/false)" if not keyword else "see the keyword's spec"
    return _clip(f"{pointer}: {message}; fix: {fix}")


def _compile(schema: dict[str, Any]) -> Any:
    try:
        return jsonschema_rs.validator_for(schema, validate_formats=True, offline=True)
    except jsonschema_rs.ValidationError as exc:
        pointer = "#" + "".join("/" + _escape(str(p)) for p in exc.instance_path)
        first = str(exc).splitlines()[0] if str(exc) else exc.message
        if "retriev" in first.lower() or "registry" in first.lower():
            fix = "inline the referenced schema under $defs and point $ref at '#/$defs/Name'"
        elif "does not exist" in first or "Pointer" in first:
            fix = "point $ref at a definition that exists, such as '#/$defs/Name'"
        elif "regex" in first:
            fix = _FIXES["pattern"]
        else:
            fix = "correct the keyword's value"
        raise InvalidRequestError(
            _schema_message("invalid JSON Schema", [_clip(f"{pointer}: {first}; fix: {fix}")])
        ) from None
    except (ValueError, TypeError) as exc:
        raise InvalidRequestError(f"invalid JSON Schema: {exc}") from None


def _check_satisfiable(schema: dict[str, Any]) -> None:
    if not _unsatisfiable(schema):
        return
    where = ""
    properties = schema.get("properties")
    if isinstance(properties, Mapping):
        defs: dict[str, Any] = {k: schema[k] for k in ("$defs", "definitions") if k in schema}
        for name, sub in properties.items():
            if sub is False or (isinstance(sub, Mapping) and _unsatisfiable({**defs, **sub})):
                where = f" (#/properties/{_escape(str(name))} accepts no value)"
                break
    raise InvalidRequestError(
        f"the schema accepts no value at all{where}, so no record could ever be valid; "
        "look for 'false', {'not': {}}, an empty enum, a minimum above the maximum, "
        "minLength above maxLength, or types that exclude each other, and fix the "
        "contradiction"
    )


def _unsatisfiable(schema: dict[str, Any]) -> bool:
    """Proven to accept nothing (``jsonschema-rs`` answers yes, no or unknown)."""
    try:
        canonical = jsonschema_rs.canonicalize(schema)
        return bool(canonical.satisfiability() == jsonschema_rs.canonical.Satisfiability.NO)
    except Exception:  # the proof is a bonus: a schema it cannot read is not refused
        return False


def _columns(schema: Mapping[str, Any]) -> list[str]:
    """Top-level property names in order: the root's own, then through its ``$ref``
    and its ``allOf`` parts, depth first."""
    names: dict[str, None] = {}

    def visit(node: Any, depth: int) -> None:
        if not isinstance(node, Mapping) or depth > 32:
            return
        properties = node.get("properties")
        if isinstance(properties, Mapping):
            names.update(dict.fromkeys(properties))
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#"):
            target = follow_pointer(schema, ref)
            if target is not MISSING:
                visit(target, depth + 1)
        parts = node.get("allOf")
        if isinstance(parts, list):
            for part in parts:
                visit(part, depth + 1)

    visit(schema, 0)
    return list(names)


def _repoint(node: Any, where: str) -> Any:
    """``node`` with local ``$ref``s other than into ``$defs``/``definitions``
    prefixed with ``where`` (the record's new place)."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if (
                key == "$ref"
                and isinstance(value, str)
                and value.startswith("#")
                and not value.startswith(("#/$defs/", "#/definitions/"))
            ):
                out[key] = where + value[1:]
            elif key in ("enum", "const", "examples", "default"):
                out[key] = value  # data, not schemas
            else:
                out[key] = _repoint(value, where)
        return out
    if isinstance(node, list):
        return [_repoint(v, where) for v in node]
    return node


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


# -- messages -------------------------------------------------------------------------------


def _schema_message(head: str, problems: list[str]) -> str:
    shown = problems[:MAX_ERROR_LINES]
    more = len(problems) - len(shown)
    lines = [f"{head}, {len(problems)} problem{'s' if len(problems) != 1 else ''}:"]
    lines += [f"- {p}" for p in shown]
    if more:
        lines.append(f"- ... and {more} more")
    return "\n".join(lines)


def _json_path(path: Iterable[Any]) -> str:
    out = "$"
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENTIFIER.match(str(part)):
            out += f".{part}"
        else:
            out += f"[{json.dumps(str(part), ensure_ascii=False)}]"
    return out


def _clip(text: str) -> str:
    return text if len(text) <= _LINE_CHARS else text[: _LINE_CHARS - 3] + "..."


def _violations(errors: Iterable[Any]) -> list[str]:
    lines: list[str] = []
    seen: set[str] = set()
    for error in errors:
        line = _clip(f"at {_json_path(error.instance_path)}: {error.message}")
        if line not in seen:
            seen.add(line)
            lines.append(line)
    return lines


def _message(lines: list[str]) -> str:
    shown = lines[:MAX_ERROR_LINES]
    more = len(lines) - len(shown)
    head = f"{len(lines)} schema violation{'s' if len(lines) != 1 else ''}:"
    body = [f"- {line}" for line in shown]
    if more:
        body.append(f"- ... and {more} more")
    return "\n".join([head, *body])


def _validate_model(model: type[BaseModel], value: Any) -> Verdict:
    from pydantic import ValidationError

    try:
        return Verdict(model.model_validate(value), None)
    except ValidationError as exc:
        lines: list[str] = []
        for item in exc.errors(include_url=False):
            got = json.dumps(item.get("input"), ensure_ascii=False, default=repr)
            if len(got) > 60:
                got = got[:57] + "..."
            lines.append(_clip(f"at {_json_path(item['loc'])}: {item['msg']} (got {got})"))
        return Verdict(None, _message(lines))


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return type(value).__name__
