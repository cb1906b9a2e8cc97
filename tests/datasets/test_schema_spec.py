"""SchemaSpec: schema checks at construction, per-record verdicts, array answers."""

from __future__ import annotations

import copy
import json
from datetime import date
from enum import StrEnum
from typing import Any, Literal

import jsonschema
import pytest
from pydantic import BaseModel, Field

from agentic_synth import InvalidRequestError
from agentic_synth.datasets._builtin import BUILTIN_SCHEMAS
from agentic_synth.datasets._schema import MAX_ERROR_LINES, SchemaSpec, Verdict

USERS = BUILTIN_SCHEMAS["users"]
GOOD_USER = {
    "id": "6f1c2b9e-8a0d-4b7e-9c3f-2d1e0a9b8c7d",
    "name": "Ada",
    "email": "ada@example.com",
    "age": 36,
    "country": "GB",
    "signup_date": "2024-02-29",
    "plan": "pro",
}


class Plan(StrEnum):
    free = "free"
    pro = "pro"


class Address(BaseModel):
    street: str
    city: str = Field(min_length=2)


class Customer(BaseModel):
    name: str = Field(min_length=1)
    age: int = Field(ge=18)
    plan: Plan
    born: date
    address: Address
    tags: list[str] = []
    kind: Literal["customer"] = "customer"


GOOD_CUSTOMER = {
    "name": "Ada",
    "age": 36,
    "plan": "pro",
    "born": "1815-12-10",
    "address": {"street": "St James's Square", "city": "London"},
}


# --- construction ---------------------------------------------------------------------------


def test_dict_schema_attributes() -> None:
    spec = SchemaSpec.of(USERS)
    assert spec.json_schema == USERS and spec.json_schema is not USERS
    assert spec.model is None
    assert spec.title == "User"
    assert spec.draft == "2020-12"
    assert spec.columns == tuple(USERS["properties"])
    assert spec.strict_eligible is False  # optional 'interests', minLength
    assert SchemaSpec.of(spec) is spec


def test_private_copy() -> None:
    schema = copy.deepcopy(USERS)
    spec = SchemaSpec.of(schema)
    schema["properties"]["age"]["minimum"] = 99
    assert spec.validate(GOOD_USER).ok


def test_strict_eligible_from_the_openai_check() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": ["integer", "null"]}},
        "required": ["a", "b"],
        "additionalProperties": False,
    }
    assert SchemaSpec.of(schema).strict_eligible is True


def test_model_schema_attributes() -> None:
    spec = SchemaSpec.of(Customer)
    assert spec.model is Customer
    assert spec.title == "Customer"
    assert spec.columns == ("name", "age", "plan", "born", "address", "tags", "kind")
    assert spec.json_schema == Customer.model_json_schema()


def test_columns_through_root_ref_and_all_of() -> None:
    schema = {
        "$defs": {"Base": {"type": "object", "properties": {"id": {}, "name": {}}}},
        "allOf": [{"$ref": "#/$defs/Base"}, {"properties": {"extra": {}}}],
        "properties": {"first": {}},
    }
    assert SchemaSpec.of(schema).columns == ("first", "id", "name", "extra")


@pytest.mark.parametrize(
    ("schema", "needles"),
    [
        (
            {"type": "strin", "minLength": -1, "properties": {"a": {"required": "x"}}},
            [
                "#/type: 'strin' is not one of",
                "fix: use one of array, boolean",
                "#/minLength: -1 is less than the minimum of 0; fix: use an integer >= 0",
                "#/properties/a/required: 'x' is not of type 'array'",
                "3 problems",
            ],
        ),
        ({"items": [1]}, ["#/items", "for a tuple use prefixItems"]),
        ({"properties": {"a": 5}}, ["#/properties/a", "use a schema"]),
        ({"pattern": "["}, ["#/pattern", "ECMA-262"]),
        ({"$ref": "#/$defs/missing"}, ["'/$defs/missing' does not exist", "#/$defs/Name"]),
        ({"$ref": "https://example.com/s.json"}, ["example.com", "inline the referenced"]),
        ({"$schema": "https://example.com/meta"}, ["unknown metaschema", "2020-12"]),
        ({"$schema": 7}, ["#/$schema"]),
        (
            {
                "$schema": "http://json-schema.org/draft-04/schema#",
                "type": "integer",
                "exclusiveMinimum": 3,
            },
            ["(draft-04)", "#/exclusiveMinimum", "true/false (draft-04)"],
        ),
    ],
)
def test_bad_schemas_are_named(schema: dict[str, Any], needles: list[str]) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        SchemaSpec.of(schema)
    for needle in needles:
        assert needle in str(caught.value)


