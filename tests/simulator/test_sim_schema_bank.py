"""Every value the simulator draws for a bank of real schemas validates, checked by an
independent validator (the ``jsonschema`` package with its format checker)."""

from __future__ import annotations

import json
import random
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

import jsonschema
import pytest
from pydantic import BaseModel, Field

from agentic_synth._exceptions import ConfigurationError
from agentic_synth._types import Request
from agentic_synth.datasets._schema import SchemaSpec
from agentic_synth.simulator import SimConfig, Simulator, generate_json

FORMAT_CHECKER = jsonschema.Draft202012Validator.FORMAT_CHECKER
DRAWS = 60

# --- the seed's domain schemas, as fixtures ------------------------------------------------

USER = {
    "title": "User",
    "type": "object",
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "username": {"type": "string", "pattern": "^[a-z][a-z0-9_]{2,15}$"},
        "name": {"type": "string", "minLength": 2, "maxLength": 80},
        "email": {"type": "string", "format": "email"},
        "age": {"type": "integer", "minimum": 13, "maximum": 100},
        "country": {"type": "string", "pattern": "^[A-Z]{2}$"},
        "phone": {"type": "string", "pattern": "^\\+[1-9]\\d{7,13}$"},
        "signup_date": {"type": "string", "format": "date"},
        "last_login": {"type": "string", "format": "date-time"},
        "plan": {"type": "string", "enum": ["free", "pro", "enterprise"]},
        "website": {"type": ["string", "null"], "format": "uri"},
        "interests": {
            "type": "array",
            "items": {"type": "string", "minLength": 1, "maxLength": 30},
            "maxItems": 5,
            "uniqueItems": True,
        },
        "address": {
            "type": "object",
            "properties": {
                "street": {"type": "string"},
                "city": {"type": "string", "minLength": 2},
                "postcode": {"type": "string", "pattern": "^[0-9]{5}(-[0-9]{4})?$"},
            },
            "required": ["street", "city", "postcode"],
            "additionalProperties": False,
        },
    },
    "required": ["id", "username", "name", "email", "age", "country", "signup_date", "plan"],
    "additionalProperties": False,
}

PRODUCT = {
    "title": "Product",
    "type": "object",
    "$defs": {
        "money": {
            "type": "object",
            "properties": {
                "amount": {"type": "number", "exclusiveMinimum": 0, "multipleOf": 0.01},
                "currency": {"enum": ["USD", "EUR", "GBP"]},
            },
            "required": ["amount", "currency"],
            "additionalProperties": False,
        }
    },
    "properties": {
        "sku": {"type": "string", "pattern": "^[A-Z]{3}-\\d{4}$"},
        "name": {"type": "string", "minLength": 2, "maxLength": 120},
        "description": {"type": "string", "minLength": 10, "maxLength": 600},
        "category": {"enum": ["electronics", "home", "garden", "toys", "books"]},
        "price": {"$ref": "#/$defs/money"},
        "sale_price": {"anyOf": [{"$ref": "#/$defs/money"}, {"type": "null"}]},
        "in_stock": {"type": "boolean"},
        "stock": {"type": "integer", "minimum": 0, "multipleOf": 5},
        "color": {"type": "string", "pattern": "^#[0-9a-fA-F]{6}$"},
        "dimensions_cm": {
            "type": "array",
            "prefixItems": [
                {"type": "number", "exclusiveMinimum": 0},
                {"type": "number", "exclusiveMinimum": 0},
                {"type": "number", "exclusiveMinimum": 0},
            ],
            "items": False,
            "minItems": 3,
        },
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 8},
    },
    "required": ["sku", "name", "description", "category", "price", "in_stock"],
    "additionalProperties": False,
}

