"""A loopback HTTP server that answers like the Anthropic and OpenAI APIs.

A lean ``asyncio.Protocol`` with ``httptools`` parsing (keep-alive, pipelined
requests answered in order, chunked SSE); delays are ``loop.call_later`` timers,
so thousands of slow requests cost no tasks and no threads. The simulated
outcome of each call comes from the same :class:`Simulator` as the in-process
``sim`` provider, so both give the same text for the same request.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from email.utils import formatdate
from http import HTTPStatus
from types import TracebackType
from typing import Any, cast

import httptools

from ..providers._prompt_cache import EXTENDED_TTL_BETA
from ._anthropic_wire import AnthropicWire
from ._batch_wire import BATCH_PREFIXES, BatchRoutes, Reply
from ._batches import BatchEngine
from ._config import SimConfig
from ._engine import Outcome, Simulator
from ._openai_wire import OpenAIWire
from ._wire import ParsedCall, RateWindow, Wire, WireError, dumps

__all__ = ["MAX_REQUEST_BYTES", "STATS_PATH", "MockServer", "ServerStats"]

#: ``GET`` here returns :meth:`ServerStats.snapshot` as JSON (for out-of-process use).
STATS_PATH = "/_sim/stats"

_WIRES: dict[str, Wire] = {w.path: w for w in (AnthropicWire(), OpenAIWire())}
_ANTHROPIC = _WIRES["/v1/messages"]
_FALLBACK_WIRE = _ANTHROPIC
_LINGER_RESET = struct.pack("ii", 1, 0)
_REASONS = {s.value: s.phrase for s in HTTPStatus} | {529: "Overloaded"}
_STATUS_LINES: dict[int, bytes] = {}
_FAULT_ERRORS = {
    "429": (429, "rate_limit", "Number of requests has exceeded your rate limit"),
    "long_retry_after": (429, "rate_limit", "Number of requests has exceeded your rate limit"),
    "500": (500, "api_error", "Internal server error"),
    "no_retry": (500, "api_error", "Internal server error"),
}
#: Faults answered with an error status (or no answer): nothing reaches the prompt cache.
_NO_ANSWER = frozenset(
    {"429", "500", "529", "long_retry_after", "no_retry", "quota", "not_found", "forbidden"}
    | {"redirect", "reset", "unauthorized"}
)
#: Faults answered by the API's own error for them (:meth:`Wire.fault_error`).
_API_FAULTS = frozenset({"quota", "not_found", "forbidden"})
#: Faults that send a 200 and then never finish it.
_OPEN_ENDED = frozenset({"endless_sse_line", "silent_stream", "trickle"})
#: Faults that break a normal answer's body or stream.
_BODY_FAULTS = frozenset({"malformed", "truncate", "stream_error"})
#: A status line and headers a server may send before the real answer (RFC 9110 15.2).
_INTERIM = (
    b"HTTP/1.1 100 Continue\r\n\r\n"
    b"HTTP/1.1 103 Early Hints\r\nlink: </static/app.css>; rel=preload; as=style\r\n\r\n"
)
#: Filler for hostile answers: JSON-string-safe, one block reused, never built per request.
_PAD = b"a" * 65536
#: Stands in for the text of an answer, to split a rendered body around it.
_MARK = "SIMPADDINGMARK"
_MARK_BYTES = _MARK.encode()
#: Bytes a hostile answer writes per event-loop turn, so one client cannot hog the loop.
_PUMP_TURN = 1 << 20
#: Largest request body read (a batch create may be large: Anthropic takes 256 MB);
#: past it the answer is a 413 and the connection is closed.
MAX_REQUEST_BYTES = 256 * 1024 * 1024


@dataclass(slots=True)
class ServerStats:
    """Live counters, for tests to assert on what the server saw."""

    #: Requests received, by path.
    requests: Counter[str] = field(default_factory=Counter)
    #: Responses begun, by HTTP status.
    responses: Counter[int] = field(default_factory=Counter)
    #: Injected faults, by kind.
    faults: Counter[str] = field(default_factory=Counter)
    streams_started: int = 0
    streams_completed: int = 0
    #: Streams whose client closed the connection before the end.
    streams_aborted: int = 0
    open_connections: int = 0
    connections_total: int = 0
    #: Answers that wrote to / read from the prompt cache, and the tokens they did
    #: (OpenAI wire: a write is a prompt found cold and cached).
    cache_writes: int = 0
    cache_write_tokens: int = 0
    cache_reads: int = 0
    cache_read_tokens: int = 0
    #: Batches created through the batch routes (either API; failed OpenAI ones too).
    batches_created: int = 0

    def snapshot(self) -> dict[str, Any]:
        """Plain JSON-able counters, plus this process's id and CPU seconds."""
        return {
            "requests": dict(self.requests),
            "responses": {str(k): v for k, v in self.responses.items()},
            "faults": dict(self.faults),
            "streams_started": self.streams_started,
            "streams_completed": self.streams_completed,
            "streams_aborted": self.streams_aborted,
            "open_connections": self.open_connections,
            "connections_total": self.connections_total,
            "cache_writes": self.cache_writes,
            "cache_write_tokens": self.cache_write_tokens,
            "cache_reads": self.cache_reads,
            "cache_read_tokens": self.cache_read_tokens,
            "batches_created": self.batches_created,
            "pid": os.getpid(),
            "cpu_seconds": time.process_time(),
        }


