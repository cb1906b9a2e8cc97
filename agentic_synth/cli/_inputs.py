"""Turning input lines into engine inputs, off the event loop.

A line is one input: a JSON object (``prompt`` or ``messages``, generation
parameters, anything else carried to the output row), a JSON string, a JSON
list of message objects, or plain text. A line that cannot be one of these
becomes that input's error record (an :class:`InvalidRequestError` handed to the
engine as the input), so one bad line never stops a job. Blank lines are skipped.

Files and stdin are read in a worker thread a chunk at a time (whatever the
pipe has, up to 64 KiB), so a slow producer never stalls requests in flight.
"""

from __future__ import annotations

import codecs
import dataclasses
import json
import os
import select
import stat
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from typing import Any, Protocol

import anyio

from .._exceptions import ConfigurationError, InvalidRequestError
from .._request import GenerationParams

__all__ = ["PARAM_KEYS", "FileSource", "Input", "Source", "TemplateSource", "parse_line"]

#: Keys of a JSON input the engine takes; every other key is carried to the output row.
PARAM_KEYS = frozenset(f.name for f in dataclasses.fields(GenerationParams))
_INPUT_KEYS = PARAM_KEYS | {"prompt", "messages", "id"}
_CHUNK = 1 << 16
#: Seconds between checks for "stop" while waiting on a silent pipe.
_POLL = 0.25


@dataclasses.dataclass(slots=True)
class Input:
    """One input: what the engine gets, and what its output row echoes."""

    value: Any  # a Prompt, or an InvalidRequestError standing for an unreadable line
    id: Any = None
    prompt: Any = None
    extras: dict[str, Any] | None = None


def parse_line(text: str, name: str, lineno: int) -> Input:
    """One non-blank line -> one :class:`Input` (never raises)."""
    head = text[0]
    if head.isspace():
        head = text.lstrip()[:1]
    if head == "{":
        return _object_input(text, name, lineno)
    if head == "[" or head == '"':
        try:
            value = json.loads(text)
        except ValueError:
            value = None  # `[citation needed] ...`, `"Hi," she said`: plain text
        if isinstance(value, str) or (
            isinstance(value, list) and value and all(isinstance(m, dict) for m in value)
        ):
            return Input(value, prompt=value)
    return Input(text, prompt=text)


def _object_input(text: str, name: str, lineno: int) -> Input:
    try:
        obj = json.loads(text)
    except ValueError as exc:
        where = f", column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        return Input(
            InvalidRequestError(
                f"{name}:{lineno}: not valid JSON ({getattr(exc, 'msg', exc)}{where}); "
                "write one JSON object per line (a text prompt must not start with '{')"
            )
        )
    if not isinstance(obj, dict):  # `{} x` and the like never parse, but be sure
        return Input(InvalidRequestError(f"{name}:{lineno}: not a JSON object"))
    extras = {k: v for k, v in obj.items() if k not in _INPUT_KEYS} or None
    ident = obj.get("id")
    has_prompt, has_messages = "prompt" in obj, "messages" in obj
    if has_prompt == has_messages:
        got = ", ".join(sorted(obj)) or "none"
        error = InvalidRequestError(
            f"{name}:{lineno}: a JSON object needs exactly one of 'prompt' or 'messages' "
            f"(got keys: {got})"
        )
        return Input(error, ident, None, extras)
    key = "prompt" if has_prompt else "messages"
    prompt = obj[key]
    params = {k: v for k, v in obj.items() if k in PARAM_KEYS}
    if params or not isinstance(prompt, str):
        params[key] = prompt
        return Input(params, ident, prompt, extras)
    return Input(prompt, ident, prompt, extras)  # the engine's fast path: a bare string


class Source(Protocol):
    """Where inputs come from; ``feed`` is what the engine iterates over."""

    #: Why reading stopped early (a line that is not UTF-8, a read error), if it did.
    error: str | None

    def feed(self, inputs: dict[int, Input]) -> Iterable[Any] | AsyncIterable[Any]:
        """The engine's inputs. Each is registered in ``inputs`` under the index the
        engine gives it (inputs are numbered in the order they are pulled) so its row
        can echo it; the caller removes the entry when the row is written."""
        ...

    def stop(self) -> None: ...


class TemplateSource:
    """``--prompt TEMPLATE``: ``{i}`` becomes 0..count-1."""

    error: str | None = None

    def __init__(self, template: str, count: int) -> None:
        self._template = template
        self._count = count
        self._stopped = False

    def feed(self, inputs: dict[int, Input]) -> Iterator[str]:
        """A plain generator: nothing here can block, and the engine pulls from a
        synchronous iterator more cheaply than from an asynchronous one."""
        template = self._template
        for i in range(self._count):
            if self._stopped:
                return
            prompt = template.replace("{i}", str(i))
            inputs[i] = Input(prompt, prompt=prompt)
            yield prompt

    def stop(self) -> None:
        self._stopped = True


