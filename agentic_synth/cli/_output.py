"""Where result lines go, without ever destroying a file by mistake.

A file is opened up front in append mode: that proves it can be written (a
missing directory or a directory path fails before any request is sent) and
truncates nothing. It is emptied only when the job has shown it produces: at
its first success, once more inputs failed than ``hold`` (one wave of requests),
or when it ends. Failures before that are held back, so a job that stops on its
own (every key rejected, every account out of quota: the engine fails a few
inputs, then stops) leaves an existing file exactly as it was.

Lines are buffered and written whole, in one ``write`` per flush from a worker
thread (a slow disk or pipe does not stall requests in flight), so a file never
ends in half a line, even after ``kill -9``.
"""

from __future__ import annotations

import enum
import os
import stat
import sys
import time

import anyio

from .._exceptions import ConfigurationError
from ._common import os_reason

__all__ = ["FLUSH_SECONDS", "End", "Output"]

#: Bytes buffered before a flush; a flush also happens at least every FLUSH_SECONDS.
_FLUSH_BYTES = 1 << 16
FLUSH_SECONDS = 1.0
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)  # not on Windows


class End(enum.Enum):
    """How the job ended, which decides what becomes of held lines and an old file."""

    #: Ran to the end: whatever it produced (even nothing) is the new content.
    COMPLETE = "complete"
    #: Stopped by the user or a broken input: keep every line it produced.
    STOPPED = "stopped"
    #: Stopped on its own error: held failures are dropped, an old file stays as it was.
    FAILED = "failed"


def open_to_append(flag: str, target: str) -> tuple[int, bool]:
    """``(descriptor, existed)``: ``target`` opened to append (created if missing, an
    existing file untouched), or a ConfigurationError naming ``flag`` and the fix."""
    if os.path.isdir(target):
        raise ConfigurationError(f"{flag} {target} is a directory; name a file in it")
    parent = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(parent):
        raise ConfigurationError(
            f"{flag} {target}: directory {parent} does not exist; create it first"
        )
    existed = os.path.lexists(target)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _CLOEXEC, 0o666)
    except OSError as exc:
        raise ConfigurationError(f"cannot write {flag} {target}: {os_reason(exc)}") from None
    return fd, existed


class Output:
    """A results file (or stdout) written a batch of whole lines at a time."""

    def __init__(self, fd: int, name: str, *, path: str | None, created: bool, hold: int) -> None:
        self.name = name
        self._fd = fd
        self._path = path  # None: stdout, never truncated or removed
        self._created = created
        self._regular = stat.S_ISREG(os.fstat(fd).st_mode)
        self._hold = hold
        self._held: list[bytes] | None = [] if hold > 0 else None  # None: committed
        self._started = False
        self._buffer: list[bytes] = []
        self._size = 0
        self._flushed_at = time.monotonic()
        self._lock = anyio.Lock()

    @classmethod
    def open(cls, flag: str, target: str, *, hold: int = 0) -> Output:
        """``-`` is stdout. Raises ConfigurationError naming ``flag`` if ``target``
        cannot be written; changes nothing in an existing file. Up to ``hold``
        failure lines before the first success are held back (see the module doc)."""
        if target == "-":
            if sys.stdout is None:  # Python found no descriptor 1 at startup
                raise ConfigurationError(f"{flag} -: stdout is closed; pass {flag} FILE")
            return cls(1, "<stdout>", path=None, created=False, hold=hold)
        fd, existed = open_to_append(flag, target)
        return cls(fd, target, path=target, created=not existed, hold=hold)

    def identity(self) -> tuple[int, int] | None:
        """(device, inode) of a regular file, to refuse writing over the input."""
        if not self._regular:
            return None
        st = os.fstat(self._fd)
        return st.st_dev, st.st_ino

    def add(self, line: bytes, ok: bool = True) -> bool:
        """Buffer one whole line; True when a flush is due."""
        held = self._held
        if held is not None:
            if not ok and len(held) < self._hold:
                held.append(line)
                return False
            self._commit()
        self._buffer.append(line)
        self._size += len(line)
        return self._size >= _FLUSH_BYTES

    def _commit(self) -> None:
        """The job produces: held failures go out first, in the order they came."""
        if self._held:
            self._buffer.extend(self._held)
            self._size += sum(map(len, self._held))
        self._held = None

    def write_now(self, data: bytes) -> None:
        """Write whole lines now from the calling thread, for a producer that runs off
        the event loop (a computed dataset); what was held or buffered goes first."""
        self._commit()
        if self._buffer:
            data = self._take() + data
        self._write_all(data)

    async def flush(self) -> None:
        """Write what is buffered from a worker thread (a write, once started, finishes)."""
        async with self._lock:  # the buffer is taken inside the lock: flushes stay in order
            if self._buffer:
                await anyio.to_thread.run_sync(self._write_all, self._take())

    async def flush_every(self, seconds: float) -> None:
        """Flush what a slow trickle of results left in the buffer, forever."""
        while True:
            await anyio.sleep(seconds)
            if time.monotonic() - self._flushed_at >= seconds:
                await self.flush()

    def _take(self) -> bytes:
        data = b"".join(self._buffer)
        self._buffer.clear()
        self._size = 0
        self._flushed_at = time.monotonic()
        return data

    def _write_all(self, data: bytes) -> None:
        self._start()
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise ConfigurationError(f"cannot write {self.name}: {os_reason(exc)}") from None

    def _start(self) -> None:
        """Empty an existing file just before its first line (never earlier)."""
        if self._started:
            return
        self._started = True
        if self._regular and self._path is not None:
            os.ftruncate(self._fd, 0)

    def close(self, end: End) -> None:
        """Write the rest as ``end`` says; a file that was never started is left as it
        was (and removed if this run created it), unless the job completed."""
        try:
            if end is not End.FAILED:
                self._commit()
            if self._buffer:
                self._write_all(self._take())
            elif end is End.COMPLETE:
                self._start()
        finally:
            if self._path is not None:
                os.close(self._fd)
                if self._created and not self._started:
                    try:
                        os.unlink(self._path)
                    except OSError:
                        pass