@pytest.mark.parametrize(
    ("schema", "needle"),
    [
        (False, "accepts no record"),
        ({"not": {}}, "accepts no value"),
        ({"enum": []}, "accepts no value"),
        ({"type": "integer", "minimum": 3, "maximum": 2}, "accepts no value"),
        ({"allOf": [{"type": "string"}, {"type": "integer"}]}, "accepts no value"),
        (
            {
                "type": "object",
                "properties": {"a": {"type": "string", "minLength": 3, "maxLength": 1}},
                "required": ["a"],
            },
            "#/properties/a accepts no value",
        ),
    ],
)
def test_unsatisfiable_schemas_are_refused(schema: Any, needle: str) -> None:
    with pytest.raises(InvalidRequestError, match=needle):
        SchemaSpec.of(schema)


def test_satisfiable_optional_contradiction_is_accepted() -> None:
    # 'a' can hold nothing, but it is optional: {} is a valid record.
    schema = {"type": "object", "properties": {"a": {"not": {}}}}
    assert SchemaSpec.of(schema).validate({}).ok


@pytest.mark.parametrize("bad", [42, "schema", None, [1], int, object()])
def test_not_a_schema(bad: Any) -> None:
    with pytest.raises(InvalidRequestError, match=r"JSON Schema dict|BaseModel"):
        SchemaSpec.of(bad)


def test_schema_must_be_json() -> None:
    with pytest.raises(InvalidRequestError, match="not JSON data"):
        SchemaSpec.of({"enum": [{1, 2}]})


@pytest.mark.parametrize(
    "dialect",
    [
        "https://json-schema.org/draft/2020-12/schema",
        "https://json-schema.org/draft/2019-09/schema",
        "http://json-schema.org/draft-07/schema#",
        "http://json-schema.org/draft-06/schema#",
        "http://json-schema.org/draft-04/schema#",
    ],
)
def test_known_drafts(dialect: str) -> None:
    spec = SchemaSpec.of({"$schema": dialect, "type": "object"})
    assert spec.validate({}).ok


# --- validate -------------------------------------------------------------------------------


def test_valid_record() -> None:
    verdict = SchemaSpec.of(USERS).validate(GOOD_USER)
    assert verdict == Verdict(GOOD_USER, None)
    assert verdict.ok


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"id": "not-a-uuid"}, 'at $.id: "not-a-uuid" is not a "uuid"'),
        ({"email": "ada.example.com"}, "at $.email:"),
        ({"signup_date": "2024-02-30"}, 'at $.signup_date: "2024-02-30" is not a "date"'),
        ({"country": "gb"}, 'at $.country: "gb" does not match "^[A-Z]{2}$"'),
        ({"plan": "gold"}, 'at $.plan: "gold" is not one of'),
        ({"age": 36.5}, "at $.age: 36.5 is not of type"),
        ({"age": True}, "at $.age: true is not of type"),
        ({"interests": ["a", ""]}, "at $.interests[1]:"),
        ({"extra": 1}, "'extra' was unexpected"),
    ],
)
def test_violations_have_json_paths(change: dict[str, Any], needle: str) -> None:
    verdict = SchemaSpec.of(USERS).validate({**GOOD_USER, **change})
    assert verdict.record is None
    assert verdict.error is not None and needle in verdict.error
    assert verdict.error.startswith("1 schema violation:")


def test_integer_accepts_whole_floats() -> None:
    assert SchemaSpec.of(USERS).validate({**GOOD_USER, "age": 36.0}).ok


def test_every_violation_listed_and_capped() -> None:
    record = {k: v for k, v in GOOD_USER.items() if k != "email"}
    record.update(country="usa", plan="gold")
    error = SchemaSpec.of(USERS).validate(record).error
    assert error is not None
    assert error.splitlines()[0] == "3 schema violations:"
    assert '"email" is a required property' in error
    many = {
        "type": "object",
        "properties": {f"p{i}": {"type": "integer"} for i in range(50)},
    }
    error = SchemaSpec.of(many).validate({f"p{i}": "x" for i in range(50)}).error
    assert error is not None
    lines = error.splitlines()
    assert lines[0] == "50 schema violations:"
    assert len(lines) == MAX_ERROR_LINES + 2
    assert lines[-1] == f"- ... and {50 - MAX_ERROR_LINES} more"


