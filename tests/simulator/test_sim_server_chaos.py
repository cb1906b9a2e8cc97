"""Account, gateway and hostile-server faults on the wire: the real APIs' bodies and
headers, and HTTP-level misbehaviour served with bounded memory on the server side."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anthropic
import anyio
import httpx
import pytest

from agentic_synth._types import Request
from agentic_synth.simulator import MockServer, SimConfig, Simulator

MESSAGES = [{"role": "user", "content": "Name a color."}]
ANTHROPIC = "/v1/messages"
OPENAI = "/v1/chat/completions"
PATHS = [ANTHROPIC, OPENAI]


def _body(prompt: str = "Name a color.", *, stream: bool = False) -> dict[str, Any]:
    return {
        "model": "m",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": prompt}],
        "stream": stream,
    }


@asynccontextmanager
async def _http(**config: Any) -> AsyncIterator[tuple[MockServer, httpx.AsyncClient]]:
    async with (
        MockServer(SimConfig(**config)) as server,
        httpx.AsyncClient(base_url=server.url, timeout=5.0) as client,
    ):
        yield server, client


async def _raw(
    server: MockServer,
    path: str,
    body: dict[str, Any],
    *,
    until: Callable[[bytes], bool],
    limit: int = 1 << 22,
    wait: float = 5.0,
) -> bytes:
    """Send one request on a plain socket; read until ``until(received)``, ``limit``
    bytes, the server closing, or ``wait`` seconds: what a client without limits sees."""
    data = json.dumps(body).encode()
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(
        b"POST %b HTTP/1.1\r\nhost: sim.test\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%b" % (path.encode(), len(data), data)
    )
    parts: list[bytes] = []
    size = 0
    with anyio.move_on_after(wait):
        while size < limit:
            chunk = await reader.read(1 << 16)
            if not chunk:
                break
            parts.append(chunk)
            size += len(chunk)
            if until(b"".join(parts[-2:]) if size > (1 << 20) else b"".join(parts)):
                break
    writer.close()
    return b"".join(parts)


def _head(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and the rest of the first final (non-1xx) response in ``raw``."""
    while True:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        if status >= 200:
            headers = dict(line.split(": ", 1) for line in lines[1:])
            return status, {k.lower(): v for k, v in headers.items()}, rest
        raw = rest


def _dechunk(body: bytes) -> bytes:
    """The payload of a chunked body, up to where the bytes read so far stop."""
    out: list[bytes] = []
    at = 0
    while True:
        eol = body.find(b"\r\n", at)
        if eol < 0:
            break
        size = int(body[at:eol], 16)
        out.append(body[eol + 2 : eol + 2 + size])
        at = eol + 2 + size + 2
        if size == 0 or at > len(body):
            break
    return b"".join(out)


# -- account and gateway faults: the APIs' own answers ---------------------------------


async def test_quota_anthropic_is_the_credit_balance_400() -> None:
    async with (
        MockServer(SimConfig(fault_quota=1.0)) as server,
        anthropic.AsyncAnthropic(base_url=server.url, api_key="k", max_retries=0) as client,
    ):
        with pytest.raises(anthropic.BadRequestError) as info:
            await client.messages.create(model="m", max_tokens=20, messages=MESSAGES)
    error = info.value.body["error"]  # type: ignore[index]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("Your credit balance is too low to access the Anthropic API")
    assert server.stats.faults["quota"] == 1


async def test_quota_openai_is_429_insufficient_quota_without_retry_after() -> None:
    async with _http(fault_quota=1.0) as (_, client):
        response = await client.post(OPENAI, json=_body())
    assert response.status_code == 429
    assert "retry-after" not in response.headers
    assert response.json() == {
        "error": {
            "message": "You exceeded your current quota, please check your plan and billing "
            "details. For more information on this error, read the docs: "
            "https://platform.openai.com/docs/guides/error-codes/api-errors.",
            "type": "insufficient_quota",
            "param": None,
            "code": "insufficient_quota",
        }
    }


@pytest.mark.parametrize("path", PATHS)
async def test_quota_share_hits_about_that_share(path: str) -> None:
    async with _http(fault_quota=0.3, seed=4) as (server, client):
        for i in range(200):
            await client.post(path, json=_body(f"q{i}"))
    assert 30 <= server.stats.faults["quota"] <= 90


