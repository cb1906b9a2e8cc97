"""Structured logs that go where the application sends its logging.

structlog's default prints to stdout, which would corrupt a JSONL stream on
stdout and ignore the user's logging setup. Here each event is rendered as
``event key=value ...`` and handed to a stdlib :mod:`logging` logger, so the
usual handlers, levels and filters apply (warnings reach stderr by default).
"""

from __future__ import annotations

import logging
from typing import Any

import structlog

__all__ = ["get_logger"]

_PROCESSORS: list[Any] = [
    structlog.processors.format_exc_info,
    structlog.processors.KeyValueRenderer(key_order=["event"], drop_missing=True),
]


def get_logger(name: str) -> Any:
    """A structlog logger for ``name`` that emits through ``logging.getLogger(name)``."""
    return structlog.wrap_logger(
        logging.getLogger(name),
        processors=_PROCESSORS,
        wrapper_class=structlog.stdlib.BoundLogger,
    )
