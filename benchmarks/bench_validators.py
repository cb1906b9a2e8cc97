"""Which JSON Schema validator checks generated records: speed and correctness.

Candidates: ``jsonschema`` (pure Python, with its format checker and the
``format-nongpl`` extras that make date-time/uri/hostname checks real),
``jsonschema-rs`` (Rust, formats on) and ``fastjsonschema`` (generated Python
code, drafts 4-7 only). Speed is validations per second on a realistic record
(nested objects, arrays, enums, patterns, formats), valid and invalid, the
Python object as the engine holds it; the baseline in the same run is
``json.loads`` of the same record (what parsing the model's text costs anyway).
Correctness is a fixed set of tricky cases with the answer the 2020-12
specification gives.

    python benchmarks/bench_validators.py [--seconds 0.5]
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from collections.abc import Callable
from typing import Any

import fastjsonschema
import jsonschema
import jsonschema_rs
from _report import save, table

from agentic_synth.datasets._schema import SchemaSpec

RECORD_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Order",
    "type": "object",
    "$defs": {
        "money": {
            "type": "object",
            "properties": {
                "amount": {"type": "number", "minimum": 0, "multipleOf": 0.01},
                "currency": {"enum": ["USD", "EUR", "GBP", "JPY"]},
            },
            "required": ["amount", "currency"],
            "additionalProperties": False,
        }
    },
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"},
        "created": {"type": "string", "format": "date-time"},
        "customer": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 80},
                "email": {"type": "string", "format": "email"},
                "age": {"type": "integer", "minimum": 18, "maximum": 120},
                "site": {"type": "string", "format": "uri"},
            },
            "required": ["name", "email"],
            "additionalProperties": False,
        },
        "status": {"enum": ["pending", "paid", "shipped", "cancelled"]},
        "total": {"$ref": "#/$defs/money"},
        "lines": {
            "type": "array",
            "minItems": 1,
            "maxItems": 20,
            "items": {
                "type": "object",
                "properties": {
                    "product": {"type": "string", "minLength": 2},
                    "qty": {"type": "integer", "minimum": 1},
                    "price": {"$ref": "#/$defs/money"},
                },
                "required": ["product", "qty", "price"],
                "additionalProperties": False,
            },
        },
        "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        "ip": {"type": "string", "format": "ipv4"},
        "note": {"type": ["string", "null"]},
    },
    "required": ["id", "sku", "created", "customer", "status", "total", "lines"],
    "additionalProperties": False,
}

VALID_RECORD: dict[str, Any] = {
    "id": "6f1c2b9e-8a0d-4b7e-9c3f-2d1e0a9b8c7d",
    "sku": "ABC-1234",
    "created": "2025-03-14T15:09:26Z",
    "customer": {
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "age": 36,
        "site": "https://example.com/ada",
    },
    "status": "paid",
    "total": {"amount": 59.97, "currency": "EUR"},
    "lines": [
        {"product": "notebook", "qty": 3, "price": {"amount": 9.99, "currency": "EUR"}},
        {"product": "fountain pen", "qty": 1, "price": {"amount": 30.0, "currency": "EUR"}},
    ],
    "tags": ["gift", "express"],
    "ip": "192.0.2.17",
    "note": None,
}


def _invalid_record() -> dict[str, Any]:
    """Four violations: a bad format, a pattern, an enum and a missing key."""
    record = copy.deepcopy(VALID_RECORD)
    record["created"] = "2025-13-14T15:09:26Z"
    record["sku"] = "abc-1234"
    record["status"] = "lost"
    del record["customer"]["email"]
    return record


INVALID_RECORD = _invalid_record()

# (case, schema, instance, valid per the 2020-12 specification)
D2020 = "https://json-schema.org/draft/2020-12/schema"
CASES: list[tuple[str, dict[str, Any], Any, bool]] = [
    ("date-time month 13", {"format": "date-time"}, "2025-13-01T00:00:00Z", False),
    ("date-time valid", {"format": "date-time"}, "2025-01-31T23:59:59+02:00", True),
    ("date Feb 30", {"format": "date"}, "2024-02-30", False),
    ("email without @", {"format": "email"}, "ada.example.com", False),
    ("uri without scheme", {"format": "uri"}, "//example.com/x", False),
    ("uuid malformed", {"format": "uuid"}, "6f1c2b9e-8a0d-4b7e-9c3f", False),
    ("ipv4 octet 256", {"format": "ipv4"}, "256.1.1.1", False),
    ("ipv6 bad group", {"format": "ipv6"}, "2001:db8::g", False),
    ("ipv6 valid", {"format": "ipv6"}, "2001:db8::1", True),
    (
        "$ref into $defs",
        {"$defs": {"n": {"type": "integer"}}, "properties": {"a": {"$ref": "#/$defs/n"}}},
        {"a": "x"},
        False,
    ),
    (
        "unevaluatedProperties",
        {
            "$schema": D2020,
            "allOf": [{"properties": {"a": {"type": "string"}}}],
            "unevaluatedProperties": False,
        },
        {"a": "x", "b": 1},
        False,
    ),
    (
        "unevaluatedProperties ok",
        {
            "$schema": D2020,
            "allOf": [{"properties": {"a": {"type": "string"}}}],
            "unevaluatedProperties": False,
        },
        {"a": "x"},
        True,
    ),
    ("pattern \\p{L} unicode", {"pattern": "^\\p{L}+$"}, "héllo", True),
    ("pattern \\d is ASCII", {"pattern": "^\\d+$"}, "١٢٣", False),
    ("pattern is a search", {"pattern": "b"}, "abc", True),
    ("minLength counts code points", {"minLength": 2}, "😀", False),
    ("integer accepts 1.0", {"type": "integer"}, 1.0, True),
    ("integer rejects 1.5", {"type": "integer"}, 1.5, False),
    ("integer rejects true", {"type": "integer"}, True, False),
    ("enum [1] accepts 1.0", {"enum": [1]}, 1.0, True),
    ("enum [false] rejects 0", {"enum": [False]}, 0, False),
    ("uniqueItems [1, 1.0]", {"uniqueItems": True}, [1, 1.0], False),
    ("uniqueItems [0, false]", {"uniqueItems": True}, [0, False], True),
    (
        "prefixItems",
        {"$schema": D2020, "prefixItems": [{"type": "integer"}, {"type": "string"}]},
        [1, 2],
        False,
    ),
    (
        "prefixItems + items false",
        {"$schema": D2020, "prefixItems": [{"type": "integer"}], "items": False},
        [1, "extra"],
        False,
    ),
    ("multipleOf 0.01", {"multipleOf": 0.01}, 59.97, True),
    (
        "dependentRequired",
        {"$schema": D2020, "dependentRequired": {"a": ["b"]}},
        {"a": 1},
        False,
    ),
]


class Candidate:
    """One library behind one interface: compile, is_valid, all error messages."""

    def __init__(
        self,
        name: str,
        compile: Callable[[dict[str, Any]], Any],
        is_valid: Callable[[Any, Any], bool],
        errors: Callable[[Any, Any], list[str]],
    ) -> None:
        self.name = name
        self.compile = compile
        self.is_valid = is_valid
        self.errors = errors


def _py_compile(schema: dict[str, Any]) -> Any:
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _fast_errors(validate: Any, value: Any) -> list[str]:
    try:
        validate(value)
    except fastjsonschema.JsonSchemaValueException as exc:
        return [exc.message]  # it stops at the first violation
    return []


def _fast_valid(validate: Any, value: Any) -> bool:
    try:
        validate(value)
    except fastjsonschema.JsonSchemaValueException:
        return False
    return True


CANDIDATES = [
    Candidate(
        "jsonschema",
        _py_compile,
        lambda v, x: bool(v.is_valid(x)),
        lambda v, x: [e.message for e in v.iter_errors(x)],
    ),
    Candidate(
        "jsonschema-rs",
        lambda s: jsonschema_rs.validator_for(s, validate_formats=True),
        lambda v, x: bool(v.is_valid(x)),
        lambda v, x: [e.message for e in v.iter_errors(x)],
    ),
    Candidate(
        "fastjsonschema",
        lambda s: fastjsonschema.compile(s),
        _fast_valid,
        _fast_errors,
    ),
]


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``fn``, best of three runs of about ``seconds / 3``."""
    n = 1
    while True:  # calibrate
        start = time.perf_counter()
        for _ in range(n):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed > 0.02:
            break
        n *= 2
    per_run = max(1, int(n * (seconds / 3) / elapsed))
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(per_run):
            fn()
        best = max(best, per_run / (time.perf_counter() - start))
    return best