def test_long_values_are_clipped() -> None:
    error = SchemaSpec.of({"type": "integer"}).validate("x" * 10_000).error
    assert error is not None and len(error) < 400


def test_odd_key_paths() -> None:
    schema = {"type": "object", "properties": {"a b": {"type": "array", "items": {"type": "null"}}}}
    error = SchemaSpec.of(schema).validate({"a b": [None, 1]}).error
    assert error is not None and 'at $["a b"][1]:' in error


def test_unevaluated_properties_and_prefix_items() -> None:
    spec = SchemaSpec.of(
        {
            "allOf": [{"properties": {"a": {"type": "string"}}}],
            "properties": {"t": {"prefixItems": [{"type": "integer"}], "items": False}},
            "unevaluatedProperties": False,
        }
    )
    assert spec.validate({"a": "x", "t": [1]}).ok
    error = spec.validate({"a": "x", "b": 1, "t": [1, 2]}).error
    assert error is not None and "$.t" in error and "'b'" in error


def test_model_validation() -> None:
    spec = SchemaSpec.of(Customer)
    verdict = spec.validate(GOOD_CUSTOMER)
    assert isinstance(verdict.record, Customer)
    assert verdict.record.born == date(1815, 12, 10)
    bad = {**GOOD_CUSTOMER, "age": 12, "plan": "gold", "address": {"street": "x", "city": "L"}}
    verdict = spec.validate(bad)
    assert verdict.record is None and verdict.error is not None
    assert verdict.error.startswith("3 schema violations:")
    assert "at $.age: Input should be greater than or equal to 18 (got 12)" in verdict.error
    assert "at $.plan:" in verdict.error and '(got "gold")' in verdict.error
    assert "at $.address.city:" in verdict.error


# --- parse ------------------------------------------------------------------------------------


def test_parse_prose_and_fences() -> None:
    spec = SchemaSpec.of(USERS)
    text = f"Here is the user:\n```json\n{json.dumps(GOOD_USER, indent=2)}\n```\nEnjoy!"
    assert spec.parse(text) == Verdict(GOOD_USER, None)
    assert spec.parse(json.dumps(GOOD_USER), finish_reason="stop").ok