class _DateCache:
    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = ""

    def get(self) -> str:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = formatdate(now, usegmt=True)
        return self._value


_DATE = _DateCache()


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        line = f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n".encode()
        _STATUS_LINES[status] = line
    return line


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def _split_at_mark(rendered: bytes) -> tuple[bytes, bytes]:
    prefix, _, suffix = rendered.partition(_MARK_BYTES)
    return prefix, suffix


@dataclass(slots=True)
class _Pump:
    """A long run of one repeated piece, written as fast as the client reads it."""

    piece: bytes
    #: Bytes still to write; ``None``: forever.
    left: int | None
    #: Wrap each write as an HTTP/1.1 chunk.
    chunked: bool
    #: Called once the last byte is written.
    then: Callable[[], None] | None


class _Connection(asyncio.Protocol):
    """One client connection: parse requests, answer them one at a time, in order."""

    def __init__(self, server: MockServer) -> None:
        self.server = server
        loop = server._loop
        assert loop is not None
        self.loop = loop
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.body_bytes = 0
        self.too_large = False
        #: A chunked answer being written as the client reads it (batch results).
        self.feed: Iterator[bytes] | None = None
        self.pending: deque[tuple[bytes, dict[str, str], bytes, bool, bytes]] = deque()
        self.active = False
        self.keep_alive = True
        self.timer: asyncio.TimerHandle | None = None
        self.streaming = False
        self.closed = False
        # The exchange in progress.
        self.wire: Wire = _FALLBACK_WIRE
        self.call: ParsedCall | None = None
        self.outcome: Outcome | None = None
        self.pieces: list[str] = []
        self.sent = 0
        self.stop_at = 0
        self.t0 = 0.0
        self.interval = 0.0
        self.fault: str | None = None
        # Hostile answers: flow control, a pending long write, a status line already sent.
        self.paused = False
        self.pump: _Pump | None = None
        self.head_open = False
        self.location = ""
        self.tick = b""

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses but behave alike.
        self.transport = cast(asyncio.Transport, transport)
        stats = self.server.stats
        stats.open_connections += 1
        stats.connections_total += 1
        self.server._connections.add(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.keep_alive = False
            self.pending.clear()
            if self.active and self.transport is not None:
                # Mid-answer: a 400 now would interleave with that answer; just hang up.
                self.transport.close()
                return
            error = WireError(400, "invalid_request", "malformed HTTP request")
            self._send_error(self.wire, error, "req_sim_badhttp")

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.pump is not None:
            self._pump_step()
        elif self.feed is not None:
            self._feed_step()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pump = None
        self.feed = None
        stats = self.server.stats
        stats.open_connections -= 1
        if self.streaming:
            self.streaming = False
            stats.streams_aborted += 1
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.pending.clear()
        self.server._connections.discard(self)

    # -- httptools callbacks ---------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = {}
        self.body = []
        self.body_bytes = 0
        self.too_large = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.body_bytes > MAX_REQUEST_BYTES:
            self.too_large = True
            self.body = []
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.too_large:
            self.too_large = False
            self.pending.clear()
            if self.active:
                if self.transport is not None:
                    self.transport.close()
                return
            self.keep_alive = False
            self.active = True
            error = WireError(413, "too_large", f"request body over {MAX_REQUEST_BYTES} bytes")
            self._send_error(self.wire, error, "req_sim_too_large")
            return
        item = (
            self.parser.get_method(),
            self.headers,
            b"".join(self.body),
            self.parser.should_keep_alive(),
            self.url,
        )
        if self.active:
            self.pending.append(item)
        else:
            self._handle(*item)

    # -- one exchange ----------------------------------------------------------------

    def _handle(
        self, method: bytes, headers: dict[str, str], body: bytes, keep_alive: bool, url: bytes
    ) -> None:
        self.active = True
        self.keep_alive = keep_alive
        server = self.server
        path = url.split(b"?", 1)[0].decode("latin-1").rstrip("/")
        server.stats.requests[path] += 1
        if path.startswith(BATCH_PREFIXES):
            query = url.partition(b"?")[2].decode("latin-1")
            self._batch(method.decode(), path, query, headers, body)
            return
        wire = _WIRES.get(path)
        if wire is None:
            if path == STATS_PATH and method == b"GET":
                self._send_full(200, "req_sim_stats", dumps(server.stats.snapshot()), [])
                self._done()
                return
            self.wire = _WIRES["/v1/chat/completions"] if "chat" in path else _FALLBACK_WIRE
            error = WireError(404, "not_found", f"{method.decode()} {path} not found")
            self._send_error(self.wire, error, "req_sim_notfound")
            return
        self.wire = wire
        if method != b"POST":
            error = WireError(405, "invalid_request", f"{method.decode()} is not allowed here")
            self._send_error(wire, error, "req_sim_method")
            return
        unauthorized = server.config.unauthorized
        if unauthorized or (
            server.api_key is not None and not wire.authorized(headers, server.api_key)
        ):
            if unauthorized:
                server.stats.faults["unauthorized"] += 1
            self._send_error(wire, wire.auth_error(headers), "req_sim_auth")
            return
        try:
            call = wire.parse(json.loads(body))
        except WireError as exc:
            self._send_error(wire, exc, "req_sim_invalid")
            return
        except ValueError:
            error = WireError(400, "invalid_request", "request body is not valid JSON")
            self._send_error(wire, error, "req_sim_invalid")
            return
        outcome = server.simulator.decide(call.request)
        self.call = call
        self.outcome = outcome
        fault = outcome.fault
        if call.blocks and (
            fault is None
            or not (fault in _NO_ANSWER or (fault == "stream_error" and not call.stream))
        ):
            cache = server.simulator.prompt_cache
            if wire is _ANTHROPIC:
                one_hour = EXTENDED_TTL_BETA in headers.get("anthropic-beta", "")
                call.cache_use = cache.anthropic(
                    call.model, call.blocks, outcome.input_tokens, one_hour=one_hour
                )
            else:
                call.cache_use = cache.openai(call.model, call.blocks, outcome.input_tokens)
        if fault is None:
            self._schedule(outcome.delay, self._respond, None)
        else:
            self._fault(fault, call, outcome.delay, headers, url)

    def _batch(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> None:
        """A batch API route (:mod:`._batch_wire`), authorized as the API's other calls."""
        server = self.server
        wire = _ANTHROPIC if path.startswith("/v1/messages") else _WIRES["/v1/chat/completions"]
        self.wire = wire
        unauthorized = server.config.unauthorized
        if unauthorized or (
            server.api_key is not None and not wire.authorized(headers, server.api_key)
        ):
            self._send_error(wire, wire.auth_error(headers), "req_sim_auth")
            return
        routes = server.batch_routes
        before = routes.created
        host = headers.get("host") or f"{server.host}:{server.port}"
        try:
            reply = routes.handle(method, path, query, body, headers, f"http://{host}")
        except WireError as exc:
            self._send_error(wire, exc, "req_sim_batch")
            return
        server.stats.batches_created += routes.created - before
        self._send_reply(reply)

    def _send_reply(self, reply: Reply) -> None:
        body = reply.body
        if isinstance(body, bytes):
            self._send_full(
                reply.status, "req_sim_batch", body, [], content_type=reply.content_type
            )
            self._done()
            return
        transport = self.transport
        if transport is None or self.closed:
            return
        self.server.stats.responses[reply.status] += 1
        head = self._common_headers(self.wire, "req_sim_batch", reply.content_type, [])
        transport.write(
            b"".join([self._status(reply.status), head, b"transfer-encoding: chunked\r\n\r\n"])
        )
        self.feed = body
        self._feed_step()

    def _feed_step(self) -> None:
        """Write the pieces of a chunked answer while the client keeps up, a turn at a time."""
        budget = _PUMP_TURN
        while not self.paused:
            feed, transport = self.feed, self.transport
            if feed is None or transport is None or self.closed:
                return
            piece = next(feed, None)
            if piece is None:
                self.feed = None
                transport.write(b"0\r\n\r\n")
                self._done()
                return
            if not piece:
                continue  # an empty chunk would end the body
            transport.write(_chunk(piece))
            budget -= len(piece)
            if budget <= 0:
                self.loop.call_soon(self._feed_step)
                return

    def _fault(
        self, fault: str, call: ParsedCall, delay: float, headers: dict[str, str], url: bytes
    ) -> None:
        """Schedule the answer for a request that hit ``fault``."""
        config = self.server.config
        self.server.stats.faults[fault] += 1
        if fault == "timeout":
            self._schedule(delay + config.hang, self._respond, None)
        elif fault == "stream_error" and not call.stream:
            self._schedule(delay, self._fault_status, "529")
        elif fault in _BODY_FAULTS:
            self._schedule(delay, self._respond, fault)
        elif fault == "reset":
            self._schedule(delay, self._reset, None)
        elif fault == "interim_1xx":
            if self.transport is not None:
                self.transport.write(_INTERIM)
            self._schedule(delay, self._respond, None)
        elif fault == "huge_headers":
            self._schedule(delay, self._huge_headers, None)
        elif fault == "huge_body":
            self._schedule(delay, self._huge_body, None)
        elif fault in _OPEN_ENDED:
            self._schedule(delay, self._open_ended, fault)
        elif fault == "unauthorized":  # normally turned away before parsing, in _handle
            self._send_error(self.wire, self.wire.auth_error(headers), "req_sim_auth")
        else:
            if fault == "redirect":
                host = headers.get("host") or f"{self.server.host}:{self.server.port}"
                self.location = config.redirect_location or (
                    f"https://{host}{url.decode('latin-1')}"
                )
            self._schedule(delay, self._fault_status, fault)

    def _schedule(self, delay: float, callback: Any, arg: str | None) -> None:
        if delay <= 0.0:
            callback(arg)
        else:
            self.timer = self.loop.call_later(delay, callback, arg)

    def _common_headers(
        self, wire: Wire, request_id: str, content_type: str, extra: list[tuple[str, str]]
    ) -> bytes:
        connection = "keep-alive" if self.keep_alive else "close"
        head = (
            f"date: {_DATE.get()}\r\ncontent-type: {content_type}\r\n"
            f"{wire.request_id_header()}: {request_id}\r\nconnection: {connection}\r\n"
        )
        return (head + "".join([f"{name}: {value}\r\n" for name, value in extra])).encode()

    def _rate_headers(self, wire: Wire, outcome: Outcome | None) -> list[tuple[str, str]]:
        server = self.server
        config = server.config
        window = server._window
        if outcome is None:
            reset = window.record(0, 0)
        else:
            uncached = outcome.input_tokens
            use = self.call.cache_use if self.call is not None else None
            if use is not None and wire is _ANTHROPIC:
                uncached -= use.read  # cache reads do not count towards Anthropic's ITPM
            reset = window.record(uncached, outcome.output_tokens)
        limits = (
            config.requests_per_minute,
            config.input_tokens_per_minute,
            config.output_tokens_per_minute,
        )
        return wire.rate_headers(limits, window, reset)

    def _send_full(
        self,
        status: int,
        request_id: str,
        body: bytes,
        extra: list[tuple[str, str]],
        *,
        declared_length: int | None = None,
        content_type: str = "application/json",
    ) -> None:
        transport = self.transport
        if transport is None or self.closed:
            return
        self.server.stats.responses[status] += 1
        if status == 200:
            self._cache_started()
        head = self._common_headers(self.wire, request_id, content_type, extra)
        length = len(body) if declared_length is None else declared_length
        transport.write(
            b"".join([self._status(status), head, b"content-length: %d\r\n\r\n" % length, body])
        )

    def _status(self, status: int) -> bytes:
        """The status line, unless a hostile answer already sent it (huge headers)."""
        if self.head_open:
            self.head_open = False
            return b""
        return _status_line(status)

    def _send_error(
        self,
        wire: Wire,
        error: WireError,
        request_id: str,
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        self.wire = wire
        body = wire.error_body(error, request_id)
        self._send_full(error.status, request_id, body, extra or [])
        self._done()

    def _fault_status(self, fault: str | None) -> None:
        self.timer = None
        outcome = self.outcome
        assert outcome is not None and fault is not None
        wire = self.wire
        request_id = f"req_sim_{outcome.token}"
        config = self.server.config
        if fault == "redirect":
            self._redirect(request_id)
            return
        extra: list[tuple[str, str]] = []
        if fault == "529":
            error = WireError(wire.overloaded_status(), "overloaded", "Overloaded")
        elif fault in _API_FAULTS:
            assert self.call is not None
            error = wire.fault_error(fault, self.call.model)
        else:
            status, kind, message = _FAULT_ERRORS[fault]
            error = WireError(status, kind, message)
        if fault in ("429", "529", "long_retry_after"):
            retry_after = (
                config.long_retry_after if fault == "long_retry_after" else config.retry_after
            )
            whole = float(retry_after).is_integer()
            extra.append(("retry-after", str(int(retry_after)) if whole else f"{retry_after:g}"))
            extra.append(("retry-after-ms", str(round(retry_after * 1000))))
        elif fault == "no_retry":
            extra.append(("x-should-retry", "false"))
        extra.extend(self._rate_headers(wire, None))
        self._send_error(wire, error, request_id, extra)

    def _redirect(self, request_id: str) -> None:
        """A front proxy's redirect: a small HTML page and a ``location``."""
        status = self.server.config.redirect_status
        title = f"{status} {_REASONS.get(status, 'Redirect')}"
        body = (
            f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
            f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
            "</body>\r\n</html>\r\n"
        ).encode()
        self._send_full(
            status, request_id, body, [("location", self.location)], content_type="text/html"
        )
        self._done()

    # -- hostile answers: bounded memory on this side, whatever the client does ------

    def _write_head(
        self, request_id: str, content_type: str, extra: list[tuple[str, str]], framing: bytes
    ) -> asyncio.Transport | None:
        """Send a 200's status line and headers; return the transport if still open."""
        transport = self.transport
        if transport is None or self.closed:
            return None
        self.server.stats.responses[200] += 1
        self._cache_started()
        head = self._common_headers(self.wire, request_id, content_type, extra)
        transport.write(b"".join([self._status(200), head, framing, b"\r\n"]))
        return transport

    def _pump_bytes(
        self, piece: bytes, total: int | None, *, chunked: bool, then: Callable[[], None] | None
    ) -> None:
        """Write ``total`` bytes of ``piece`` repeated (forever if ``None``), then ``then``."""
        self.pump = _Pump(piece, total, chunked, then)
        self._pump_step()

    def _pump_step(self) -> None:
        budget = _PUMP_TURN
        while not self.paused:
            pump, transport = self.pump, self.transport
            if pump is None or transport is None or self.closed:
                return
            left = pump.left
            if left is not None and left <= 0:
                self.pump = None
                if pump.then is not None:
                    pump.then()
                return
            data = pump.piece if left is None or left >= len(pump.piece) else pump.piece[:left]
            if left is not None:
                pump.left = left - len(data)
            transport.write(_chunk(data) if pump.chunked else data)
            budget -= len(data)
            if budget <= 0:
                # Let other connections run; resume_writing restarts a paused pump.
                self.loop.call_soon(self._pump_step)
                return

    def _huge_headers(self, _: str | None) -> None:
        """A 200 whose first header is ``huge_header_bytes`` long, then the normal answer."""
        self.timer = None
        transport = self.transport
        if transport is None or self.closed:
            return
        self.head_open = True
        transport.write(_status_line(200) + b"x-sim-padding: ")
        self._pump_bytes(
            _PAD, self.server.config.huge_header_bytes, chunked=False, then=self._end_padding
        )

    def _end_padding(self) -> None:
        if self.transport is not None:
            self.transport.write(b"\r\n")
        self._respond(None)

    def _huge_body(self, _: str | None) -> None:
        """A 200 with ``huge_body_bytes`` of text (or endless): valid JSON or SSE throughout."""
        self.timer = None
        call, outcome = self.call, self.outcome
        assert call is not None and outcome is not None
        wire = self.wire
        request_id = f"req_sim_{outcome.token}"
        ident = outcome.token
        size = self.server.config.huge_body_bytes
        extra = self._rate_headers(wire, outcome)
        if call.stream:
            transport = self._write_head(
                request_id,
                "text/event-stream; charset=utf-8",
                [*extra, ("cache-control", "no-cache")],
                b"transfer-encoding: chunked\r\n",
            )
            if transport is None:
                return
            transport.write(_chunk(wire.stream_head(call, outcome, ident)))
            # One delta of 16 KiB of text, four to a write.
            piece = wire.stream_delta(call, "a" * 16384, ident) * 4
            total = None if size == 0 else -(-size // len(piece)) * len(piece)
            tail = _chunk(wire.stream_tail(call, outcome, ident)) + b"0\r\n\r\n"
            self._pump_bytes(piece, total, chunked=True, then=lambda: self._finish(tail))
            return
        prefix, suffix = _split_at_mark(wire.body(call, replace(outcome, text=_MARK), ident))
        if size == 0:
            transport = self._write_head(
                request_id, "application/json", extra, b"transfer-encoding: chunked\r\n"
            )
            if transport is not None:
                transport.write(_chunk(prefix))
                self._pump_bytes(_PAD, None, chunked=True, then=None)
            return
        pad = max(0, size - len(prefix) - len(suffix))
        length = len(prefix) + pad + len(suffix)
        transport = self._write_head(
            request_id, "application/json", extra, b"content-length: %d\r\n" % length
        )
        if transport is not None:
            transport.write(prefix)
            self._pump_bytes(_PAD, pad, chunked=False, then=lambda: self._finish(suffix))

    def _finish(self, last: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(last)
            self._done()

    def _open_ended(self, fault: str | None) -> None:
        """A 200 that never ends: an endless SSE line, silence, or a byte now and then."""
        self.timer = None
        call, outcome = self.call, self.outcome
        assert call is not None and outcome is not None
        wire = self.wire
        ident = outcome.token
        sse = call.stream or fault == "endless_sse_line"
        extra = self._rate_headers(wire, outcome)
        if sse:
            extra.append(("cache-control", "no-cache"))
        transport = self._write_head(
            f"req_sim_{ident}",
            "text/event-stream; charset=utf-8" if sse else "application/json",
            extra,
            b"transfer-encoding: chunked\r\n",
        )
        if transport is None or fault == "silent_stream":
            return
        head = wire.stream_head(call, outcome, ident) if call.stream else b""
        if fault == "trickle":
            if head:
                transport.write(_chunk(head))
            self.tick = b"\n" if sse else b" "
            self.timer = self.loop.call_later(self.server.config.trickle_interval, self._trickle)
            return
        line_start, _ = _split_at_mark(wire.stream_delta(call, _MARK, ident))
        transport.write(_chunk(head + line_start))
        self._pump_bytes(_PAD, None, chunked=True, then=None)

    def _trickle(self) -> None:
        self.timer = None
        transport = self.transport
        if transport is None or self.closed:
            return
        transport.write(_chunk(self.tick))
        self.timer = self.loop.call_later(self.server.config.trickle_interval, self._trickle)

    def _reset(self, _: str | None) -> None:
        self.timer = None
        transport = self.transport
        if transport is None or self.closed:
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            except OSError:
                pass
        transport.abort()

    def _respond(self, fault: str | None) -> None:
        self.timer = None
        call, outcome = self.call, self.outcome
        assert call is not None and outcome is not None
        wire = self.wire
        request_id = f"req_sim_{outcome.token}"
        extra = self._rate_headers(wire, outcome)
        if not call.stream:
            body = wire.body(call, outcome, outcome.token)
            if fault == "malformed":
                self._send_full(200, request_id, body[: len(body) // 2], extra)
            elif fault == "truncate":
                self._send_full(
                    200, request_id, body[: len(body) // 2], extra, declared_length=len(body)
                )
                self._close()
                return
            else:
                delay = self.server.simulator.stream_seconds(outcome)
                if delay > 0:
                    self.timer = self.loop.call_later(
                        delay, self._send_later, (request_id, body, extra)
                    )
                    return
                self._send_full(200, request_id, body, extra)
            self._done()
            return
        self._start_stream(call, outcome, request_id, extra, fault)

    def _send_later(self, args: tuple[str, bytes, list[tuple[str, str]]]) -> None:
        self.timer = None
        self._send_full(200, *args)
        self._done()

    def _start_stream(
        self,
        call: ParsedCall,
        outcome: Outcome,
        request_id: str,
        extra: list[tuple[str, str]],
        fault: str | None,
    ) -> None:
        transport = self.transport
        if transport is None or self.closed:
            return
        server = self.server
        server.stats.responses[200] += 1
        server.stats.streams_started += 1
        self._cache_started()
        self.streaming = True
        pieces = outcome.pieces(server.config.stream_chunk_tokens)
        self.pieces = pieces
        self.sent = 0
        # Where a broken stream breaks: after this many deltas.
        self.stop_at = len(pieces) if fault is None else int(outcome.u_extra * len(pieces))
        self.fault = fault
        head = self._common_headers(
            self.wire,
            request_id,
            "text/event-stream; charset=utf-8",
            [*extra, ("cache-control", "no-cache")],
        )
        start = self.wire.stream_head(call, outcome, outcome.token)
        transport.write(b"".join([self._status(200), head, b"transfer-encoding: chunked\r\n\r\n"]))
        tps = server.config.tokens_per_s
        if tps is None:
            self._stream_step(start, len(pieces))
            return
        self.interval = server.config.stream_chunk_tokens / tps
        self.t0 = self.loop.time()
        self._stream_step(start, 1)

    def _stream_next(self, _: None = None) -> None:
        self.timer = None
        self._stream_step(b"", 1)

    def _stream_step(self, prefix: bytes, count: int) -> None:
        """Send up to ``count`` more deltas; then the end, a fault, or the next timer."""
        transport = self.transport
        call, outcome = self.call, self.outcome
        if transport is None or self.closed or call is None or outcome is None:
            return
        wire = self.wire
        ident = outcome.token
        parts = [prefix] if prefix else []
        end = min(self.sent + count, self.stop_at)
        parts.extend(
            wire.stream_delta(call, piece, ident) for piece in self.pieces[self.sent : end]
        )
        self.sent = end
        if end < self.stop_at:
            transport.write(_chunk(b"".join(parts)))
            at = self.t0 + self.interval * end
            self.timer = self.loop.call_at(at, self._stream_next)
            return
        fault = self.fault
        if fault == "truncate":
            if parts:
                transport.write(_chunk(b"".join(parts)))
            self._close()
            return
        if fault == "malformed":
            parts.append(wire.stream_garbage())
        elif fault == "stream_error":
            parts.append(wire.stream_error("overloaded", "Overloaded"))
        else:
            parts.append(wire.stream_tail(call, outcome, ident))
        transport.write(_chunk(b"".join(parts)) + b"0\r\n\r\n")
        self.streaming = False
        self.server.stats.streams_completed += 1
        self._done()

    def _cache_started(self) -> None:
        """The answer starts: what this call wrote to the prompt cache becomes readable."""
        call = self.call
        use = call.cache_use if call is not None else None
        if use is None or use.started:
            return
        self.server.simulator.prompt_cache.started(use)
        stats = self.server.stats
        if use.written:
            stats.cache_writes += 1
            stats.cache_write_tokens += use.written
        if use.read:
            stats.cache_reads += 1
            stats.cache_read_tokens += use.read

    def _close(self) -> None:
        """End the connection without finishing the response (truncation fault)."""
        self.streaming = False
        self.keep_alive = False
        if self.transport is not None:
            self.transport.close()

    def _done(self) -> None:
        self.active = False
        self.call = None
        self.outcome = None
        if not self.keep_alive:
            if self.transport is not None:
                self.transport.close()
            return
        if self.pending:
            self.loop.call_soon(self._next_pending)

    def _next_pending(self) -> None:
        if self.pending and not self.active and not self.closed:
            self._handle(*self.pending.popleft())


class MockServer:
    """Loopback server speaking the Anthropic and OpenAI APIs, in this event loop.

    ``async with MockServer(SimConfig(latency=fixed(0.05))) as server:`` then
    point a client at ``server.url`` (both ``/v1/messages`` and
    ``/v1/chat/completions`` are served). With ``api_key`` set, calls without
    that key get a 401 like the real APIs (``SimConfig(unauthorized=True)``: every call).

    Hostile answers (huge headers or bodies, endless lines, trickles) are written
    only as fast as the client reads them, from one shared filler block, so the
    server's memory stays bounded whatever the client does.
    """

    def __init__(
        self,
        config: SimConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or SimConfig()
        self.simulator = Simulator(self.config)
        #: The batch APIs' engine (its own seen-counter, like the in-process provider's).
        self.batches = BatchEngine(self.config, clock=clock)
        self.batch_routes = BatchRoutes(self.batches)
        self.host = host
        self.port = port
        self.api_key = api_key
        self.stats = ServerStats()
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._window = RateWindow()
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        state = self.url if self._server is not None else "stopped"
        return f"MockServer({state}, config={self.config!r})"

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:PORT`` (for both wire formats)."""
        return f"http://{self.host}:{self.port}"

    @property
    def anthropic_url(self) -> str:
        """Base URL for Anthropic clients (they append ``/v1/messages``)."""
        return self.url

    @property
    def openai_url(self) -> str:
        """Base URL for OpenAI clients (they append ``/chat/completions``)."""
        return f"{self.url}/v1"

    async def start(self) -> None:
        """Listen; ``port=0`` picks a free port (read it back from :attr:`port`)."""
        if self._server is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._server = await self._loop.create_server(
            lambda: _Connection(self),
            self.host,
            self.port,
            backlog=4096,
            reuse_address=True,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def aclose(self) -> None:
        """Stop listening and drop every open connection."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for conn in list(self._connections):
            if conn.transport is not None:
                conn.transport.abort()
        await server.wait_closed()
        # Let the transports deliver connection_lost before returning.
        await asyncio.sleep(0)

    async def __aenter__(self) -> MockServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