TRANSACTION = {
    "title": "Transaction",
    "type": "object",
    "properties": {
        "transaction_id": {"type": "string", "pattern": "^txn_[A-Za-z0-9]{16}$"},
        "user_id": {"type": "string", "format": "uuid"},
        "timestamp": {"type": "string", "format": "date-time"},
        "amount": {"type": "number", "exclusiveMinimum": 0, "maximum": 1000000},
        "currency": {"type": "string", "enum": ["USD", "EUR", "GBP"]},
        "status": {"type": "string", "enum": ["pending", "completed", "failed", "refunded"]},
        "merchant": {"type": "string", "minLength": 2, "maxLength": 80},
        "card_last4": {"type": "string", "pattern": "^\\d{4}$"},
        "ip": {"type": "string", "format": "ipv4"},
        "device_ip6": {"type": "string", "format": "ipv6"},
        "category": {
            "type": "string",
            "enum": ["groceries", "travel", "dining", "utilities", "shopping", "other"],
        },
    },
    "required": ["transaction_id", "user_id", "timestamp", "amount", "currency", "status"],
    "additionalProperties": False,
    "if": {"properties": {"status": {"const": "refunded"}}},
    "then": {"required": ["category"]},
}

# --- OpenAI structured-output guide examples -----------------------------------------------

MATH_REASONING = {
    "type": "object",
    "properties": {
        "steps": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"explanation": {"type": "string"}, "output": {"type": "string"}},
                "required": ["explanation", "output"],
                "additionalProperties": False,
            },
        },
        "final_answer": {"type": "string"},
    },
    "required": ["steps", "final_answer"],
    "additionalProperties": False,
}

