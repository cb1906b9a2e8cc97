"""Running the ``synth`` command line in a subprocess, as a user would."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

SYNTH = [sys.executable, "-m", "agentic_synth.cli"]


class Runner(Protocol):
    def __call__(
        self, *args: str, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]: ...


def read_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def one_line_error(err: str) -> str:
    """The single stderr line of a refused command (and never a traceback)."""
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def read_line(stream: Any, deadline: float = 60.0) -> str:
    """One line from a child's pipe, or fail after ``deadline`` seconds (no hang)."""
    import selectors

    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        assert selector.select(deadline), "no output from synth"
    line: str = stream.readline()
    return line


@contextmanager
def busy_port() -> Iterator[int]:
    """A loopback port something else is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]
