"""Structured logs that go where the application sends its logging.

structlog's default prints to stdout, which would corrupt a JSONL stream on
stdout and ignore the user's logging setup. Here each event is rendered as
``event key=value ...`` and handed to a stdlib :mod:`logging` logger, so the
usual handlers, levels and filters apply (warnings reach stderr by default).

structlog is imported at a logger's first event, not with the package: importing it
imports rich as well where rich is installed (``structlog.dev``'s tracebacks), some
85 ms that a run without a warning never needs.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["get_logger"]


class _Logger:
    """Stands in for the structlog logger of ``name`` until its first use."""

    __slots__ = ("_logger", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._logger: Any = None

    def __getattr__(self, attr: str) -> Any:
        if self._logger is None:
            self._logger = _wrap(self._name)
        return getattr(self._logger, attr)


def _wrap(name: str) -> Any:
    import structlog

    return structlog.wrap_logger(
        logging.getLogger(name),
        processors=[
            structlog.processors.format_exc_info,
            structlog.processors.KeyValueRenderer(key_order=["event"], drop_missing=True),
        ],
        wrapper_class=structlog.stdlib.BoundLogger,
    )


def get_logger(name: str) -> Any:
    """A structlog logger for ``name`` that emits through ``logging.getLogger(name)``."""
    return _Logger(name)
