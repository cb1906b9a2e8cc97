"""The process's standard streams when the other end goes away.

Python's advice for a closed stdout pipe (``synth generate | head -n 3``): stop,
point stdout at /dev/null so the flush at exit cannot raise again, and exit
without a traceback. Messages to a closed stderr are dropped the same way.
"""

from __future__ import annotations

import os
import sys

__all__ = ["say", "silence_stdout"]


def silence_stdout() -> None:
    """Send whatever is still buffered for stdout to /dev/null (the reader is gone)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, AttributeError, ValueError):
        pass  # no usable stdout at all: nothing will be flushed to it either


def say(message: str, *, end: str = "\n") -> None:
    """Print one message on stderr; a closed stderr is not worth a traceback."""
    try:
        print(message, end=end, file=sys.stderr, flush=True)
    except (OSError, AttributeError, ValueError):
        pass
