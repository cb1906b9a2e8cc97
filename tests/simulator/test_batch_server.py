"""The mock server's batch routes on the wire: the official anthropic SDK for Message
Batches, httpx for OpenAI Files + Batch (multipart upload, output and error files)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
import pytest

from agentic_synth.simulator import MockServer, SimConfig, Simulator
from agentic_synth.simulator._anthropic_wire import AnthropicWire
from agentic_synth.simulator._batch_wire import OPENAI_MAX_REQUESTS
from agentic_synth.simulator._wire import WireError

KEY = "test-key-0123456789"


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def params(i: int, model: str = "claude-sim") -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": f"Say something about lake {i}."}],
    }


def anthropic_requests(n: int) -> list[Any]:
    return [{"custom_id": f"r{i}", "params": params(i)} for i in range(n)]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def server(clock: Clock) -> AsyncIterator[MockServer]:
    config = SimConfig(seed=11, batch_processing_time=10.0)
    async with MockServer(config, api_key=KEY, clock=clock) as srv:
        yield srv


@pytest.fixture
async def client(server: MockServer) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(base_url=server.url, api_key=KEY, max_retries=0) as c:
        yield c


@pytest.fixture
async def http(server: MockServer) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers) as c:
        yield c


# -- Anthropic ---------------------------------------------------------------------


async def test_anthropic_create_retrieve_results(
    client: anthropic.AsyncAnthropic, server: MockServer, clock: Clock
) -> None:
    batch = await client.messages.batches.create(requests=anthropic_requests(4))
    assert batch.type == "message_batch" and batch.id.startswith("msgbatch_")
    assert batch.processing_status == "in_progress"
    assert batch.request_counts.processing == 4 and batch.results_url is None
    assert (batch.expires_at - batch.created_at).total_seconds() == pytest.approx(86400)
    assert server.stats.batches_created == 1
    clock.now += 5.0
    batch = await client.messages.batches.retrieve(batch.id)
    # as documented: counts other than processing stay 0 until the batch has ended
    assert batch.processing_status == "in_progress"
    assert (batch.request_counts.processing, batch.request_counts.succeeded) == (4, 0)
    clock.now += 5.0
    batch = await client.messages.batches.retrieve(batch.id)
    assert batch.processing_status == "ended" and batch.ended_at is not None
    assert (batch.request_counts.processing, batch.request_counts.succeeded) == (0, 4)
    assert batch.results_url == f"{server.url}/v1/messages/batches/{batch.id}/results"
    online = Simulator(SimConfig(seed=11))
    found = {}
    async for line in await client.messages.batches.results(batch.id):
        assert line.result.type == "succeeded"
        found[line.custom_id] = line.result.message
    assert sorted(found) == ["r0", "r1", "r2", "r3"]
    for i in range(4):
        message = found[f"r{i}"]
        expected = online.decide(AnthropicWire().parse(params(i)).request)
        assert message.content[0].text == expected.text  # type: ignore[union-attr]
        assert message.usage.output_tokens == expected.output_tokens
        stop = {"end": "end_turn", "max_tokens": "max_tokens"}[expected.finish]
        assert message.stop_reason == stop and message.model == "claude-sim"
    assert server.stats.batches_created == 1


async def test_anthropic_errored_items_and_invalid_params(clock: Clock) -> None:
    config = SimConfig(batch_error_rate=1.0)
    async with (
        MockServer(config, clock=clock) as srv,
        anthropic.AsyncAnthropic(base_url=srv.url, api_key="k", max_retries=0) as client,
    ):
        requests = [
            {"custom_id": "good", "params": params(0)},
            {"custom_id": "bad", "params": {"model": "m", "messages": []}},
        ]
        batch = await client.messages.batches.create(requests=requests)  # type: ignore[list-item]
        results = {
            r.custom_id: r.result async for r in await client.messages.batches.results(batch.id)
        }
        assert results["good"].type == "errored" and results["bad"].type == "errored"
        assert results["good"].error.error.type in (  # type: ignore[union-attr]
            "overloaded_error",
            "api_error",
            "invalid_request_error",
        )
        bad = results["bad"].error  # type: ignore[union-attr]
        assert bad.type == "error" and bad.error.type == "invalid_request_error"
        assert "max_tokens" in bad.error.message


async def test_anthropic_cancel_list_delete(
    client: anthropic.AsyncAnthropic, server: MockServer, clock: Clock
) -> None:
    first = await client.messages.batches.create(requests=anthropic_requests(10))
    clock.now += 3.0
    canceled = await client.messages.batches.cancel(first.id)
    assert canceled.processing_status == "canceling" and canceled.cancel_initiated_at is not None
    ids = []
    for _ in range(3):
        ids.append((await client.messages.batches.create(requests=anthropic_requests(1))).id)
    with pytest.raises(anthropic.BadRequestError, match="still processing"):
        await client.messages.batches.delete(ids[0])
    ended = await client.messages.batches.retrieve(first.id)
    assert ended.processing_status == "ended"
    counts = ended.request_counts
    assert (counts.succeeded, counts.canceled, counts.processing) == (3, 7, 0)
    kinds = [r.result.type async for r in await client.messages.batches.results(first.id)]
    assert kinds.count("succeeded") == 3 and kinds.count("canceled") == 7
    # list: newest first, paginated by after_id
    page = await client.messages.batches.list(limit=2)
    assert [b.id for b in page.data] == [ids[2], ids[1]] and page.has_more
    every = [b.id async for b in client.messages.batches.list(limit=2)]
    assert every == [*reversed(ids), first.id]
    deleted = await client.messages.batches.delete(first.id)
    assert deleted.type == "message_batch_deleted" and deleted.id == first.id
    with pytest.raises(anthropic.NotFoundError):
        await client.messages.batches.retrieve(first.id)
    assert server.stats.batches_created == 4


@pytest.mark.parametrize(
    ("requests", "words"),
    [
        ([{"custom_id": "a", "params": params(0)}] * 2, "Duplicate"),
        ([{"custom_id": "has space", "params": params(0)}], "pattern"),
        ([], "at least 1"),
    ],
)
async def test_anthropic_create_refusals(
    client: anthropic.AsyncAnthropic, server: MockServer, requests: list[Any], words: str
) -> None:
    with pytest.raises(anthropic.BadRequestError, match=words) as info:
        await client.messages.batches.create(requests=requests)
    assert info.value.type == "invalid_request_error"
    assert server.stats.batches_created == 0


async def test_anthropic_unknown_batch_results_early_and_auth(
    client: anthropic.AsyncAnthropic, server: MockServer, http: httpx.AsyncClient
) -> None:
    with pytest.raises(anthropic.NotFoundError):
        await client.messages.batches.retrieve("msgbatch_nope")
    batch = await client.messages.batches.create(requests=anthropic_requests(1))
    early = await http.get(f"/v1/messages/batches/{batch.id}/results", headers={"x-api-key": KEY})
    assert early.status_code == 400
    assert early.json()["error"]["type"] == "invalid_request_error"
    async with anthropic.AsyncAnthropic(base_url=server.url, api_key="wrong", max_retries=0) as c:
        with pytest.raises(anthropic.AuthenticationError):
            await c.messages.batches.retrieve(batch.id)
    # an OpenAI batch id is not an Anthropic one
    assert (await http.get("/v1/batches/" + batch.id)).status_code == 404


async def test_anthropic_too_many_requests(clock: Clock) -> None:
    from agentic_synth.simulator import _batch_wire

    async with MockServer(SimConfig(), clock=clock) as srv:
        old = _batch_wire.ANTHROPIC_MAX_REQUESTS
        _batch_wire.ANTHROPIC_MAX_REQUESTS = 2
        try:
            async with httpx.AsyncClient(base_url=srv.url) as http:
                answer = await http.post(
                    "/v1/messages/batches", json={"requests": anthropic_requests(3)}
                )
        finally:
            _batch_wire.ANTHROPIC_MAX_REQUESTS = old
    assert answer.status_code == 400 and "at most 2" in answer.json()["error"]["message"]


# -- OpenAI ------------------------------------------------------------------------


def openai_line(i: int, **change: Any) -> dict[str, Any]:
    line = {
        "custom_id": f"q{i}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "gpt-sim",
            "max_tokens": 80,
            "messages": [{"role": "user", "content": f"Describe hill {i}."}],
        },
    }
    line.update(change)
    return line


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


async def upload(http: httpx.AsyncClient, data: bytes, purpose: str = "batch") -> httpx.Response:
    return await http.post(
        "/v1/files", data={"purpose": purpose}, files={"file": ("in.jsonl", data)}
    )


async def create(http: httpx.AsyncClient, file_id: str, **change: Any) -> httpx.Response:
    body = {
        "input_file_id": file_id,
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
    }
    body.update(change)
    return await http.post("/v1/batches", json=body)


async def test_openai_upload_create_poll_download(
    http: httpx.AsyncClient, server: MockServer, clock: Clock
) -> None:
    data = jsonl([openai_line(i) for i in range(4)] + [openai_line(9, body={"model": "gpt-sim"})])
    answer = await upload(http, data)
    assert answer.status_code == 200
    file = answer.json()
    assert file["object"] == "file" and file["purpose"] == "batch" and file["bytes"] == len(data)
    assert (await http.get(f"/v1/files/{file['id']}")).json()["id"] == file["id"]
    assert (await http.get(f"/v1/files/{file['id']}/content")).content == data
    batch = (await create(http, file["id"], metadata={"job": "x"})).json()
    assert batch["object"] == "batch" and batch["status"] == "validating"
    assert batch["request_counts"] == {"total": 5, "completed": 0, "failed": 0}
    assert batch["metadata"] == {"job": "x"} and batch["completion_window"] == "24h"
    assert server.stats.batches_created == 1
    clock.now += 4.0
    batch = (await http.get(f"/v1/batches/{batch['id']}")).json()
    assert batch["status"] == "in_progress"
    assert batch["request_counts"]["completed"] == 2  # moves as items finish
    clock.now += 6.0
    batch = (await http.get(f"/v1/batches/{batch['id']}")).json()
    assert batch["status"] == "completed" and batch["completed_at"] is not None
    assert batch["request_counts"] == {"total": 5, "completed": 4, "failed": 1}
    output = await http.get(f"/v1/files/{batch['output_file_id']}/content")
    lines = [json.loads(line) for line in output.content.splitlines()]
    assert sorted(line["custom_id"] for line in lines) == ["q0", "q1", "q2", "q3"]
    for line in lines:
        assert line["id"].startswith("batch_req_") and line["error"] is None
        response = line["response"]
        assert response["status_code"] == 200
        assert response["body"]["object"] == "chat.completion"
        assert response["body"]["choices"][0]["finish_reason"] in ("stop", "length")
        assert response["body"]["usage"]["completion_tokens"] > 0
    errors = await http.get(f"/v1/files/{batch['error_file_id']}/content")
    (error,) = [json.loads(line) for line in errors.content.splitlines()]
    assert error["custom_id"] == "q9" and error["error"] is None
    assert error["response"]["status_code"] == 400
    assert error["response"]["body"]["error"]["type"] == "invalid_request_error"
    listed = (await http.get("/v1/batches")).json()
    assert listed["object"] == "list" and listed["data"][0]["id"] == batch["id"]


async def test_openai_cancel_puts_unrun_items_in_the_error_file(
    http: httpx.AsyncClient, clock: Clock
) -> None:
    file = (await upload(http, jsonl([openai_line(i) for i in range(10)]))).json()
    batch = (await create(http, file["id"])).json()
    clock.now += 2.0
    canceled = (await http.post(f"/v1/batches/{batch['id']}/cancel")).json()
    assert canceled["status"] == "cancelling" and canceled["cancelling_at"] is not None
    batch = (await http.get(f"/v1/batches/{batch['id']}")).json()
    assert batch["status"] == "cancelled"
    assert batch["request_counts"] == {"total": 10, "completed": 2, "failed": 0}
    output = (await http.get(f"/v1/files/{batch['output_file_id']}/content")).content
    assert len(output.splitlines()) == 2
    errors = [
        json.loads(line)
        for line in (
            await http.get(f"/v1/files/{batch['error_file_id']}/content")
        ).content.splitlines()
    ]
    assert len(errors) == 8
    assert {e["error"]["code"] for e in errors} == {"batch_cancelled"}
    assert all(e["response"] is None for e in errors)


async def test_openai_expiry(clock: Clock) -> None:
    config = SimConfig(batch_processing_time=10.0, batch_expire_after=5.0)
    async with MockServer(config, clock=clock) as srv, httpx.AsyncClient(base_url=srv.url) as http:
        file = (await upload(http, jsonl([openai_line(i) for i in range(4)]))).json()
        batch = (await create(http, file["id"])).json()
        clock.now += 5.0
        batch = (await http.get(f"/v1/batches/{batch['id']}")).json()
        assert batch["status"] == "expired" and batch["expired_at"] is not None
        errors = (await http.get(f"/v1/files/{batch['error_file_id']}/content")).content
        assert [json.loads(x)["error"]["code"] for x in errors.splitlines()] == [
            "batch_expired"
        ] * 2


@pytest.mark.parametrize(
    ("lines", "code"),
    [
        ([openai_line(0), openai_line(0)], "duplicate_custom_id"),
        ([openai_line(0, method="GET")], "invalid_method"),
        ([openai_line(0, url="/v1/embeddings")], "mismatched_url"),
        (
            [openai_line(0), openai_line(1, body={**openai_line(1)["body"], "model": "other"})],
            "mismatched_model",
        ),
    ],
)
async def test_openai_bad_lines_fail_the_batch(
    http: httpx.AsyncClient, lines: list[dict[str, Any]], code: str
) -> None:
    file = (await upload(http, jsonl(lines))).json()
    batch = (await create(http, file["id"])).json()
    assert batch["status"] == "failed" and batch["output_file_id"] is None
    assert batch["errors"]["data"][0]["code"] == code
    again = (await http.get(f"/v1/batches/{batch['id']}")).json()
    assert again["status"] == "failed"


async def test_openai_request_refusals(http: httpx.AsyncClient, server: MockServer) -> None:
    wrong_purpose = await upload(http, b"{}\n", purpose="fine-tune")
    assert wrong_purpose.status_code == 400
    assert wrong_purpose.json()["error"]["param"] == "purpose"
    file = (await upload(http, jsonl([openai_line(0)]))).json()
    unknown = await create(http, "file-nope")
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "input_file_id"
    endpoint = await create(http, file["id"], endpoint="/v1/embeddings")
    assert endpoint.status_code == 400 and endpoint.json()["error"]["param"] == "endpoint"
    window = await create(http, file["id"], completion_window="1h")
    assert window.status_code == 400
    missing = await http.get("/v1/batches/batch_nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "invalid_request_error"
    assert (await http.get("/v1/files/file-nope")).status_code == 404
    no_key = await http.get("/v1/batches/batch_nope", headers={"Authorization": ""})
    assert no_key.status_code == 401
    assert server.stats.batches_created == 0


async def test_openai_limits_are_the_documented_ones() -> None:
    assert OPENAI_MAX_REQUESTS == 50_000


async def test_request_bodies_are_bounded(monkeypatch: pytest.MonkeyPatch, clock: Clock) -> None:
    from agentic_synth.simulator import _server

    monkeypatch.setattr(_server, "MAX_REQUEST_BYTES", 1000)
    async with (
        MockServer(SimConfig(), clock=clock) as srv,
        httpx.AsyncClient(base_url=srv.url) as http,
    ):
        answer = await http.post("/v1/messages/batches", content=b"x" * 5000)
        assert answer.status_code == 413
        assert answer.json()["error"]["type"] == "request_too_large"
        assert isinstance(WireError(413, "too_large", "x"), Exception)


async def test_large_results_are_sent_in_chunks(clock: Clock) -> None:
    async with MockServer(SimConfig(output_tokens=8), clock=clock) as srv:
        async with httpx.AsyncClient(base_url=srv.url) as http:
            created = await http.post(
                "/v1/messages/batches", json={"requests": anthropic_requests(600)}
            )
            batch_id = created.json()["id"]
            async with http.stream("GET", f"/v1/messages/batches/{batch_id}/results") as answer:
                assert answer.headers["transfer-encoding"] == "chunked"
                lines = [line async for line in answer.aiter_lines() if line]
    assert len(lines) == 600
    assert {json.loads(line)["result"]["type"] for line in lines} == {"succeeded"}
