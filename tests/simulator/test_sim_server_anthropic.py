"""The mock server against the official anthropic SDK: happy paths, auth, bad requests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anthropic
import httpx
import pytest

from agentic_synth.simulator import MockServer, SimConfig

KEY = "test-key"
MESSAGES = [{"role": "user", "content": "Write a sentence about rivers."}]


@pytest.fixture
async def server() -> AsyncIterator[MockServer]:
    async with MockServer(SimConfig(seed=7), api_key=KEY) as srv:
        yield srv


@pytest.fixture
async def client(server: MockServer) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(base_url=server.url, api_key=KEY, max_retries=0) as c:
        yield c


async def test_create_returns_a_message(client: anthropic.AsyncAnthropic) -> None:
    message = await client.messages.create(model="claude-sim", max_tokens=400, messages=MESSAGES)
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.model == "claude-sim"
    assert message.id.startswith("msg_")
    assert message.stop_reason == "end_turn"
    text = message.content[0].text  # type: ignore[union-attr]
    assert text.endswith((".", "?"))
    assert message.usage.output_tokens == len(text.split())
    assert message.usage.input_tokens == (len(MESSAGES[0]["content"]) + 3) // 4


async def test_max_tokens_cuts_the_text(client: anthropic.AsyncAnthropic) -> None:
    message = await client.messages.create(model="m", max_tokens=5, messages=MESSAGES)
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 5
    assert len(message.content[0].text.split()) == 5  # type: ignore[union-attr]


async def test_stop_sequence_is_reported(client: anthropic.AsyncAnthropic) -> None:
    plain = await client.messages.create(model="m", max_tokens=400, messages=MESSAGES)
    text = plain.content[0].text  # type: ignore[union-attr]
    word = text.split()[3]
    # Same request content plus a stop sequence is a different request: find one that stops.
    message = await client.messages.create(
        model="m", max_tokens=400, messages=MESSAGES, stop_sequences=[" the", " a", " " + word]
    )
    assert message.stop_reason == "stop_sequence"
    assert message.stop_sequence in (" the", " a", " " + word)
    assert message.stop_sequence not in message.content[0].text  # type: ignore[union-attr]


async def test_raw_stream_has_every_event_type(
    client: anthropic.AsyncAnthropic, server: MockServer
) -> None:
    stream = await client.messages.create(model="m", max_tokens=400, messages=MESSAGES, stream=True)
    types: list[str] = []
    text = ""
    async for event in stream:
        types.append(event.type)
        if event.type == "content_block_delta" and event.delta.type == "text_delta":
            text += event.delta.text
        if event.type == "message_delta":
            assert event.delta.stop_reason == "end_turn"
            assert event.usage.output_tokens == len(text.split())
    assert types[:2] == ["message_start", "content_block_start"]
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(types[2:-3]) == {"content_block_delta"}
    assert server.stats.streams_started == server.stats.streams_completed == 1


async def test_stream_text_equals_non_stream_text(client: anthropic.AsyncAnthropic) -> None:
    # A fresh server: both calls are the first sighting of their content.
    async with MockServer(SimConfig(seed=3)) as a, MockServer(SimConfig(seed=3)) as b:
        ca = anthropic.AsyncAnthropic(base_url=a.url, api_key=KEY, max_retries=0)
        cb = anthropic.AsyncAnthropic(base_url=b.url, api_key=KEY, max_retries=0)
        whole = await ca.messages.create(model="m", max_tokens=100, messages=MESSAGES)
        async with cb.messages.stream(model="m", max_tokens=100, messages=MESSAGES) as stream:
            final = await stream.get_final_message()
        assert final.content[0].text == whole.content[0].text  # type: ignore[union-attr]
        assert final.usage.output_tokens == whole.usage.output_tokens
        await ca.close()
        await cb.close()


async def test_stream_helper_collects_text(client: anthropic.AsyncAnthropic) -> None:
    async with client.messages.stream(model="m", max_tokens=30, messages=MESSAGES) as stream:
        pieces = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(pieces) == final.content[0].text  # type: ignore[union-attr]
    assert len(pieces) == -(-final.usage.output_tokens // 4)  # 4 words per delta
    assert final.usage.input_tokens > 0


async def test_system_and_content_blocks_are_accepted(client: anthropic.AsyncAnthropic) -> None:
    message = await client.messages.create(
        model="m",
        max_tokens=50,
        system=[{"type": "text", "text": "Be brief."}],
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "Hello"}]},
            {"role": "assistant", "content": "Hi."},
            {"role": "user", "content": "More."},
        ],
    )
    assert message.content[0].text  # type: ignore[union-attr]


async def test_headers_carry_request_id_and_rate_limits(client: anthropic.AsyncAnthropic) -> None:
    raw = await client.messages.with_raw_response.create(
        model="m", max_tokens=10, messages=MESSAGES
    )
    assert raw.headers["request-id"].startswith("req_sim_")
    assert raw.request_id == raw.headers["request-id"]
    for kind in ("requests", "input-tokens", "output-tokens"):
        assert int(raw.headers[f"anthropic-ratelimit-{kind}-limit"]) > 0
        assert int(raw.headers[f"anthropic-ratelimit-{kind}-remaining"]) >= 0
        assert raw.headers[f"anthropic-ratelimit-{kind}-reset"].endswith("Z")
    limit = int(raw.headers["anthropic-ratelimit-requests-limit"])
    assert int(raw.headers["anthropic-ratelimit-requests-remaining"]) == limit - 1


async def test_wrong_key_is_an_authentication_error(server: MockServer) -> None:
    async with anthropic.AsyncAnthropic(base_url=server.url, api_key="nope", max_retries=0) as c:
        with pytest.raises(anthropic.AuthenticationError) as info:
            await c.messages.create(model="m", max_tokens=10, messages=MESSAGES)
    assert info.value.status_code == 401
    assert info.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    assert "nope" not in str(info.value)


async def test_no_key_needed_when_server_has_none() -> None:
    async with MockServer() as srv, httpx.AsyncClient() as http:
        response = await http.post(
            srv.url + "/v1/messages",
            json={"model": "m", "max_tokens": 5, "messages": MESSAGES},
        )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"model": "m", "messages": MESSAGES}, "max_tokens"),
        ({"model": "m", "max_tokens": 5, "messages": []}, "messages"),
        ({"max_tokens": 5, "messages": MESSAGES}, "model"),
        ({"model": "m", "max_tokens": 0, "messages": MESSAGES}, "max_tokens"),
        ({"model": "m", "max_tokens": 5, "messages": [{"role": "robot", "content": "x"}]}, "role"),
    ],
)
async def test_invalid_requests_are_400(server: MockServer, body: object, needle: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            server.url + "/v1/messages", json=body, headers={"x-api-key": KEY}
        )
    assert response.status_code == 400
    error = response.json()
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert needle in error["error"]["message"]


async def test_bad_request_maps_to_sdk_exception(client: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.BadRequestError):
        await client.messages.create(model="m", max_tokens=5, messages=[])


async def test_unknown_path_is_404(server: MockServer) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(server.url + "/v1/nothing", json={})
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"


async def test_invalid_json_is_400(server: MockServer) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            server.url + "/v1/messages", content=b"{nope", headers={"x-api-key": KEY}
        )
    assert response.status_code == 400


async def test_keep_alive_reuses_one_connection(
    client: anthropic.AsyncAnthropic, server: MockServer
) -> None:
    for _ in range(5):
        await client.messages.create(model="m", max_tokens=5, messages=MESSAGES)
    assert server.stats.connections_total == 1
    assert server.stats.requests["/v1/messages"] == 5
    assert server.stats.responses[200] == 5
