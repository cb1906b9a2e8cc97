"""The mock server's OpenAI Chat Completions dialect, driven by raw aiohttp and httpx."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
import pytest

from agentic_synth.simulator import MockServer, SimConfig

KEY = "sk-test-openai-key"
AUTH = {"authorization": f"Bearer {KEY}"}
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Describe a harbor."},
]


@pytest.fixture
async def server() -> AsyncIterator[MockServer]:
    async with MockServer(SimConfig(seed=11), api_key=KEY) as srv:
        yield srv


def _events(raw: str) -> list[str]:
    lines = [line for line in raw.split("\n\n") if line]
    assert all(line.startswith("data: ") for line in lines)
    return [line[len("data: ") :] for line in lines]


async def test_chat_completion_shape(server: MockServer) -> None:
    async with httpx.AsyncClient(base_url=server.openai_url) as http:
        response = await http.post(
            "/chat/completions",
            headers=AUTH,
            json={"model": "gpt-sim", "messages": MESSAGES, "max_tokens": 500},
        )
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == "gpt-sim"
    assert isinstance(body["created"], int)
    (choice,) = body["choices"]
    assert choice["index"] == 0
    assert choice["message"]["role"] == "assistant"
    assert choice["finish_reason"] == "stop"
    content = choice["message"]["content"]
    usage = body["usage"]
    assert usage["completion_tokens"] == len(content.split())
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    headers = response.headers
    assert headers["x-request-id"].startswith("req_sim_")
    assert int(headers["x-ratelimit-limit-requests"]) > 0
    assert int(headers["x-ratelimit-remaining-requests"]) >= 0
    assert int(headers["x-ratelimit-limit-tokens"]) > 0
    assert int(headers["x-ratelimit-remaining-tokens"]) >= 0
    assert headers["x-ratelimit-reset-requests"].endswith("s")
    assert headers["x-ratelimit-reset-tokens"].endswith("s")


async def test_length_finish_with_max_completion_tokens(server: MockServer) -> None:
    async with httpx.AsyncClient(base_url=server.openai_url, headers=AUTH) as http:
        response = await http.post(
            "/chat/completions",
            json={"model": "m", "messages": MESSAGES, "max_completion_tokens": 4},
        )
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "length"
    assert len(choice["message"]["content"].split()) == 4


async def test_stream_chunks_with_usage(server: MockServer) -> None:
    payload = {
        "model": "m",
        "messages": MESSAGES,
        "max_tokens": 300,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{server.openai_url}/chat/completions", json=payload, headers=AUTH) as resp,
    ):
        assert resp.status == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        raw = await resp.text()
    data = _events(raw)
    assert data[-1] == "[DONE]"
    chunks: list[dict[str, Any]] = [json.loads(d) for d in data[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[1:-2])
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == len(content.split())
    assert all(c["usage"] is None for c in chunks[:-1])
    assert server.stats.streams_completed == 1


async def test_stream_without_usage_has_no_usage_chunk(server: MockServer) -> None:
    payload = {"model": "m", "messages": MESSAGES, "max_tokens": 20, "stream": True}
    async with httpx.AsyncClient(base_url=server.openai_url, headers=AUTH) as http:
        response = await http.post("/chat/completions", json=payload)
    chunks = [json.loads(d) for d in _events(response.text)[:-1]]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert all("usage" not in c for c in chunks)


async def test_stream_and_plain_agree() -> None:
    base = {"model": "m", "messages": MESSAGES, "max_tokens": 200}
    async with MockServer(SimConfig(seed=5)) as one, MockServer(SimConfig(seed=5)) as two:
        async with httpx.AsyncClient() as http:
            streamed = await http.post(
                f"{one.openai_url}/chat/completions", json={**base, "stream": True}
            )
            plain = await http.post(f"{two.openai_url}/chat/completions", json=base)
            repeat = await http.post(f"{two.openai_url}/chat/completions", json=base)
    chunks = [json.loads(d) for d in _events(streamed.text)[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    # Same seed and content, first sighting on each server: the same text.
    assert text == plain.json()["choices"][0]["message"]["content"]
    # The second sighting of the same content draws again.
    assert repeat.json()["choices"][0]["message"]["content"] != text


async def test_json_object_response_format(server: MockServer) -> None:
    payload = {
        "model": "m",
        "messages": MESSAGES,
        "max_tokens": 500,
        "response_format": {"type": "json_object"},
    }
    async with httpx.AsyncClient(base_url=server.openai_url, headers=AUTH) as http:
        response = await http.post("/chat/completions", json=payload)
    assert isinstance(json.loads(response.json()["choices"][0]["message"]["content"]), dict)


async def test_bearer_auth_is_checked(server: MockServer) -> None:
    async with httpx.AsyncClient(base_url=server.openai_url) as http:
        missing = await http.post("/chat/completions", json={"model": "m", "messages": MESSAGES})
        wrong = await http.post(
            "/chat/completions",
            json={"model": "m", "messages": MESSAGES},
            headers={"authorization": "Bearer sk-wrong-key-123"},
        )
    for response in (missing, wrong):
        assert response.status_code == 401
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["type"] == "invalid_request_error"
        assert KEY not in response.text
    # OpenAI's own words: no code without a key; a wrong key quoted back masked.
    assert missing.json()["error"]["code"] is None
    assert "didn't provide an API key" in missing.json()["error"]["message"]
    error = wrong.json()["error"]
    assert error["code"] == "invalid_api_key"
    assert "Incorrect API key provided: sk-*********-123." in error["message"]
    assert "sk-wrong-key-123" not in wrong.text


async def test_empty_messages_is_400(server: MockServer) -> None:
    async with httpx.AsyncClient(base_url=server.openai_url, headers=AUTH) as http:
        response = await http.post("/chat/completions", json={"model": "m", "messages": []})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "messages"


async def test_pipelined_requests_are_answered_in_order(server: MockServer) -> None:
    bodies = [
        json.dumps({"model": f"m{i}", "messages": MESSAGES, "max_tokens": 3}).encode()
        for i in range(3)
    ]
    reader, writer = await asyncio.open_connection(server.host, server.port)
    request = b"".join(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer "
        + KEY.encode()
        + b"\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%b" % (len(b), b)
        for b in bodies
    )
    writer.write(request)
    models = []
    for _ in bodies:
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        models.append(json.loads(await reader.readexactly(length))["model"])
    writer.close()
    await writer.wait_closed()
    assert models == ["m0", "m1", "m2"]


async def test_garbage_http_gets_400_and_close(server: MockServer) -> None:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(b"NOT HTTP AT ALL\r\n\r\n")
    response = await reader.read()  # until the server closes
    writer.close()
    await writer.wait_closed()
    assert response.startswith(b"HTTP/1.1 400")
    assert b"connection: close" in response


async def test_stats_endpoint_reports_counters(server: MockServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as http:
        await http.post("/v1/chat/completions", json={"model": "m", "messages": MESSAGES})
        stats = (await http.get("/_sim/stats")).json()
    assert stats["requests"]["/v1/chat/completions"] == 1
    assert stats["responses"]["200"] == 1
    assert stats["open_connections"] == 1
    assert isinstance(stats["cpu_seconds"], float) and stats["pid"] > 0