class FileSource:
    """Lines of a file or of stdin, read and parsed in a worker thread."""

    def __init__(self, fd: int, name: str, *, owned: bool) -> None:
        self.name = name
        self.error: str | None = None
        self._fd = fd
        self._owned = owned
        # select() tells when a pipe or terminal has data, so a read never blocks for long
        # and stop() is noticed; regular files always have data (or EOF) at once.
        self._poll = os.name == "posix" and not stat.S_ISREG(os.fstat(fd).st_mode)
        self._pieces: list[bytes] = []  # the current line, not yet ended by a newline
        self._lineno = 0
        self._done = False

    @classmethod
    def open(cls, path: str) -> FileSource:
        """``-`` is stdin; a missing, unreadable or directory path raises now."""
        if path == "-":
            try:
                fd = os.dup(0)  # our own descriptor: closing it leaves fd 0 alone
            except OSError:
                raise ConfigurationError("--input -: stdin is closed; pass --input FILE") from None
            return cls(fd, "<stdin>", owned=True)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise ConfigurationError(
                f"--input {path} does not exist; pass a JSONL or text file ('-' for stdin)"
            ) from None
        except OSError as exc:
            raise ConfigurationError(f"cannot read --input {path}: {exc.strerror}") from None
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            os.close(fd)
            raise ConfigurationError(f"--input {path} is a directory; pass a JSONL or text file")
        return cls(fd, path, owned=True)

    def identity(self) -> tuple[int, int]:
        """(device, inode), to refuse writing the results over the input."""
        st = os.fstat(self._fd)
        return st.st_dev, st.st_ino

    async def feed(self, inputs: dict[int, Input]) -> AsyncIterator[Any]:
        index = 0
        while not self._done:
            # abandon_on_cancel: Ctrl-C must not wait for a pipe that has nothing to say
            batch = await anyio.to_thread.run_sync(self._read_batch, abandon_on_cancel=True)
            if batch is None:
                return
            for item in batch:
                inputs[index] = item
                index += 1
                yield item.value

    def values(self) -> Iterator[Any]:
        """Every input, read here and now (``--dry-run``: nothing runs alongside)."""
        while (batch := self._read_batch()) is not None:
            for item in batch:
                yield item.value

    def stop(self) -> None:
        """Stop reading (a worker thread waiting on a pipe notices within _POLL seconds)."""
        self._done = True

    def close(self) -> None:
        self.stop()
        if self._owned:
            self._owned = False
            os.close(self._fd)

    def _read_batch(self) -> list[Input] | None:
        """The inputs of the next chunk (at least one, unless the input ended)."""
        items: list[Input] = []
        while not items and not self._done:
            data = self._read()
            if data is None:
                return None
            if data:
                if b"\n" not in data:
                    self._pieces.append(data)
                    continue
                if self._pieces:
                    data = b"".join(self._pieces) + data
                    self._pieces.clear()
                lines = data.split(b"\n")
                tail = lines.pop()
                if tail:
                    self._pieces.append(tail)
            else:  # end of input: a last line without a newline still counts
                self._done = True
                lines = [b"".join(self._pieces)] if self._pieces else []
            self._parse(lines, items.append)
        return items or None

    def _read(self) -> bytes | None:
        """Some bytes, b"" at the end, None when stopped or failed (``error`` says why)."""
        try:
            while self._poll and not self._done:
                if select.select([self._fd], [], [], _POLL)[0]:
                    break
            if self._done:
                return None
            return os.read(self._fd, _CHUNK)
        except OSError as exc:
            if not self._done:  # not the descriptor closed under a reader told to stop
                self.error = f"cannot read {self.name} after line {self._lineno}: {exc.strerror}"
                self._done = True
            return None

    def _parse(self, lines: list[bytes], add: Callable[[Input], None]) -> None:
        name = self.name
        for raw in lines:
            self._lineno += 1
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            if self._lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            try:
                text = raw.decode()
            except UnicodeDecodeError as exc:
                self.error = (
                    f"{name}:{self._lineno}: not UTF-8 (byte 0x{raw[exc.start]:02x} at "
                    f"position {exc.start + 1}); convert the file, e.g. "
                    "iconv -f latin1 -t utf-8 IN > OUT"
                )
                self._done = True
                return
            if text and not text.isspace():
                add(parse_line(text, name, self._lineno))