def correctness(candidate: Candidate) -> tuple[int, list[str]]:
    passed, wrong = 0, []
    for name, schema, instance, expected in CASES:
        try:
            got = candidate.is_valid(candidate.compile(schema), instance)
        except Exception as exc:  # a library that cannot compile the case gets it wrong
            wrong.append(f"{name} ({type(exc).__name__})")
            continue
        if got == expected:
            passed += 1
        else:
            wrong.append(name)
    return passed, wrong


def main(seconds: float) -> None:
    text = json.dumps(VALID_RECORD)
    baseline = rate(lambda: json.loads(text), seconds)
    rows: list[dict[str, Any]] = [
        {"validator": "json.loads (baseline)", "valid/s": baseline, "us valid": 1e6 / baseline}
    ]
    figures: dict[str, Any] = {"json_loads_per_s": baseline, "cases": len(CASES), "rows": {}}
    for c in CANDIDATES:
        compiled = c.compile(RECORD_SCHEMA)
        assert c.is_valid(compiled, VALID_RECORD), c.name
        assert not c.is_valid(compiled, INVALID_RECORD), c.name
        compile_s = 1.0 / rate(lambda c=c: c.compile(RECORD_SCHEMA), seconds / 2)
        valid = rate(lambda c=c, v=compiled: c.is_valid(v, VALID_RECORD), seconds)
        invalid = rate(lambda c=c, v=compiled: c.errors(v, INVALID_RECORD), seconds)
        found = len(c.errors(compiled, INVALID_RECORD))
        passed, wrong = correctness(c)
        row = {
            "validator": c.name,
            "valid/s": valid,
            "us valid": 1e6 / valid,
            "errors/s": invalid,
            "us errors": 1e6 / invalid,
            "found (of 4)": found,
            "compile ms": compile_s * 1e3,
            "cases": f"{passed}/{len(CASES)}",
        }
        rows.append(row)
        figures["rows"][c.name] = {**row, "wrong": wrong}
    # what the dataset generator pays per answer: SchemaSpec on the chosen validator
    spec = SchemaSpec.of(RECORD_SCHEMA)
    fenced = "Here is the record:\n```json\n" + json.dumps(VALID_RECORD, indent=2) + "\n```"
    for name, fn in (
        ("SchemaSpec.validate", lambda: spec.validate(VALID_RECORD)),
        ("SchemaSpec.parse (bare JSON)", lambda: spec.parse(text)),
        ("SchemaSpec.parse (fenced, prose)", lambda: spec.parse(fenced)),
    ):
        assert fn().ok, name
        per_s = rate(fn, seconds)
        rows.append({"validator": name, "valid/s": per_s, "us valid": 1e6 / per_s})
        figures["rows"][name] = {"valid/s": per_s, "us valid": 1e6 / per_s}
    print(
        table(
            rows,
            [
                "validator",
                "valid/s",
                "us valid",
                "errors/s",
                "us errors",
                "found (of 4)",
                "compile ms",
                "cases",
            ],
        )
    )
    for c in CANDIDATES:
        wrong = figures["rows"][c.name]["wrong"]
        print(f"{c.name} wrong on: {', '.join(wrong) if wrong else 'none'}")
    path = save("validators", figures)
    print(f"saved {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=0.6, help="time per measured row")
    main(parser.parse_args().seconds)
