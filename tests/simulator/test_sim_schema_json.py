"""Generated JSON validates against its schema (checked with the jsonschema package)."""

from __future__ import annotations

import json
import random
from typing import Any

import anthropic
import httpx
import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentic_synth._exceptions import ConfigurationError
from agentic_synth.simulator import MockServer, generate_json

FORMAT_CHECKER = jsonschema.Draft202012Validator.FORMAT_CHECKER

PERSON = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "name": {"type": "string", "minLength": 3, "maxLength": 20},
        "email": {"type": "string", "format": "email"},
        "homepage": {"type": "string", "format": "uri"},
        "born": {"type": "string", "format": "date"},
        "updated": {"type": "string", "format": "date-time"},
        "age": {"type": "integer", "minimum": 18, "exclusiveMaximum": 100},
        "score": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "active": {"type": "boolean"},
        "nickname": {"type": ["string", "null"]},
        "role": {"enum": ["admin", "user", "guest"]},
        "kind": {"const": "person"},
    },
    "required": ["id", "name", "email", "age", "score", "role", "kind", "born", "updated"],
    "additionalProperties": False,
}

SCHEMAS: list[dict[str, Any]] = [
    PERSON,
    {"type": "array", "items": PERSON, "minItems": 2, "maxItems": 4},
    {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {
                    "value": {"type": "integer"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                },
                "required": ["value", "children"],
                "additionalProperties": False,
            }
        },
        "$ref": "#/$defs/node",
    },
    {
        "definitions": {"tag": {"type": "string", "minLength": 1, "maxLength": 8}},
        "type": "object",
        "properties": {
            "tags": {
                "type": "array",
                "items": {"$ref": "#/definitions/tag"},
                "uniqueItems": True,
                "minItems": 3,
            }
        },
        "required": ["tags"],
    },
    {
        "anyOf": [
            {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
            {"type": "string"},
        ]
    },
    {
        "oneOf": [
            {"type": "integer", "multipleOf": 5, "minimum": 11, "maximum": 99},
            {"type": "null"},
        ]
    },
    {"type": "number", "multipleOf": 0.25, "minimum": -3, "maximum": 3},
    {"type": "number", "multipleOf": 0.1, "minimum": 0, "maximum": 1},
    {"type": "integer", "exclusiveMinimum": 5, "exclusiveMaximum": 7},
    {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "type": "integer",
        "minimum": 5,
        "maximum": 7,
        "exclusiveMinimum": True,
    },
    {
        "allOf": [
            {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]},
            {"properties": {"y": {"type": "string"}}, "required": ["y"]},
        ]
    },
    {"type": "object", "minProperties": 4, "additionalProperties": {"type": "integer"}},
    {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "string"}, "c": {"type": "string"}},
        "maxProperties": 1,
    },
    {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "items": False},
    {"type": "string", "minLength": 50},
    {"type": "string", "maxLength": 2},
    {"type": "string", "format": "time"},
    {"type": "string", "format": "ipv4"},
    {"type": "string", "format": "hostname"},
    {"type": ["integer", "boolean"]},
    {"type": "null"},
    {},
    {"properties": {"implicit": {"minimum": 3, "maximum": 4}}, "required": ["implicit"]},
]


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: str(s)[:40])
def test_generated_values_validate(schema: dict[str, Any]) -> None:
    for seed in range(40):
        value = generate_json(schema, random.Random(seed))
        jsonschema.validate(value, schema, format_checker=FORMAT_CHECKER)


def test_values_vary_with_the_seed() -> None:
    values = {str(generate_json(PERSON, random.Random(seed))) for seed in range(20)}
    assert len(values) == 20


def test_same_seed_same_value() -> None:
    assert generate_json(PERSON, random.Random(3)) == generate_json(PERSON, random.Random(3))


def test_recursive_schema_terminates() -> None:
    # The first anyOf branch always recurses; deep down the leaf branch must be chosen.
    schema = {
        "$defs": {
            "t": {
                "type": "array",
                "items": {"anyOf": [{"$ref": "#/$defs/t"}, {"type": "integer"}]},
                "minItems": 1,
            }
        },
        "$ref": "#/$defs/t",
    }
    for seed in range(5):
        value = generate_json(schema, random.Random(seed))
        jsonschema.validate(value, schema)