@pytest.mark.parametrize("finish", ["length", "max_tokens"])
def test_cut_output_is_never_valid(finish: str) -> None:
    spec = SchemaSpec.of(USERS)
    whole = json.dumps(GOOD_USER)
    for text in (whole, whole[: len(whole) // 2]):
        verdict = spec.parse(text, finish_reason=finish)
        assert verdict.record is None
        assert verdict.error is not None and "cut off at max_tokens" in verdict.error


def test_parse_not_json() -> None:
    verdict = SchemaSpec.of(USERS).parse("I cannot help with that.")
    assert verdict.error is not None and verdict.error.startswith("the output is not valid JSON")


def test_parse_model() -> None:
    verdict = SchemaSpec.of(Customer).parse("Sure: " + json.dumps(GOOD_CUSTOMER))
    assert isinstance(verdict.record, Customer)


# --- parse_many -------------------------------------------------------------------------------


def _users(n: int) -> list[dict[str, Any]]:
    return [{**GOOD_USER, "name": f"User {i}"} for i in range(n)]


def test_parse_many_array() -> None:
    records = _users(3)
    verdicts = SchemaSpec.of(USERS).parse_many(json.dumps(records), 3)
    assert [v.record for v in verdicts] == records


def test_parse_many_wrapper_object_and_fence() -> None:
    records = _users(2)
    text = "```json\n" + json.dumps({"records": records}) + "\n```"
    assert [v.record for v in SchemaSpec.of(USERS).parse_many(text, 2)] == records


def test_one_bad_element_does_not_waste_the_rest() -> None:
    records = _users(4)
    records[1]["plan"] = "gold"
    verdicts = SchemaSpec.of(USERS).parse_many(json.dumps(records), 4)
    assert [v.ok for v in verdicts] == [True, False, True, True]
    assert verdicts[1].error is not None and "$.plan" in verdicts[1].error


def test_missing_and_extra_elements() -> None:
    spec = SchemaSpec.of(USERS)
    verdicts = spec.parse_many(json.dumps(_users(2)), 4)
    assert [v.ok for v in verdicts] == [True, True, False, False]
    assert verdicts[2].error == "the output held 2 record(s) of the 4 asked for"
    assert len(spec.parse_many(json.dumps(_users(5)), 3)) == 3


def test_single_object_where_an_array_was_asked() -> None:
    verdicts = SchemaSpec.of(USERS).parse_many(json.dumps(GOOD_USER), 2)
    assert [v.ok for v in verdicts] == [True, False]


@pytest.mark.parametrize("finish", ["length", "max_tokens"])
def test_truncated_array_keeps_completed_elements(finish: str) -> None:
    records = _users(4)
    text = json.dumps(records)
    cut = text[: text.index(json.dumps(records[2])) + 40]  # inside the third record
    verdicts = SchemaSpec.of(USERS).parse_many(cut, 4, finish_reason=finish)
    assert [v.record for v in verdicts[:2]] == records[:2]
    for verdict in verdicts[2:]:
        assert verdict.record is None
        assert verdict.error is not None and "cut off at max_tokens after 2" in verdict.error


def test_truncated_wrapper_keeps_completed_elements() -> None:
    records = _users(3)
    text = json.dumps({"items": records})[:-30]
    verdicts = SchemaSpec.of(USERS).parse_many(text, 3, finish_reason="length")
    assert [v.ok for v in verdicts] == [True, True, False]


def test_parse_many_nothing_usable() -> None:
    spec = SchemaSpec.of(USERS)
    verdicts = spec.parse_many("no JSON today", 2)
    assert len(verdicts) == 2 and not any(v.ok for v in verdicts)
    assert verdicts[0].error is not None and "not a JSON array" in verdicts[0].error
    cut = spec.parse_many('{"name": "Ad', 2, finish_reason="length")
    assert all(v.error is not None and "cut off" in v.error for v in cut)
    assert "got a number" in (spec.parse_many("42", 1)[0].error or "")


def test_object_with_one_array_property_that_is_a_record() -> None:
    schema = {
        "type": "object",
        "properties": {"tags": {"type": "array", "items": {"type": "string"}}},
        "required": ["tags"],
        "additionalProperties": False,
    }
    verdicts = SchemaSpec.of(schema).parse_many('{"tags": ["a", "b"]}', 1)
    assert verdicts == [Verdict({"tags": ["a", "b"]}, None)]


def test_parse_many_model() -> None:
    text = json.dumps([GOOD_CUSTOMER, {**GOOD_CUSTOMER, "age": 3}])
    verdicts = SchemaSpec.of(Customer).parse_many(text, 2)
    assert isinstance(verdicts[0].record, Customer) and not verdicts[1].ok


@pytest.mark.parametrize("k", [0, -1, True, 1.5])
def test_parse_many_k_checked(k: Any) -> None:
    with pytest.raises(InvalidRequestError, match="k must be"):
        SchemaSpec.of(USERS).parse_many("[]", k)


# --- array_schema ---------------------------------------------------------------------------


def test_array_schema_hoists_defs() -> None:
    spec = SchemaSpec.of(Customer)
    records = [GOOD_CUSTOMER, GOOD_CUSTOMER]
    schema = spec.array_schema(2)
    assert schema["minItems"] == schema["maxItems"] == 2 and "$defs" in schema
    assert "$defs" not in schema["items"]
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    jsonschema.validate(records, schema, format_checker=checker)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(records[:1], schema)
    wrapped = spec.array_schema(2, key="records")
    jsonschema.validate({"records": records}, wrapped, format_checker=checker)
    assert wrapped["required"] == ["records"] and wrapped["additionalProperties"] is False
    SchemaSpec.of(wrapped)  # a valid schema itself


def test_array_schema_repoints_other_refs() -> None:
    tree = {
        "type": "object",
        "properties": {
            "v": {"type": "integer"},
            "kids": {"type": "array", "items": {"$ref": "#"}},
            "same": {"$ref": "#/properties/v"},
        },
        "required": ["v"],
    }
    schema = SchemaSpec.of(tree).array_schema(1, key="xs")
    value = {"xs": [{"v": 1, "same": 2, "kids": [{"v": 2, "kids": []}]}]}
    jsonschema.validate(value, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"xs": [{"v": 1, "kids": [{"v": "x"}]}]}, schema)
