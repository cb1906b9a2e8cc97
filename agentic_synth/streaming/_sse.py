"""An incremental Server-Sent Events decoder (WHATWG HTML, "event stream interpretation").

Bytes go in as they arrive from the socket, in chunks of any size; complete
events come out. Line terminators are found on bytes (CR, LF and CRLF are all
ASCII, so they can never sit inside a UTF-8 sequence) and only complete lines
are decoded, so a multi-byte character or a CRLF split across two chunks is
handled without re-scanning the buffer.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SSEDecoder", "ServerSentEvent"]

_BOM = b"\xef\xbb\xbf"
_LINE_ENDS = (b"\n", b"\r")


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
    """Feed bytes with :meth:`feed`, get the events completed by them."""

    __slots__ = ("_buf", "_data", "_event", "_last_id", "_retry", "_skip_lf", "_started")

    def __init__(self) -> None:
        self._buf = b""
        self._skip_lf = False
        self._started = False
        self._data: list[str] = []
        self._event = ""
        self._last_id = ""
        self._retry: int | None = None

    @property
    def last_event_id(self) -> str:
        return self._last_id

    @property
    def pending(self) -> bool:
        """True when bytes or fields of an undispatched event are buffered."""
        return bool(self._buf or self._data or self._event or self._retry is not None)

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Consume ``chunk`` and return the events it completes, in order."""
        if not self._started:
            chunk = self._buf + chunk
            self._buf = b""
            if len(chunk) < len(_BOM) and _BOM.startswith(chunk):
                self._buf = chunk  # could still be a BOM: wait for more bytes
                return []
            self._started = True
            if chunk.startswith(_BOM):
                chunk = chunk[len(_BOM) :]
        if self._skip_lf and chunk:
            # The previous chunk ended in CR: a LF right after it is the same line end.
            self._skip_lf = False
            if chunk[0] == 10:
                chunk = chunk[1:]
        buf = self._buf + chunk if self._buf else chunk
        if not buf:
            return []
        lines = buf.splitlines(keepends=True)
        last = lines[-1]
        if last.endswith(_LINE_ENDS):
            self._buf = b""
            # A lone CR may be the first half of a CRLF split across chunks.
            self._skip_lf = last[-1] == 13
        else:
            self._buf = lines.pop()
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
        self._buf = b""
        self._skip_lf = False
        self._data = []
        self._event = ""
        self._retry = None

    def _dispatch(self) -> ServerSentEvent:
        data = "\n".join(self._data)
        event = ServerSentEvent(data, self._event or "message", self._last_id, self._retry)
        self._data = []
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
            self._data.append(value.decode("utf-8", "replace"))
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"id":
            if b"\x00" not in value:
                self._last_id = value.decode("utf-8", "replace")
        elif name == b"retry" and value.isdigit():
            self._retry = int(value)