def test_schema_without_finite_instance_is_reported() -> None:
    schema = {
        "$defs": {"t": {"type": "array", "items": {"$ref": "#/$defs/t"}, "minItems": 1}},
        "$ref": "#/$defs/t",
    }
    with pytest.raises(ConfigurationError, match="recurses"):
        generate_json(schema, random.Random(0))


@pytest.mark.parametrize(
    ("schema", "needle"),
    [
        (False, "false"),
        ({"$ref": "https://example.com/schema.json"}, "local"),
        ({"$ref": "#/$defs/missing"}, "does not resolve"),
        ({"anyOf": [False]}, "no usable branch"),
    ],
)
def test_unsatisfiable_or_unsupported_schemas_say_why(schema: Any, needle: str) -> None:
    with pytest.raises(ConfigurationError, match=needle):
        generate_json(schema, random.Random(0))


# --- hypothesis: random schemas built from the supported keywords -------------------------

_leaf = st.one_of(
    st.just({"type": "boolean"}),
    st.just({"type": "null"}),
    st.builds(
        lambda lo, span: {"type": "integer", "minimum": lo, "maximum": lo + span},
        st.integers(-1000, 1000),
        st.integers(0, 50),
    ),
    st.builds(
        lambda lo, span, excl: {
            "type": "number",
            ("exclusiveMinimum" if excl else "minimum"): lo,
            "maximum": lo + span,
        },
        st.integers(-100, 100),
        st.integers(1, 100),
        st.booleans(),
    ),
    st.builds(
        lambda lo, span: {"type": "string", "minLength": lo, "maxLength": lo + span},
        st.integers(0, 30),
        st.integers(0, 30),
    ),
    st.sampled_from(["date", "date-time", "email", "uri", "uuid"]).map(
        lambda f: {"type": "string", "format": f}
    ),
    st.lists(st.text(max_size=5), min_size=1, max_size=4, unique=True).map(lambda e: {"enum": e}),
)


def _object(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    names = st.text(alphabet="abcdefghij_", min_size=1, max_size=6)
    return st.builds(
        lambda props, req_flags, extra: {
            "type": "object",
            "properties": props,
            "required": [n for n, r in zip(props, req_flags, strict=False) if r],
            "additionalProperties": extra,
        },
        st.dictionaries(names, children, max_size=4),
        st.lists(st.booleans(), min_size=4, max_size=4),
        st.booleans(),
    )


def _array(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        lambda items, lo, span: {
            "type": "array",
            "items": items,
            "minItems": lo,
            "maxItems": lo + span,
        },
        children,
        st.integers(0, 3),
        st.integers(0, 3),
    )


def _combinators(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        _object(children),
        _array(children),
        st.lists(children, min_size=1, max_size=3).map(lambda bs: {"anyOf": bs}),
        st.builds(
            lambda a, b: {"type": [a, b]},
            st.sampled_from(["string", "integer", "number", "boolean"]),
            st.just("null"),
        ),
    )


schemas = st.recursive(_leaf, _combinators, max_leaves=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=schemas, seed=st.integers(0, 2**32))
def test_hypothesis_schemas_validate(schema: dict[str, Any], seed: int) -> None:
    value = generate_json(schema, random.Random(seed))
    jsonschema.validate(value, schema, format_checker=FORMAT_CHECKER)


# --- over the wire --------------------------------------------------------------------------


async def test_anthropic_output_config_gives_schema_json() -> None:
    async with (
        MockServer() as server,
        anthropic.AsyncAnthropic(base_url=server.url, api_key="k", max_retries=0) as client,
    ):
        for i in range(5):
            message = await client.messages.create(
                model="m",
                max_tokens=2000,
                messages=[{"role": "user", "content": f"person {i}"}],
                output_config={"format": {"type": "json_schema", "schema": PERSON}},
            )
            text = message.content[0].text  # type: ignore[union-attr]
            jsonschema.validate(json.loads(text), PERSON, format_checker=FORMAT_CHECKER)
            assert message.stop_reason == "end_turn"


async def test_openai_response_format_json_schema_streamed() -> None:
    schema = SCHEMAS[1]
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "people"}],
        "max_tokens": 4000,
        "stream": True,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "people", "strict": True, "schema": schema},
        },
    }
    async with MockServer() as server, httpx.AsyncClient() as http:
        response = await http.post(server.openai_url + "/chat/completions", json=body)
    chunks = [json.loads(e[6:]) for e in response.text.split("\n\n") if e and e != "data: [DONE]"]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    jsonschema.validate(json.loads(text), schema, format_checker=FORMAT_CHECKER)
