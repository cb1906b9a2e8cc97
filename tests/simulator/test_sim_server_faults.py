"""Injected faults on the wire, as the official anthropic SDK and raw clients see them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import anthropic
import anyio
import httpx
import pytest

from agentic_synth.simulator import MockServer, SimConfig

MESSAGES = [{"role": "user", "content": "Name a color."}]


@asynccontextmanager
async def _client(**config: Any) -> AsyncIterator[tuple[MockServer, anthropic.AsyncAnthropic]]:
    async with (
        MockServer(SimConfig(**config)) as server,
        anthropic.AsyncAnthropic(
            base_url=server.url, api_key="test-key", max_retries=0, timeout=5.0
        ) as client,
    ):
        yield server, client


async def _create(client: anthropic.AsyncAnthropic, *, stream: bool, **kwargs: Any) -> str:
    if not stream:
        message = await client.messages.create(
            model="m", max_tokens=200, messages=MESSAGES, **kwargs
        )
        return message.content[0].text  # type: ignore[union-attr]
    text = ""
    events = await client.messages.create(
        model="m", max_tokens=200, messages=MESSAGES, stream=True, **kwargs
    )
    async for event in events:
        if event.type == "content_block_delta" and event.delta.type == "text_delta":
            text += event.delta.text
    return text


async def _until(condition: Any) -> None:
    """Let the server's loop callbacks run until ``condition()`` holds (bounded)."""
    for _ in range(500):
        if condition():
            return
        await anyio.sleep(0.01)
    raise AssertionError("condition never became true")


@pytest.mark.parametrize("stream", [False, True])
async def test_429_is_rate_limit_error_with_retry_after(stream: bool) -> None:
    async with _client(fault_429=1.0, retry_after=7) as (server, client):
        with pytest.raises(anthropic.RateLimitError) as info:
            await _create(client, stream=stream)
    response = info.value.response
    assert response.headers["retry-after"] == "7"
    assert response.headers["retry-after-ms"] == "7000"
    assert info.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert info.value.request_id is not None and info.value.request_id.startswith("req_sim_")
    assert "anthropic-ratelimit-requests-remaining" in response.headers
    assert server.stats.responses[429] == 1
    assert server.stats.faults["429"] == 1


async def test_fractional_retry_after() -> None:
    async with _client(fault_429=1.0, retry_after=0.25) as (_, client):
        with pytest.raises(anthropic.RateLimitError) as info:
            await _create(client, stream=False)
    assert info.value.response.headers["retry-after"] == "0.25"
    assert info.value.response.headers["retry-after-ms"] == "250"


@pytest.mark.parametrize("stream", [False, True])
async def test_500_is_internal_server_error(stream: bool) -> None:
    async with _client(fault_500=1.0) as (_, client):
        with pytest.raises(anthropic.InternalServerError) as info:
            await _create(client, stream=stream)
    assert info.value.status_code == 500
    assert info.value.body["error"]["type"] == "api_error"  # type: ignore[index]


@pytest.mark.parametrize("stream", [False, True])
async def test_529_is_overloaded(stream: bool) -> None:
    async with _client(fault_529=1.0) as (_, client):
        with pytest.raises(anthropic.APIStatusError) as info:
            await _create(client, stream=stream)
    assert info.value.status_code == 529
    assert info.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    assert "retry-after" in info.value.response.headers


@pytest.mark.parametrize("stream", [False, True])
async def test_hang_beyond_client_timeout_is_api_timeout(stream: bool) -> None:
    async with (
        MockServer(SimConfig(fault_timeout=1.0, hang=30)) as server,
        anthropic.AsyncAnthropic(
            base_url=server.url, api_key="k", max_retries=0, timeout=0.2
        ) as client,
    ):
        with pytest.raises(anthropic.APITimeoutError):
            await _create(client, stream=stream)
        assert server.stats.faults["timeout"] == 1


async def test_hang_shorter_than_timeout_answers_late() -> None:
    async with _client(fault_timeout=1.0, hang=0.05) as (server, client):
        assert await _create(client, stream=False)
    assert server.stats.responses[200] == 1


@pytest.mark.parametrize("stream", [False, True])
async def test_reset_is_connection_error(stream: bool) -> None:
    async with _client(fault_reset=1.0) as (server, client):
        with pytest.raises(anthropic.APIConnectionError) as info:
            await _create(client, stream=stream)
        assert not isinstance(info.value, anthropic.APITimeoutError)
        await _until(lambda: server.stats.open_connections == 0)
    assert not server.stats.responses


async def test_malformed_json_body_with_200() -> None:
    async with _client(fault_malformed=1.0) as (server, client):
        with pytest.raises(ValueError):  # the SDK lets json.JSONDecodeError through
            await _create(client, stream=False)
    assert server.stats.responses[200] == 1


async def test_malformed_event_in_stream() -> None:
    async with _client(fault_malformed=1.0) as (_, client):
        with pytest.raises(ValueError):
            await _create(client, stream=True)


