"""Invalid and truncated JSON answers at a given rate, for testing correction loops."""

from __future__ import annotations

import argparse
import json
import random
from typing import Any

import anthropic
import httpx
import jsonschema
import pytest

from agentic_synth._exceptions import ConfigurationError
from agentic_synth._types import Message, Request
from agentic_synth.datasets._schema import SchemaSpec
from agentic_synth.providers.sim import SimProvider
from agentic_synth.simulator import (
    FAULT_KINDS,
    MockServer,
    SimConfig,
    Simulator,
    add_mock_server_arguments,
    config_from_args,
    generate_json,
)
from agentic_synth.simulator._config import SCHEMA_FAULTS
from agentic_synth.simulator._corrupt import PROSE, corrupt

FORMAT_CHECKER = jsonschema.Draft202012Validator.FORMAT_CHECKER

RECORD = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "code": {"type": "string", "pattern": "^[A-Z]{3}-\\d{3}$"},
        "name": {"type": "string", "minLength": 2},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "plan": {"enum": ["free", "pro"]},
        "nick": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
    },
    "required": ["id", "code", "name", "age", "plan"],
    "additionalProperties": False,
}
N = 2000


def _request(i: int, schema: Any = RECORD, messages: list[Message] | None = None) -> Request:
    return Request(
        messages=messages or [{"role": "user", "content": f"record {i}"}],
        max_tokens=4000,
        json_schema=schema,
    )


def _valid(text: str, schema: Any = RECORD) -> bool:
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return jsonschema.Draft202012Validator(schema, format_checker=FORMAT_CHECKER).is_valid(value)


def test_kinds_and_flags_exist() -> None:
    assert FAULT_KINDS[-2:] == SCHEMA_FAULTS == ("invalid_output", "truncated_output")
    parser = argparse.ArgumentParser()
    add_mock_server_arguments(parser)
    args = parser.parse_args(["--fault-invalid-output", "0.3", "--fault-truncated-output", "0.1"])
    config = config_from_args(args)
    assert config.fault_invalid_output == 0.3 and config.fault_truncated_output == 0.1
    assert SimConfig.from_mapping(config.to_mapping()) == config
    aliased = SimConfig.from_mapping({"invalid_output": 0.3, "truncated_output": 0.1})
    assert aliased == config and (aliased.invalid_output, aliased.truncated_output) == (0.3, 0.1)
    with pytest.raises(ConfigurationError, match="not both"):
        SimConfig.from_mapping({"invalid_output": 0.3, "fault_invalid_output": 0.3})
    with pytest.raises(ConfigurationError, match="fault_invalid_output"):
        SimConfig(fault_invalid_output=1.5)
    with pytest.raises(ConfigurationError, match="add up"):
        SimConfig(fault_invalid_output=0.6, fault_truncated_output=0.6)


def test_invalid_output_rate_and_every_injection_is_invalid() -> None:
    simulator = Simulator(SimConfig(seed=7, fault_invalid_output=0.3))
    injected = 0
    for i in range(N):
        outcome = simulator.decide(_request(i))
        assert outcome.fault is None and outcome.finish == "end"
        if outcome.injected == "invalid_output":
            injected += 1
            assert not _valid(outcome.text)
        else:
            assert outcome.injected is None and _valid(outcome.text)
    assert abs(injected / N - 0.3) < 0.04  # 4 standard deviations


def test_truncated_output_rate_and_shape() -> None:
    simulator = Simulator(SimConfig(seed=8, fault_truncated_output=0.25))
    spec = SchemaSpec.of(RECORD)
    cut = 0
    for i in range(N):
        outcome = simulator.decide(_request(i))
        if outcome.injected == "truncated_output":
            cut += 1
            assert outcome.finish == "max_tokens"
            assert outcome.output_tokens == (len(outcome.text) + 3) // 4
            with pytest.raises(ValueError):
                json.loads(outcome.text)
            assert not spec.parse(outcome.text, finish_reason="length").ok
        else:
            assert outcome.finish == "end" and _valid(outcome.text)
    assert abs(cut / N - 0.25) < 0.04


def test_violations_are_the_realistic_kinds() -> None:
    """Across draws, each kind of mistake appears: missing key, wrong type, enum, pattern."""
    kinds: set[str] = set()
    for seed in range(300):
        rng = random.Random(seed)
        value = generate_json(RECORD, rng)
        broken = corrupt(value, RECORD, rng)
        assert broken is not None and not _valid(json.dumps(broken))
        if not isinstance(broken, dict):
            kinds.add("root")  # the record sent as a JSON string
            continue
        missing = set(value) - set(broken)
        changed = [k for k in value if k in broken and broken[k] != value[k]]
        if missing:
            kinds.add("missing")
        for key in changed:
            if type(broken[key]) is not type(value[key]):
                kinds.add("type")
            elif key == "plan":
                kinds.add("enum")
            elif key == "code":
                kinds.add("pattern")
            elif key == "tags":
                kinds.add("nested")
    assert {"missing", "type", "enum", "pattern", "nested", "root"} <= kinds


def test_schema_without_a_sure_mistake_answers_prose() -> None:
    simulator = Simulator(SimConfig(fault_invalid_output=1.0))
    outcome = simulator.decide(_request(0, schema={}))
    assert outcome.text == PROSE and outcome.injected == "invalid_output"
    assert not SchemaSpec.of({"type": "object"}).parse(outcome.text).ok