async def test_not_found_names_the_model_like_each_api() -> None:
    async with _http(fault_not_found=1.0) as (_, client):
        first = await client.post(ANTHROPIC, json={**_body(), "model": "claude-nope"})
        second = await client.post(OPENAI, json={**_body(), "model": "gpt-nope"})
    assert first.status_code == second.status_code == 404
    assert first.json()["error"] == {"type": "not_found_error", "message": "model: claude-nope"}
    assert second.json()["error"] == {
        "message": "The model `gpt-nope` does not exist or you do not have access to it.",
        "type": "invalid_request_error",
        "param": None,
        "code": "model_not_found",
    }


async def test_not_found_through_the_sdk() -> None:
    async with (
        MockServer(SimConfig(fault_not_found=1.0)) as server,
        anthropic.AsyncAnthropic(base_url=server.url, api_key="k", max_retries=0) as client,
    ):
        with pytest.raises(anthropic.NotFoundError):
            await client.messages.create(model="m", max_tokens=20, messages=MESSAGES, stream=True)


@pytest.mark.parametrize("path", PATHS)
async def test_forbidden_blocks_the_same_prompts_every_time(path: str) -> None:
    config = SimConfig(forbidden=0.1, seed=3)
    prompts = [f"prompt number {i}" for i in range(200)]
    expected = {p for p in prompts if Simulator(config).is_forbidden(p)}
    assert 5 <= len(expected) <= 40
    async with _http(**config.to_mapping()) as (server, client):
        for _ in range(2):  # a retry of a blocked prompt is blocked again
            blocked = set()
            for prompt in prompts:
                response = await client.post(path, json=_body(prompt))
                assert response.status_code in (200, 403)
                if response.status_code == 403:
                    blocked.add(prompt)
            assert blocked == expected
    assert server.stats.faults["forbidden"] == 2 * len(expected)


async def test_forbidden_bodies() -> None:
    async with _http(forbidden=1.0) as (_, client):
        first = await client.post(ANTHROPIC, json=_body())
        second = await client.post(OPENAI, json=_body())
    assert first.status_code == second.status_code == 403
    assert first.json()["error"]["type"] == "permission_error"
    assert second.json()["error"]["code"] == "content_policy_violation"


async def test_forbidden_prompts_do_not_count_as_arrivals() -> None:
    """A gateway block never reaches the model: fail_first_n counts what does."""
    config = SimConfig(forbidden=0.5, seed=1, fail_first_n=3)
    sim = Simulator(config)
    prompts = [f"p{i}" for i in range(40)]
    allowed = [p for p in prompts if not sim.is_forbidden(p)]
    async with _http(**config.to_mapping()) as (server, client):
        statuses = [(await client.post(ANTHROPIC, json=_body(p))).status_code for p in prompts]
    assert [s for s in statuses if s != 403] == [500, 500, 500] + [200] * (len(allowed) - 3)
    assert server.stats.faults["500"] == 3


@pytest.mark.parametrize("path", PATHS)
async def test_unauthorized_answers_401_to_every_request(path: str) -> None:
    async with _http(unauthorized=True) as (server, client):
        responses = [
            await client.post(path, json=_body(f"q{i}"), headers={"authorization": "Bearer sk-x"})
            for i in range(5)
        ]
    assert {r.status_code for r in responses} == {401}
    assert server.stats.faults["unauthorized"] == 5
    error = responses[0].json()["error"]
    assert (error["type"], error.get("code")) in (
        ("authentication_error", None),
        ("invalid_request_error", "invalid_api_key"),
    )


async def test_wrong_key_through_the_sdk_is_the_same_401_as_a_required_key() -> None:
    async with (
        MockServer(SimConfig(unauthorized=True)) as server,
        anthropic.AsyncAnthropic(base_url=server.url, api_key="k", max_retries=0) as client,
    ):
        with pytest.raises(anthropic.AuthenticationError) as info:
            await client.messages.create(model="m", max_tokens=20, messages=MESSAGES)
    assert info.value.body["error"] == {  # type: ignore[index]
        "type": "authentication_error",
        "message": "invalid x-api-key",
    }


@pytest.mark.parametrize("path", PATHS)
async def test_redirect_defaults_to_the_same_url_over_https(path: str) -> None:
    async with _http(fault_redirect=1.0) as (server, client):
        response = await client.post(path, json=_body())
    assert response.status_code == 307
    assert response.headers["location"] == f"https://{server.host}:{server.port}{path}"
    assert response.headers["content-type"] == "text/html"
    assert "307 Temporary Redirect" in response.text


