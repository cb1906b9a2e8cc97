"""A kept-alive connection the server closed while our request was on its way: every
provider path sends that request again, once, on a new connection (see the lean client's
module docstring for why that is safe for a POST), and never a request whose connection
was opened for it or that got any of an answer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import anyio
import pytest
import uvloop
from scripted_server import KINDS, RawServer, build, call, ok_json, read_request
from test_lean_http_pool import reset

from agentic_synth._exceptions import APIConnectionError, UnreachableError

#: What the server does with a request it will not answer: close (FIN) or reset (RST).
Drop = Callable[[asyncio.StreamWriter], None]
DROPS: dict[str, Drop] = {"eof": lambda w: w.close(), "rst": reset}


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


def answer(kind: str) -> bytes:
    body = json.dumps(ok_json(kind)).encode()
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    return head % len(body) + body


class Script:
    """A raw server answering ``answered[i]`` requests on its ``i``-th connection (every
    request past the list's end), then dropping the connection at the next one: after
    ``partial`` bytes of an answer when given. Counts the requests it read."""

    def __init__(
        self, kind: str, answered: list[int], drop: Drop, partial: bytes | None = None
    ) -> None:
        self.answer = answer(kind)
        self.answered = answered
        self.drop = drop
        self.partial = partial
        self.requests = 0
        self.server = RawServer(self.handle)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = self.server.connections - 1
        budget = self.answered[index] if index < len(self.answered) else None
        served = 0
        while True:
            await read_request(reader)
            self.requests += 1
            if budget is not None and served == budget:
                if self.partial is not None:
                    writer.write(self.partial)
                    await writer.drain()
                self.drop(writer)
                return
            writer.write(self.answer)
            await writer.drain()
            served += 1


@pytest.fixture(params=["asyncio", "uvloop"])
def loop(request: pytest.FixtureRequest) -> str:
    """The event loop to run on: asyncio's, and uvloop (the engine's when installed)."""
    name: str = request.param
    return name


def calls(kind: str, script: Script, *, n: int, loop: str) -> list[object]:
    """``n`` requests one after the other on one provider (one connection at most), on
    ``loop``; the events of each, or its error."""

    async def scenario() -> list[object]:
        outcomes: list[object] = []
        async with script.server:
            p = build(kind, script.server.url, max_connections=1, timeout=10.0)
            try:
                for _ in range(n):
                    try:
                        with anyio.fail_after(20):  # a guard against hangs, not a measurement
                            outcomes.append(await call(p, streamed=False))
                    except APIConnectionError as exc:
                        outcomes.append(exc)
            finally:
                await p.aclose()
        return outcomes

    return uvloop.run(scenario()) if loop == "uvloop" else asyncio.run(scenario())


@pytest.mark.parametrize("drop", sorted(DROPS))
@pytest.mark.parametrize("kind", KINDS)
def test_a_request_on_a_connection_closed_while_idle_is_resent_once(
    kind: str, drop: str, loop: str
) -> None:
    """The first connection answers one request, then dies as the second arrives (the
    server's idle close racing it): the second is served on a new connection, unseen."""
    script = Script(kind, [1], DROPS[drop])
    outcomes = calls(kind, script, n=3, loop=loop)
    assert not [o for o in outcomes if isinstance(o, BaseException)], outcomes
    assert (script.server.connections, script.requests) == (2, 4)


@pytest.mark.parametrize("drop", sorted(DROPS))
@pytest.mark.parametrize("kind", KINDS)
def test_a_connection_opened_for_the_request_is_never_resent_on(
    kind: str, drop: str, loop: str
) -> None:
    """A new connection that dies before the answer: the server had the request; the
    error stands (the caller's retry policy decides)."""
    script = Script(kind, [0], DROPS[drop])
    (outcome,) = calls(kind, script, n=1, loop=loop)
    assert isinstance(outcome, APIConnectionError), outcome
    assert not isinstance(outcome, UnreachableError)
    assert (script.server.connections, script.requests) == (1, 1)


@pytest.mark.parametrize("kind", KINDS)
def test_a_resent_request_is_not_resent_again(kind: str, loop: str) -> None:
    """Dead again on the new connection: that one was opened for it."""
    script = Script(kind, [1, 0], DROPS["eof"])
    first, second = calls(kind, script, n=2, loop=loop)
    assert not isinstance(first, BaseException)
    assert isinstance(second, APIConnectionError), second
    assert (script.server.connections, script.requests) == (2, 3)


@pytest.mark.parametrize(
    "partial",
    [b"HTTP/1.1 200 OK\r\nContent-Typ", b"HTTP/1.1 103 Early Hints\r\n\r\n"],
    ids=["mid-head", "after-1xx"],
)
@pytest.mark.parametrize("drop", sorted(DROPS))
@pytest.mark.parametrize("kind", KINDS)
def test_no_resend_once_part_of_an_answer_arrived(
    kind: str, drop: str, partial: bytes, loop: str
) -> None:
    """The reused connection died mid-head, or after an interim answer: the server was
    answering, so it ran the request; nothing is resent (aiohttp reports a reset after
    part of a head like one before any byte, so the transport watches the bytes)."""
    script = Script(kind, [1], DROPS[drop], partial=partial)
    first, second = calls(kind, script, n=2, loop=loop)
    assert not isinstance(first, BaseException)
    assert isinstance(second, APIConnectionError), second
    assert (script.server.connections, script.requests) == (1, 2)