def test_requests_without_a_schema_are_untouched() -> None:
    plain = Simulator(SimConfig(seed=2, fault_500=0.1))
    loaded = Simulator(
        SimConfig(seed=2, fault_500=0.1, fault_invalid_output=0.5, fault_truncated_output=0.4)
    )
    for i in range(300):
        request = Request(messages=[{"role": "user", "content": f"hi {i}"}], max_tokens=100)
        a, b = plain.decide(request), loaded.decide(request)
        assert (a.fault, a.text, a.finish) == (b.fault, b.text, b.finish)
        assert b.injected is None


def test_deterministic_under_the_seed() -> None:
    config = SimConfig(seed=5, fault_invalid_output=0.3, fault_truncated_output=0.2)
    a, b = Simulator(config), Simulator(config)
    assert [a.decide(_request(i)) for i in range(200)] == [
        b.decide(_request(i)) for i in range(200)
    ]


def test_a_correction_turn_is_an_independent_draw() -> None:
    """The decision hangs on the whole conversation, so a correction can succeed: of the
    conversations whose first answer was invalid, about the same share fail again."""
    simulator = Simulator(SimConfig(seed=9, fault_invalid_output=0.5))
    first_bad = second_bad = 0
    for i in range(N):
        messages: list[Message] = [{"role": "user", "content": f"record {i}"}]
        first = simulator.decide(_request(i, messages=messages))
        if first.injected is None:
            continue
        first_bad += 1
        messages = [
            *messages,
            {"role": "assistant", "content": first.text},
            {"role": "user", "content": "That output is not valid: ... Reply with the JSON."},
        ]
        second = simulator.decide(_request(i, messages=messages))
        second_bad += second.injected is not None
    assert abs(first_bad / N - 0.5) < 0.05
    assert abs(second_bad / first_bad - 0.5) < 0.07
    # a fresh restart (the same first request again) is a new draw too
    again = [simulator.decide(_request(0)).injected for _ in range(40)]
    assert None in again and "invalid_output" in again


def test_k_records_cut_keeps_the_complete_ones() -> None:
    spec = SchemaSpec.of(RECORD)
    schema = spec.array_schema(6)
    simulator = Simulator(SimConfig(seed=4, fault_truncated_output=1.0))
    partial = 0
    for i in range(100):
        outcome = simulator.decide(_request(i, schema=schema))
        verdicts = spec.parse_many(outcome.text, 6, finish_reason="length")
        good = [v.ok for v in verdicts]
        assert good == sorted(good, reverse=True)  # the complete ones come first
        assert not all(good)
        partial += 0 < sum(good)
    assert partial > 50


@pytest.mark.parametrize("key", [None, "records"])
def test_k_records_every_record_broken(key: str | None) -> None:
    """One mistake in each record: the share of invalid records is the injected rate
    whatever per_call is."""
    spec = SchemaSpec.of(RECORD)
    schema = spec.array_schema(5, key=key)
    simulator = Simulator(SimConfig(seed=6, fault_invalid_output=0.3))
    bad = 0
    for i in range(400):
        outcome = simulator.decide(_request(i, schema=schema))
        verdicts = spec.parse_many(outcome.text, 5)
        broken = sum(not v.ok for v in verdicts)
        assert broken == (5 if outcome.injected else 0)
        bad += broken
    assert abs(bad / 2000 - 0.3) < 0.1


# --- the in-process provider and both wires -----------------------------------------------


async def test_sim_provider_honours_both() -> None:
    provider = SimProvider(SimConfig(seed=1, fault_invalid_output=0.5, fault_truncated_output=0.5))
    finishes = set()
    for i in range(40):
        response = await provider.complete("sim", _request(i))
        assert not _valid(response.text)
        finishes.add(response.finish_reason)
    assert finishes == {"end_turn", "max_tokens"}


async def test_mock_server_anthropic_wire() -> None:
    config = SimConfig(seed=3, fault_truncated_output=1.0)
    async with (
        MockServer(config) as server,
        anthropic.AsyncAnthropic(base_url=server.url, api_key="k", max_retries=0) as client,
    ):
        for i in range(5):
            message = await client.messages.create(
                model="m",
                max_tokens=4000,
                messages=[{"role": "user", "content": f"record {i}"}],
                output_config={"format": {"type": "json_schema", "schema": RECORD}},
            )
            assert message.stop_reason == "max_tokens"
            assert not _valid(message.content[0].text)  # type: ignore[union-attr]
        assert server.stats.faults == {}  # a content fault is a normal 200


@pytest.mark.parametrize("stream", [False, True])
async def test_mock_server_openai_wire(stream: bool) -> None:
    config = SimConfig(seed=3, fault_invalid_output=0.5, fault_truncated_output=0.5)
    seen: set[tuple[bool, str]] = set()
    async with MockServer(config) as server, httpx.AsyncClient() as http:
        for i in range(30):
            body = {
                "model": "m",
                "messages": [{"role": "user", "content": f"record {i}"}],
                "max_tokens": 4000,
                "stream": stream,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "record", "schema": RECORD},
                },
            }
            response = await http.post(server.openai_url + "/chat/completions", json=body)
            assert response.status_code == 200
            if stream:
                events = [
                    json.loads(e[6:])
                    for e in response.text.split("\n\n")
                    if e and e != "data: [DONE]"
                ]
                choices = [e["choices"][0] for e in events if e["choices"]]
                text = "".join(c["delta"].get("content") or "" for c in choices)
                finish = next(c["finish_reason"] for c in choices if c["finish_reason"])
            else:
                choice = response.json()["choices"][0]
                text, finish = choice["message"]["content"], choice["finish_reason"]
            seen.add((_valid(text), finish))
    assert seen == {(False, "stop"), (False, "length")}