async def test_redirect_status_and_location_are_configurable() -> None:
    config = {"fault_redirect": 1.0, "redirect_status": 301, "redirect_location": "https://x/y"}
    async with _http(**config) as (_, client):
        response = await client.post(ANTHROPIC, json=_body())
    assert (response.status_code, response.headers["location"]) == (301, "https://x/y")


@pytest.mark.parametrize("path", PATHS)
async def test_long_retry_after(path: str) -> None:
    async with _http(fault_long_retry_after=1.0, long_retry_after=60) as (server, client):
        response = await client.post(path, json=_body())
    assert response.status_code == 429
    assert (response.headers["retry-after"], response.headers["retry-after-ms"]) == ("60", "60000")
    assert server.stats.faults["long_retry_after"] == 1


@pytest.mark.parametrize("path", PATHS)
async def test_no_retry_is_a_500_with_x_should_retry_false(path: str) -> None:
    async with _http(fault_no_retry=1.0) as (_, client):
        response = await client.post(path, json=_body())
    assert response.status_code == 500
    assert response.headers["x-should-retry"] == "false"


async def test_sdk_obeys_x_should_retry_false() -> None:
    async with (
        MockServer(SimConfig(fault_no_retry=1.0)) as server,
        anthropic.AsyncAnthropic(base_url=server.url, api_key="k", max_retries=3) as client,
    ):
        with pytest.raises(anthropic.InternalServerError):
            await client.messages.create(model="m", max_tokens=20, messages=MESSAGES)
    assert server.stats.requests[ANTHROPIC] == 1


async def test_fail_first_n_with_529_then_success_on_openai() -> None:
    async with _http(fail_first_n=2, fail_first_kind="529") as (server, client):
        statuses = [(await client.post(OPENAI, json=_body(f"q{i}"))).status_code for i in range(4)]
    assert statuses == [503, 503, 200, 200]
    assert server.stats.faults["529"] == 2


# -- hostile servers -------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_interim_responses_come_before_a_normal_answer(stream: bool) -> None:
    async with _http(fault_interim_1xx=1.0) as (server, _):
        raw = await _raw(
            server,
            ANTHROPIC,
            _body(stream=stream),
            until=lambda b: b.endswith(b"0\r\n\r\n" if stream else b"}"),
        )
    assert raw.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: ")
    status, _, body = _head(raw)
    assert status == 200
    assert (b"message_stop" in body) if stream else json.loads(body)["type"] == "message"


async def test_interim_responses_through_the_sdk() -> None:
    async with (
        MockServer(SimConfig(fault_interim_1xx=1.0)) as server,
        anthropic.AsyncAnthropic(base_url=server.url, api_key="k", max_retries=0) as client,
    ):
        message = await client.messages.create(model="m", max_tokens=20, messages=MESSAGES)
    assert message.content


@pytest.mark.parametrize("stream", [False, True])
async def test_huge_header_then_the_normal_answer(stream: bool) -> None:
    size = 300_000
    async with _http(fault_huge_headers=1.0, huge_header_bytes=size) as (server, _):
        raw = await _raw(
            server,
            OPENAI,
            _body(stream=stream),
            until=lambda b: b.endswith(b"0\r\n\r\n" if stream else b"}"),
        )
    status, headers, body = _head(raw)
    assert status == 200
    assert headers["x-sim-padding"] == "a" * size
    assert (b"[DONE]" in body) if stream else json.loads(body)["object"] == "chat.completion"


@pytest.mark.parametrize("path", PATHS)
async def test_huge_body_of_a_given_size_is_valid_json(path: str) -> None:
    size = 3_000_000
    async with _http(fault_huge_body=1.0, huge_body_bytes=size) as (server, client):
        response = await client.post(path, json=_body())
    assert len(response.content) == size
    data = response.json()
    text = (
        data["content"][0]["text"]
        if path == ANTHROPIC
        else data["choices"][0]["message"]["content"]
    )
    assert set(text) == {"a"}
    assert server.stats.faults["huge_body"] == 1


async def test_huge_stream_of_a_given_size_ends_properly() -> None:
    size = 2_000_000
    async with _http(fault_huge_body=1.0, huge_body_bytes=size) as (server, _):
        raw = await _raw(
            server, ANTHROPIC, _body(stream=True), until=lambda b: b.endswith(b"0\r\n\r\n")
        )
    _, headers, body = _head(raw)
    assert headers["content-type"].startswith("text/event-stream")
    assert size <= len(body) < size + 200_000
    assert body.rstrip().endswith(b"0")  # the terminating chunk
    assert b"event: message_stop" in body[-400:]


