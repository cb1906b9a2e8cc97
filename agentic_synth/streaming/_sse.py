"""An incremental Server-Sent Events decoder (WHATWG HTML, "event stream interpretation").

Bytes go in as they arrive from the socket, in chunks of any size; complete
events come out. Line terminators are found on bytes (CR, LF and CRLF are all
ASCII, so they can never sit inside a UTF-8 sequence) and only complete lines
are decoded, so a multi-byte character or a CRLF split across two chunks is
handled without re-scanning anything.

Work is linear in the input: each chunk is scanned once, and the start of a
line not finished yet is kept as a list of pieces joined once, when its end
arrives (re-joining a growing buffer on every chunk would be quadratic in a
long line fed in small chunks). Optional limits bound what an untrusted
server can make the decoder hold: exceeding one raises :class:`SSELimitError`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SSEDecoder", "SSELimitError", "ServerSentEvent"]

_BOM = b"\xef\xbb\xbf"


class SSELimitError(ValueError):
    """A line or an event's data is larger than the decoder's limit allows."""


@dataclass(slots=True, frozen=True)
class ServerSentEvent:
    """One dispatched event.

    ``event`` defaults to ``"message"`` as the spec says; ``id`` is the last
    event id in force when the event was dispatched (it persists across events);
    ``retry`` is the reconnection time (ms) set inside this event's block, if any.
    """

    data: str
    event: str = "message"
    id: str = ""
    retry: int | None = None


class SSEDecoder:
    """Feed bytes with :meth:`feed`, get the events completed by them.

    ``max_line_bytes`` bounds one line (terminator excluded), ``max_event_bytes``
    the data of one event (its ``data`` values, as bytes); ``None`` is unbounded.
    Past a limit :meth:`feed` raises :class:`SSELimitError` and the decoder drops
    what it held: the stream cannot be trusted further.
    """

    __slots__ = (
        "_data",
        "_data_bytes",
        "_event",
        "_last_id",
        "_max_event",
        "_max_line",
        "_pending",
        "_pending_bytes",
        "_retry",
        "_skip_lf",
        "_started",
    )

    def __init__(
        self, max_line_bytes: int | None = None, max_event_bytes: int | None = None
    ) -> None:
        for name, value in (
            ("max_line_bytes", max_line_bytes),
            ("max_event_bytes", max_event_bytes),
        ):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value!r}")
        self._max_line = max_line_bytes
        self._max_event = max_event_bytes
        # Pieces of the line not ended yet (before the stream starts: a possible BOM).
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._skip_lf = False
        self._started = False
        self._data: list[str] = []
        self._data_bytes = 0
        self._event = ""
        self._last_id = ""
        self._retry: int | None = None

    @property
    def last_event_id(self) -> str:
        return self._last_id

    @property
    def pending(self) -> bool:
        """True when bytes or fields of an undispatched event are buffered."""
        return bool(self._pending or self._data or self._event or self._retry is not None)

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Consume ``chunk`` and return the events it completes, in order."""
        if not self._started:
            if self._pending:
                chunk = self._pending.pop() + chunk
                self._pending_bytes = 0
            if len(chunk) < len(_BOM) and _BOM.startswith(chunk):
                if chunk:  # could still be a BOM: wait for more bytes
                    self._pending.append(chunk)
                    self._pending_bytes = len(chunk)
                return []
            self._started = True
            if chunk.startswith(_BOM):
                chunk = chunk[len(_BOM) :]
        if self._skip_lf and chunk:
            # The previous chunk ended in CR: a LF right after it is the same line end.
            self._skip_lf = False
            if chunk[0] == 10:
                chunk = chunk[1:]
        if not chunk:
            return []
        lines = chunk.splitlines(keepends=True)  # bytes split on CR, LF and CRLF only
        end = lines[-1][-1]
        tail = None if end in (10, 13) else lines.pop()
        # A lone CR may be the first half of a CRLF split across chunks.
        self._skip_lf = end == 13
        limit = self._max_line
        if limit is not None and len(chunk) + self._pending_bytes > limit:
            self._check_lines(lines, tail, limit)
        if self._pending and lines:
            self._pending.append(lines[0])
            lines[0] = b"".join(self._pending)
            self._pending = []
            self._pending_bytes = 0
        if tail is not None:
            self._pending.append(tail)
            self._pending_bytes += len(tail)
        events: list[ServerSentEvent] = []
        for raw in lines:
            line = raw.rstrip(b"\r\n")
            if line:
                self._field(line)
            elif self._data:
                events.append(self._dispatch())
            else:
                self._event = ""
                self._retry = None
        return events

    def close(self) -> None:
        """End of stream: the spec discards an event not closed by a blank line."""
        self._pending = []
        self._pending_bytes = 0
        self._skip_lf = False
        self._data = []
        self._data_bytes = 0
        self._event = ""
        self._retry = None

    def _check_lines(self, lines: list[bytes], tail: bytes | None, limit: int) -> None:
        """Raise when a line of this chunk (the first one continuing the pending
        piece) is longer than ``limit``; only called when the chunk could hold one."""
        carried = self._pending_bytes
        for raw in lines:
            if carried + len(raw.rstrip(b"\r\n")) > limit:
                self._over(f"an SSE line is longer than max_line_bytes={limit}")
            carried = 0
        if tail is not None and carried + len(tail) > limit:
            self._over(f"an SSE line is longer than max_line_bytes={limit}")

    def _over(self, message: str) -> None:
        self.close()
        raise SSELimitError(message)

    def _dispatch(self) -> ServerSentEvent:
        data = "\n".join(self._data)
        event = ServerSentEvent(data, self._event or "message", self._last_id, self._retry)
        self._data = []
        self._data_bytes = 0
        self._event = ""
        self._retry = None
        return event

    def _field(self, line: bytes) -> None:
        if line[0] == 58:  # ":" starts a comment
            return
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            limit = self._max_event
            if limit is not None:
                self._data_bytes += len(value)
                if self._data_bytes > limit:
                    self._over(f"an SSE event's data is larger than max_event_bytes={limit}")
            self._data.append(value.decode("utf-8", "replace"))
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"id":
            if b"\x00" not in value:
                self._last_id = value.decode("utf-8", "replace")
        elif name == b"retry" and value.isdigit():
            self._retry = int(value)