async def test_truncated_body_is_connection_error() -> None:
    async with _client(fault_truncate=1.0) as (_, client):
        with pytest.raises(anthropic.APIConnectionError):
            await _create(client, stream=False)


async def test_truncated_stream_breaks_the_read() -> None:
    async with _client(fault_truncate=1.0) as (server, client):
        # The SDK lets its HTTP library's error through when a stream breaks mid-read.
        with pytest.raises(Exception) as info:
            await _create(client, stream=True)
        assert type(info.value).__name__ in ("RemoteProtocolError", "APIConnectionError")
        await _until(lambda: server.stats.open_connections == 0)
    assert server.stats.streams_started == 1
    assert server.stats.streams_completed == 0


async def test_truncated_stream_raw_client_sees_incomplete_payload() -> None:
    async with MockServer(SimConfig(fault_truncate=1.0)) as server, aiohttp.ClientSession() as s:
        body = {"model": "m", "max_tokens": 200, "messages": MESSAGES, "stream": True}
        async with s.post(server.url + "/v1/messages", json=body) as response:
            assert response.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.read()


async def test_error_event_inside_a_200_stream() -> None:
    async with _client(fault_stream_error=1.0) as (server, client):
        with pytest.raises(anthropic.APIStatusError) as info:
            await _create(client, stream=True)
    assert info.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    assert server.stats.responses[200] == 1


async def test_stream_error_fault_without_streaming_is_529() -> None:
    async with _client(fault_stream_error=1.0) as (_, client):
        with pytest.raises(anthropic.APIStatusError) as info:
            await _create(client, stream=False)
    assert info.value.status_code == 529


async def test_openai_error_shapes_for_faults() -> None:
    config = SimConfig(fault_429=0.5, fault_529=0.5, seed=2, retry_after=3)
    async with MockServer(config) as server, httpx.AsyncClient(base_url=server.openai_url) as c:
        statuses = set()
        for i in range(20):
            body = {"model": "m", "messages": [{"role": "user", "content": f"q{i}"}]}
            response = await c.post("/chat/completions", json=body)
            statuses.add(response.status_code)
            error = response.json()["error"]
            assert set(error) == {"message", "type", "param", "code"}
            assert response.headers["retry-after"] == "3"
            assert response.headers["x-request-id"].startswith("req_sim_")
            if response.status_code == 429:
                assert error["code"] == "rate_limit_exceeded"
            else:
                assert response.status_code == 503
                assert error["type"] == "server_error"
    assert statuses == {429, 503}


async def test_openai_error_chunk_inside_stream() -> None:
    async with MockServer(SimConfig(fault_stream_error=1.0)) as server, httpx.AsyncClient() as c:
        body = {"model": "m", "messages": MESSAGES, "stream": True, "max_tokens": 100}
        response = await c.post(server.openai_url + "/chat/completions", json=body)
    events = [e[len("data: ") :] for e in response.text.split("\n\n") if e]
    assert "[DONE]" not in events
    assert json.loads(events[-1])["error"]["code"] == "overloaded"


async def test_client_disconnect_mid_stream_is_noticed() -> None:
    config = SimConfig(tokens_per_s=200, stream_chunk_tokens=1, output_tokens=400)
    async with _client(**config.to_mapping()) as (server, client):
        events = await client.messages.create(
            model="m", max_tokens=1000, messages=MESSAGES, stream=True
        )
        seen = 0
        async for event in events:
            seen += event.type == "content_block_delta"
            if seen == 3:
                break
        await events.close()
        await _until(lambda: server.stats.streams_aborted == 1)
        assert server.stats.open_connections == 0
        assert server.stats.streams_completed == 0


async def test_stream_helper_close_early_closes_connection() -> None:
    async with _client(tokens_per_s=100, stream_chunk_tokens=1, output_tokens=300) as (
        server,
        client,
    ):
        async with client.messages.stream(model="m", max_tokens=1000, messages=MESSAGES) as s:
            async for _ in s.text_stream:
                break
        await _until(lambda: server.stats.streams_aborted == 1)


async def test_fail_first_n_then_success() -> None:
    async with _client(fail_first_n=2, fail_first_kind="529") as (server, client):
        for _ in range(2):
            with pytest.raises(anthropic.APIStatusError):
                await _create(client, stream=False)
        assert await _create(client, stream=False)
    assert server.stats.responses == {529: 2, 200: 1}


async def test_sdk_retries_recover_from_sparse_faults() -> None:
    async with (
        MockServer(SimConfig(fault_429=0.4, retry_after=0.01, seed=3)) as server,
        anthropic.AsyncAnthropic(base_url=server.url, api_key="k", max_retries=8) as client,
    ):
        for i in range(10):
            message = await client.messages.create(
                model="m", max_tokens=20, messages=[{"role": "user", "content": f"{i}"}]
            )
            assert message.content
    assert server.stats.responses[200] == 10
    assert server.stats.faults.total() > 0
