"""The OpenAI provider's request bodies, byte for byte as a server receives them.

Golden bodies pin what goes on the wire (key order, separators, UTF-8, the
tokens field for reasoning models, strict mode only for strict-eligible
schemas), on both transports.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from scripted_server import ScriptedServer, ok_handler, origin_of, scripted_for

from agentic_synth._exceptions import ConfigurationError
from agentic_synth._spec import ModelSpec
from agentic_synth._types import Request
from agentic_synth.providers import openai as openai_provider
from agentic_synth.providers._openai_strict import strict_eligible

ELIGIBLE = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": ["integer", "null"]}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
NOT_ELIGIBLE = {"type": "object", "properties": {"name": {"type": "string"}}}
HELLO = [{"role": "user", "content": "héllo"}]

GOLDEN: dict[str, tuple[str, dict[str, Any], bytes]] = {
    "plain": (
        "gpt-4o-mini",
        {},
        b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"h\xc3\xa9llo"}],'
        b'"max_tokens":32}',
    ),
    "system": (
        "gpt-4o-mini",
        {"system": "be brief"},
        b'{"model":"gpt-4o-mini","messages":[{"role":"system","content":"be brief"},'
        b'{"role":"user","content":"h\xc3\xa9llo"}],"max_tokens":32}',
    ),
    "stop": (
        "gpt-4o-mini",
        {"stop": ("END", "\n\n"), "temperature": 0.5, "top_p": 0.9},
        b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"h\xc3\xa9llo"}],'
        b'"max_tokens":32,"temperature":0.5,"top_p":0.9,"stop":["END","\\n\\n"]}',
    ),
    "schema-strict": (
        "gpt-4o-mini",
        {"json_schema": ELIGIBLE},
        b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"h\xc3\xa9llo"}],'
        b'"max_tokens":32,"response_format":{"type":"json_schema","json_schema":'
        b'{"name":"output","schema":{"type":"object","properties":{"name":{"type":"string"},'
        b'"age":{"type":["integer","null"]}},"required":["name","age"],'
        b'"additionalProperties":false},"strict":true}}}',
    ),
    "schema-not-eligible": (
        "gpt-4o-mini",
        {"json_schema": NOT_ELIGIBLE},
        b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"h\xc3\xa9llo"}],'
        b'"max_tokens":32,"response_format":{"type":"json_schema","json_schema":'
        b'{"name":"output","schema":{"type":"object","properties":{"name":{"type":"string"}}},'
        b'"strict":false}}}',
    ),
    "o3": (
        "o3-mini",
        {},
        b'{"model":"o3-mini","messages":[{"role":"user","content":"h\xc3\xa9llo"}],'
        b'"max_completion_tokens":32}',
    ),
    "gpt-5": (
        "gpt-5-mini",
        {"system": "s"},
        b'{"model":"gpt-5-mini","messages":[{"role":"system","content":"s"},'
        b'{"role":"user","content":"h\xc3\xa9llo"}],"max_completion_tokens":32}',
    ),
    "extra": (
        "gpt-4o-mini",
        {"temperature": 0.5, "extra": {"seed": 7, "logprobs": True, "temperature": 0.0}},
        b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"h\xc3\xa9llo"}],'
        b'"max_tokens":32,"temperature":0.0,"seed":7,"logprobs":true}',
    ),
    "extra-tokens-field": (
        "o3-mini",
        {"extra": {"max_tokens": 9}},
        b'{"model":"o3-mini","messages":[{"role":"user","content":"h\xc3\xa9llo"}],"max_tokens":9}',
    ),
}


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(params=openai_provider.TRANSPORTS)
async def server(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, ScriptedServer]]:
    s = scripted_for("openai-lean", ok_handler("openai-lean"))
    await s.start()
    yield request.param, s
    await s.server.close()


def provider(transport: str, server: ScriptedServer, **options: Any) -> Any:
    spec = ModelSpec(
        "openai",
        "m",
        base_url=f"{origin_of(server)}/v1",
        timeout=5.0,
        options={"transport": transport, **options},
    )
    return openai_provider.create(spec, max_connections=2)


@pytest.mark.parametrize("case", sorted(GOLDEN))
async def test_golden_bodies(case: str, server: tuple[str, ScriptedServer]) -> None:
    transport, s = server
    model, fields, expected = GOLDEN[case]
    p = provider(transport, s)
    try:
        await p.complete(model, Request(messages=HELLO, max_tokens=32, **fields))
    finally:
        await p.aclose()
    assert s.raw_bodies == [expected]


async def test_a_streamed_body_adds_only_the_stream_fields(
    server: tuple[str, ScriptedServer],
) -> None:
    transport, s = server
    p = provider(transport, s)
    try:
        [_ async for _ in p.stream("o3-mini", Request(messages=HELLO, max_tokens=32))]
    finally:
        await p.aclose()
    assert s.raw_bodies == [
        b'{"model":"o3-mini","messages":[{"role":"user","content":"h\xc3\xa9llo"}],'
        b'"max_completion_tokens":32,"stream":true,"stream_options":{"include_usage":true}}'
    ]


@pytest.mark.parametrize(
    ("field", "model", "sent"),
    [
        ("max_tokens", "o3-mini", "max_tokens"),
        ("max_completion_tokens", "gpt-4o-mini", "max_completion_tokens"),
    ],
)
async def test_the_tokens_field_can_be_chosen_per_model(
    field: str, model: str, sent: str, server: tuple[str, ScriptedServer]
) -> None:
    transport, s = server
    p = provider(transport, s, max_tokens_field=field)
    try:
        await p.complete(model, Request(messages=HELLO, max_tokens=5))
    finally:
        await p.aclose()
    body = json.loads(s.raw_bodies[0])
    assert body[sent] == 5 and len([k for k in body if k.startswith("max_")]) == 1


def test_a_bad_tokens_field_option_fails_at_configuration() -> None:
    spec = ModelSpec(
        "openai", "m", base_url="http://127.0.0.1:9/v1", options={"max_tokens_field": "n"}
    )
    with pytest.raises(ConfigurationError, match="max_tokens_field"):
        openai_provider.validate(spec)


async def test_a_schema_is_checked_once_per_schema_object(
    server: tuple[str, ScriptedServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    transport, s = server
    checks: list[object] = []

    def counting(schema: Any) -> bool:
        checks.append(schema)
        return strict_eligible(schema)

    monkeypatch.setattr(openai_provider, "strict_eligible", counting)
    p = provider(transport, s)
    try:
        for _ in range(3):
            await p.complete("m", Request(messages=HELLO, max_tokens=5, json_schema=ELIGIBLE))
        await p.complete("m", Request(messages=HELLO, max_tokens=5, json_schema=NOT_ELIGIBLE))
    finally:
        await p.aclose()
    assert checks == [ELIGIBLE, NOT_ELIGIBLE]
    strict = [json.loads(b)["response_format"]["json_schema"]["strict"] for b in s.raw_bodies]
    assert strict == [True, True, True, False]


def obj(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A strict-style object: all properties required, no others allowed."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
        **extra,
    }


def nested(depth: int) -> dict[str, Any]:
    schema = obj({"leaf": {"type": "string"}})
    for _ in range(depth - 1):
        schema = obj({"child": schema})
    return schema


@pytest.mark.parametrize(
    ("schema", "eligible"),
    [
        (ELIGIBLE, True),
        (obj({}), True),
        (obj({"tags": {"type": "array", "items": {"type": "string"}, "minItems": 1}}), True),
        (obj({"kind": {"type": "string", "enum": ["a", "b"]}}), True),
        (obj({"when": {"type": "string", "format": "date-time"}}), True),
        (obj({"n": {"type": "number", "minimum": 0, "exclusiveMaximum": 10}}), True),
        (obj({"v": {"anyOf": [{"type": "string"}, obj({"x": {"type": "integer"}})]}}), True),
        (
            obj(
                {"root": {"$ref": "#/$defs/node"}},
                **{"$defs": {"node": obj({"kids": {"type": "array", "items": {"$ref": "#"}}})}},
            ),
            True,
        ),
        (obj({"c": {"const": "x", "description": "fixed", "title": "C"}}), True),
        (nested(10), True),
        (nested(11), False),
        (NOT_ELIGIBLE, False),
        ({**obj({"a": {"type": "string"}}), "required": []}, False),
        ({**obj({"a": {"type": "string"}}), "additionalProperties": True}, False),
        (obj({"inner": {"type": "object", "properties": {"x": {"type": "string"}}}}), False),
        (obj({"s": {"type": "string", "minLength": 1}}), False),
        (obj({"s": {"type": "string", "format": "uri"}}), False),
        (obj({"s": {"type": "string", "default": "x"}}), False),
        (obj({"s": {"allOf": [{"type": "string"}]}}), False),
        (obj({"s": {"oneOf": [{"type": "string"}]}}), False),
        (obj({"t": {"type": "array", "items": [{"type": "string"}]}}), False),
        (obj({"r": {"$ref": "https://example.com/schema.json"}}), False),
        ({"anyOf": [obj({})]}, False),
        ({"type": "array", "items": {"type": "string"}}, False),
        ({**obj({}), "$schema": "https://json-schema.org/draft/2020-12/schema"}, False),
        (obj({"e": {"enum": list(range(1001))}}), False),
    ],
)
def test_strict_eligibility(schema: dict[str, Any], eligible: bool) -> None:
    assert strict_eligible(schema) is eligible
