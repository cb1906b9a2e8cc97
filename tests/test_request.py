from __future__ import annotations

import pytest

from agentic_synth import InvalidRequestError
from agentic_synth._fingerprint import request_fingerprint, request_fingerprint_hex
from agentic_synth._request import GenerationParams, build_request, canonical_bytes

P = GenerationParams()


def test_string_prompt_becomes_one_user_message() -> None:
    r = build_request("hello", P)
    assert r.messages == [{"role": "user", "content": "hello"}]
    assert r.max_tokens == 1024


def test_messages_and_dict_inputs() -> None:
    msgs = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ]
    assert build_request(msgs, P).messages == msgs
    r = build_request({"prompt": "x", "max_tokens": 7, "system": "be brief"}, P)
    assert (r.max_tokens, r.system) == (7, "be brief")
    assert build_request({"messages": msgs}, P).messages == msgs


@pytest.mark.parametrize(
    ("item", "fix"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ([], "at least one"),
        ([{"role": "system", "content": "x"}], "only system text"),
        (
            [{"role": "user", "content": "a"}, {"role": "system", "content": "x"}],
            "system text first",
        ),
        ([{"role": "bot", "content": "x"}], "'user' or 'assistant'"),
        ([{"role": "assistant", "content": "x"}], "first message"),
        ([{"role": "user", "content": ""}], "non-empty"),
        ({"prompt": "a", "messages": []}, "exactly one"),
        ({"text": "a"}, "exactly one"),
        ({"prompt": "a", "max_tokens": 0}, "max_tokens must be > 0"),
        ({"prompt": "a", "colour": 1}, "unknown generation parameter"),
        (42, "prompt string"),
        (b"bytes", "prompt string"),
    ],
)
def test_bad_inputs_name_the_fix(item: object, fix: str) -> None:
    with pytest.raises(InvalidRequestError, match=fix):
        build_request(item, P)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "fix"),
    [
        ({"max_tokens": 0}, "max_tokens must be > 0"),
        ({"max_tokens": -5}, "max_tokens must be > 0"),
        ({"max_tokens": 2.5}, "positive integer"),
        ({"max_tokens": True}, "positive integer"),
        ({"temperature": 3.0}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"timeout": -1.0}, "timeout"),
        ({"stop": [""]}, "stop"),
        ({"json_schema": "object"}, "json_schema"),
    ],
)
def test_bad_params(kwargs: dict[str, object], fix: str) -> None:
    with pytest.raises(InvalidRequestError, match=fix):
        GenerationParams.from_kwargs(P, **kwargs)


def test_params_override_keeps_base() -> None:
    base = GenerationParams.from_kwargs(max_tokens=10, system="s")
    p = GenerationParams.from_kwargs(base, temperature=0.5, stop="END")
    assert (p.max_tokens, p.system, p.temperature, p.stop) == (10, "s", 0.5, ("END",))


def test_fingerprint_ignores_timeout_but_not_content() -> None:
    a = build_request("hello", P)
    b = build_request({"prompt": "hello", "timeout": 5.0}, P)
    c = build_request("hello!", P)
    assert request_fingerprint(a) == request_fingerprint(b)
    assert request_fingerprint(a) != request_fingerprint(c)
    assert request_fingerprint(a, "sim:a") != request_fingerprint(a, "sim:b")
    assert len(request_fingerprint(a)) == 16
    assert request_fingerprint_hex(a) == request_fingerprint(a).hex()
    assert canonical_bytes(a) == canonical_bytes(b)


def test_canonical_bytes_are_unambiguous_and_take_any_text() -> None:
    # a separator inside content cannot make two different requests collide
    a = build_request([{"role": "user", "content": "x\x1ey"}], P)
    b = build_request(
        [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": "y"},
            {"role": "user", "content": "z"},
        ],
        P,
    )
    assert canonical_bytes(a) != canonical_bytes(b)
    lone = build_request("half a pair: \ud800", P)  # a lone surrogate must not raise
    assert len(request_fingerprint(lone)) == 16
    with_extra = build_request({"prompt": "hello", "extra": {"seed": 1}}, P)
    assert canonical_bytes(with_extra) != canonical_bytes(build_request("hello", P))


def test_leading_system_messages_are_hoisted_into_the_system_prompt() -> None:
    convo = [
        {"role": "system", "content": "You are terse."},
        {"role": "developer", "content": "Answer in French."},
        {"role": "user", "content": "hi"},
    ]
    r = build_request(convo, P)
    assert r.system == "You are terse.\n\nAnswer in French."
    assert r.messages == [{"role": "user", "content": "hi"}]
    # a call-wide system prompt comes first, the input's own after it
    both = build_request({"messages": convo}, GenerationParams.from_kwargs(system="Global."))
    assert both.system == "Global.\n\nYou are terse.\n\nAnswer in French."


def test_an_unreadable_input_given_as_its_error_becomes_that_error() -> None:
    bad = InvalidRequestError("line 3: not valid JSON")
    with pytest.raises(InvalidRequestError) as info:
        build_request(bad, P)  # type: ignore[arg-type]
    assert info.value is bad
