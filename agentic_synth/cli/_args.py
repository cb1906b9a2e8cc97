"""Checks on parsed arguments, run before anything is opened, read or sent.

argparse checks syntax (``-c x`` is not an int); these check meaning, and each
message names the flag, so one line on stderr says what to change.
"""

from __future__ import annotations

import argparse
import errno
import math
from typing import NoReturn

from .._exceptions import ConfigurationError

__all__ = ["OneLineParser", "bind_problem", "check_range"]


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (not the usage block), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def check_range(
    flag: str,
    value: float | None,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
) -> None:
    """Raise unless ``value`` is None or a finite number within the bounds
    (``low_open``: ``low`` itself excluded)."""
    if value is None:
        return
    if (
        math.isfinite(value)
        and (low is None or (value > low if low_open else value >= low))
        and (high is None or value <= high)
    ):
        return
    if low is not None and high is not None:
        want = f"in {'(' if low_open else '['}{low:g}, {high:g}]"
    elif low is not None:
        want = f"{'>' if low_open else '>='} {low:g}"
    else:
        want = f"<= {high:g}"
    raise ConfigurationError(f"{flag} must be {want}, got {value:g}")


def bind_problem(
    exc: OSError, host: str, port: int, *, port_flag: str = "--port", host_flag: str = "--host"
) -> str:
    """What to change when listening on ``host:port`` failed, naming the flags."""
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} is in use; pick another with {port_flag} (0 picks a free one)"
    if exc.errno == errno.EACCES:
        return f"port {port} needs privileges here; pick one above 1023 with {port_flag}"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{host_flag} {host} is not an address of this machine"
    return f"cannot listen on {host}:{port}: {(exc.strerror or str(exc)).lower()}"