UI_COMPONENT = {
    "type": "object",
    "properties": {
        "type": {"type": "string", "enum": ["div", "button", "header", "section", "field", "form"]},
        "label": {"type": "string"},
        "children": {"type": "array", "items": {"$ref": "#"}},
        "attributes": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "value": {"type": "string"}},
                "required": ["name", "value"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["type", "label", "children", "attributes"],
    "additionalProperties": False,
}

LINKED_LIST = {
    "type": "object",
    "properties": {"linked_list": {"$ref": "#/$defs/linked_list_node"}},
    "$defs": {
        "linked_list_node": {
            "type": "object",
            "properties": {
                "value": {"type": "number"},
                "next": {"anyOf": [{"$ref": "#/$defs/linked_list_node"}, {"type": "null"}]},
            },
            "additionalProperties": False,
            "required": ["next", "value"],
        }
    },
    "additionalProperties": False,
    "required": ["linked_list"],
}

MODERATION = {
    "type": "object",
    "properties": {
        "is_violating": {"type": "boolean"},
        "category": {"type": ["string", "null"], "enum": ["violence", "sexual", "self_harm", None]},
        "explanation_if_violating": {"type": ["string", "null"]},
    },
    "required": ["is_violating", "category", "explanation_if_violating"],
    "additionalProperties": False,
}

WEATHER = {
    "type": "object",
    "properties": {
        "location": {"type": "string", "description": "The location to get the weather for"},
        "unit": {"type": ["string", "null"], "enum": ["F", "C"]},
        "value": {"type": "number", "minimum": -130, "maximum": 140},
        "station": {"type": "string", "pattern": "^@[a-z]+$"},
        "observed": {"type": "string", "format": "date-time"},
    },
    "required": ["location", "unit", "value", "station", "observed"],
    "additionalProperties": False,
}

# --- pydantic docs-style models ------------------------------------------------------------


class Role(StrEnum):
    admin = "admin"
    member = "member"


class Pet(BaseModel):
    kind: Literal["cat"]
    lives: int = Field(ge=0, le=9)


class Dog(BaseModel):
    kind: Literal["dog"]
    good_boy: bool = True


class Account(BaseModel):
    id: int = Field(gt=0)
    username: Annotated[str, Field(pattern=r"^[a-z0-9_-]{3,16}$")]
    role: Role
    created: datetime
    birthday: date | None = None
    score: float = Field(ge=0, lt=100, multiple_of=0.5)
    tags: list[Annotated[str, Field(min_length=1, max_length=12)]] = Field(max_length=4)
    pet: Pet | Dog | None = Field(default=None, discriminator="kind")
    friends: list[Account] = []


class CalendarEvent(BaseModel):
    name: str
    date: str
    participants: list[str]


# --- keyword coverage ----------------------------------------------------------------------

KEYWORDS: list[dict[str, Any]] = [
    {"type": "integer", "multipleOf": 2.5, "minimum": 1, "maximum": 100},
    {"oneOf": [{"type": "integer"}, {"type": "number"}]},
    {"oneOf": [{"type": "string", "maxLength": 3}, {"type": "string", "minLength": 2}]},
    {"type": "integer", "minimum": 0, "maximum": 5, "not": {"const": 3}},
    {"type": ["string", "null"], "not": {"type": "null"}},
    {
        "type": "object",
        "properties": {"kind": {"enum": ["a", "b"]}, "x": {"type": "integer"}},
        "required": ["kind"],
        "if": {"properties": {"kind": {"const": "a"}}},
        "then": {"required": ["x"]},
        "else": {"not": {"required": ["x"]}},
    },
    {
        "type": "object",
        "patternProperties": {"^x-[a-z]+$": {"type": "integer"}},
        "additionalProperties": False,
        "minProperties": 3,
    },
    {
        "type": "object",
        "propertyNames": {"pattern": "^[a-z]{3,5}$"},
        "additionalProperties": {"type": "boolean"},
        "minProperties": 2,
    },
    {
        "type": "object",
        "properties": {
            "card": {"type": "string"},
            "cvv": {"type": "string", "pattern": "^\\d{3}$"},
        },
        "dependentRequired": {"card": ["cvv"]},
        "required": ["card"],
    },
    {
        "type": "array",
        "items": {"type": "integer", "minimum": 0, "maximum": 100},
        "contains": {"minimum": 90},
        "minContains": 2,
        "maxContains": 3,
        "maxItems": 6,
    },
    {
        "$defs": {"base": {"type": "object", "properties": {"id": {"type": "integer"}}}},
        "$ref": "#/$defs/base",
        "properties": {"name": {"type": "string"}},
        "required": ["id", "name"],
    },
    {
        "allOf": [
            {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "string"}},
                "additionalProperties": False,
            },
            {"properties": {"a": {"minimum": 10}, "c": {"type": "null"}}, "required": ["a"]},
        ]
    },
    {
        "allOf": [{"properties": {"a": {"type": "string"}}, "required": ["a"]}],
        "properties": {"b": {"type": "integer"}},
        "unevaluatedProperties": False,
    },
    {"type": "string", "enum": ["x", 1, None, "y"]},
    {"type": "string", "format": "date", "pattern": "^2024-"},
    {"type": "string", "pattern": "^[a-z]+$", "minLength": 25, "maxLength": 30},
    {"type": "string", "pattern": "(cat|dog)s?", "maxLength": 4},
    {"type": "array", "items": {"enum": [1, 2, 3, 4]}, "uniqueItems": True, "minItems": 4},
    {"anyOf": [{"type": "string", "pattern": "^a"}, {"type": "integer"}], "minLength": 2},
    *(
        {"type": "string", "format": f}
        for f in (
            "date",
            "date-time",
            "time",
            "duration",
            "email",
            "idn-email",
            "hostname",
            "idn-hostname",
            "ipv4",
            "ipv6",
            "uri",
            "uri-reference",
            "iri",
            "iri-reference",
            "uri-template",
            "uuid",
            "json-pointer",
            "relative-json-pointer",
            "regex",
        )
    ),
]

DICT_SCHEMAS: list[dict[str, Any]] = [
    USER,
    PRODUCT,
    TRANSACTION,
    MATH_REASONING,
    UI_COMPONENT,
    LINKED_LIST,
    MODERATION,
    WEATHER,
    *KEYWORDS,
]
MODELS: list[type[BaseModel]] = [Account, CalendarEvent, Pet]


def _id(schema: Any) -> str:
    return str(schema.get("title") or json.dumps(schema))[:50]


def test_the_independent_validator_checks_formats() -> None:
    """Without jsonschema's format extras date-time and uri pass unchecked."""
    assert not FORMAT_CHECKER.conforms("2024-13-01T00:00:00Z", "date-time")
    assert not FORMAT_CHECKER.conforms("not a uri", "uri")
    assert not FORMAT_CHECKER.conforms("2024-02-30", "date")