@pytest.mark.parametrize("path", PATHS)
async def test_endless_body_never_ends(path: str) -> None:
    limit = 8 << 20
    async with _http(fault_huge_body=1.0) as (server, _):
        raw = await _raw(server, path, _body(), until=lambda b: False, limit=limit)
    _, headers, _ = _head(raw)
    assert headers["transfer-encoding"] == "chunked"
    assert len(raw) >= limit  # the client stopped reading, not the server sending


@pytest.mark.parametrize("stream", [False, True])
async def test_endless_sse_line_has_no_line_break(stream: bool) -> None:
    limit = 4 << 20
    async with _http(fault_endless_sse_line=1.0) as (server, _):
        raw = await _raw(
            server, ANTHROPIC, _body(stream=stream), until=lambda b: False, limit=limit
        )
    _, headers, body = _head(raw)
    assert headers["content-type"].startswith("text/event-stream")
    assert len(raw) >= limit
    last_line = _dechunk(body).rsplit(b"\n", 1)[-1]
    assert last_line.startswith(b'data: {"type":"content_block_delta"')
    assert len(last_line) > 3 << 20


@pytest.mark.parametrize("stream", [False, True])
async def test_silent_stream_sends_headers_then_nothing(stream: bool) -> None:
    async with _http(fault_silent_stream=1.0) as (server, _):
        raw = await _raw(server, OPENAI, _body(stream=stream), until=lambda b: False, wait=0.3)
        assert server.stats.open_connections == 1  # held open, not closed
    status, headers, body = _head(raw)
    assert status == 200 and body == b""
    assert headers["content-type"].startswith("text/event-stream" if stream else "application/json")


@pytest.mark.parametrize("stream", [False, True])
async def test_trickle_sends_a_byte_at_a_time(stream: bool) -> None:
    tick = b"1\r\n\n\r\n" if stream else b"1\r\n \r\n"
    async with _http(fault_trickle=1.0, trickle_interval=0.01) as (server, _):
        raw = await _raw(
            server, ANTHROPIC, _body(stream=stream), until=lambda b: b.count(tick) >= 3
        )
    _, _, body = _head(raw)
    assert body.count(tick) >= 3
    if stream:
        assert b"event: message_start" in body


async def test_hostile_answer_to_a_client_that_stops_reading_stays_bounded() -> None:
    """An endless body to a client that reads nothing: the server pauses instead of
    buffering (memory bounded), and frees everything when the client goes."""
    async with MockServer(SimConfig(fault_huge_body=1.0)) as server:
        data = json.dumps(_body()).encode()
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(
            b"POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n%b"
            % (len(data), data)
        )
        (conn,) = server._connections
        with anyio.fail_after(10):
            while not conn.paused:  # noqa: ASYNC110 (a server flag)
                await anyio.sleep(0.01)
        await anyio.sleep(0.05)
        assert conn.transport is not None
        assert conn.transport.get_write_buffer_size() < 4 << 20
        writer.close()
        with anyio.fail_after(10):
            while server.stats.open_connections:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        assert conn.pump is None
        del reader


async def test_normal_requests_on_other_connections_go_on_during_a_hostile_answer() -> None:
    """One endless answer must not starve the event loop for everyone else."""
    config = SimConfig(fault_huge_body=0.5, seed=2)
    prompts = [f"p{i}" for i in range(200)]
    hostile = next(p for p in prompts if _first_fault(config, p))
    others = [p for p in prompts if not _first_fault(config, p)]
    async with MockServer(config) as server, httpx.AsyncClient(base_url=server.url) as client:

        async def endless_reader() -> None:
            await _raw(server, ANTHROPIC, _body(hostile), until=lambda b: False, wait=10.0)

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(endless_reader)
                while not server.stats.faults["huge_body"]:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
                statuses = [
                    (await client.post(ANTHROPIC, json=_body(p))).status_code for p in others
                ]
                tg.cancel_scope.cancel()
    assert len(others) > 50 and set(statuses) == {200}


def _first_fault(config: SimConfig, prompt: str) -> str | None:
    """The fault ``prompt``'s first attempt hits on a fresh server."""
    request = Request(messages=[{"role": "user", "content": prompt}], max_tokens=50)
    return Simulator(config).decide(request).fault