@pytest.mark.parametrize("schema", DICT_SCHEMAS, ids=_id)
def test_every_draw_validates(schema: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator.check_schema(schema)
    spec = SchemaSpec.of(schema)
    for seed in range(DRAWS):
        value = generate_json(schema, random.Random(seed))
        jsonschema.validate(value, schema, format_checker=FORMAT_CHECKER)
        assert spec.validate(value).ok, spec.validate(value).error


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_draw_validates_for_models(model: type[BaseModel]) -> None:
    schema = model.model_json_schema()
    for seed in range(DRAWS):
        value = generate_json(schema, random.Random(seed))
        jsonschema.validate(value, schema, format_checker=FORMAT_CHECKER)
        model.model_validate(value)


@pytest.mark.parametrize("schema", [*DICT_SCHEMAS[:8], Account.model_json_schema()], ids=_id)
def test_draws_are_deterministic_and_varied(schema: dict[str, Any]) -> None:
    first = [json.dumps(generate_json(schema, random.Random(s))) for s in range(10)]
    again = [json.dumps(generate_json(schema, random.Random(s))) for s in range(10)]
    assert first == again
    assert len(set(first)) >= 8


def test_unicode_property_pattern() -> None:
    """Python's re (so the jsonschema package) has no \\p{..}: checked by jsonschema-rs."""
    schema = {"type": "string", "pattern": "^\\p{Lu}\\p{Ll}+$"}
    spec = SchemaSpec.of(schema)
    for seed in range(DRAWS):
        assert spec.validate(generate_json(schema, random.Random(seed))).ok


def test_one_of_picks_exactly_one() -> None:
    schema = {"oneOf": [{"type": "integer"}, {"type": "number"}]}
    values = [generate_json(schema, random.Random(s)) for s in range(40)]
    assert all(isinstance(v, float) and not v.is_integer() for v in values)


def test_if_then_else_both_sides_drawn() -> None:
    schema = KEYWORDS[5]
    kinds = {generate_json(schema, random.Random(s))["kind"] for s in range(30)}
    assert kinds == {"a", "b"}


def test_contains_counts() -> None:
    schema = KEYWORDS[9]
    for seed in range(30):
        hits = [v for v in generate_json(schema, random.Random(seed)) if v >= 90]
        assert 2 <= len(hits) <= 3


@pytest.mark.parametrize(
    ("schema", "needle"),
    [
        ({"type": "integer", "minimum": 0, "maximum": 1, "not": {"enum": [0, 1]}}, "tries"),
        ({"type": "string", "pattern": "^(a)\\1$"}, "backreference"),
        ({"type": "string", "pattern": "^(?=b)a$"}, "lookaround"),
        ({"enum": ["a"], "type": "integer"}, "fits its type"),
        (
            {"required": ["x"], "properties": {"y": {}}, "additionalProperties": False},
            "'x' is required",
        ),
    ],
)
def test_impossible_draws_say_why(schema: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigurationError, match=needle):
        generate_json(schema, random.Random(0))


# --- K records per request ------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 3, 7])
def test_array_schema_of_k_records(k: int) -> None:
    spec = SchemaSpec.of(Account)
    for key in (None, "records"):
        schema = spec.array_schema(k, key=key)
        for seed in range(10):
            value = generate_json(schema, random.Random(seed))
            jsonschema.validate(value, schema, format_checker=FORMAT_CHECKER)
            verdicts = spec.parse_many(json.dumps(value), k)
            assert len(verdicts) == k and all(v.ok for v in verdicts)


def test_the_engine_answers_k_records() -> None:
    spec = SchemaSpec.of(PRODUCT)
    simulator = Simulator(SimConfig(seed=3))
    for i in range(20):
        request = Request(
            messages=[{"role": "user", "content": f"Return a JSON array of 5 records ({i})"}],
            max_tokens=20_000,
            json_schema=spec.array_schema(5),
        )
        outcome = simulator.decide(request)
        assert outcome.finish == "end"
        verdicts = spec.parse_many(outcome.text, 5, finish_reason="stop")
        assert [v.ok for v in verdicts] == [True] * 5
