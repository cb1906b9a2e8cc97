"""Datasets: schema-valid records, time series and event streams, written to files.

``Synth.generate_structured`` / ``generate_timeseries`` / ``generate_events`` (and
their synchronous twins in :mod:`agentic_synth`) return a :class:`Dataset`.
"""

from __future__ import annotations

from typing import Any

from ._builtin import BUILTIN_SCHEMAS, builtin_schema

__all__ = [
    "BUILTIN_SCHEMAS",
    "Dataset",
    "DatasetStats",
    "SchemaSpec",
    "SlotFailure",
    "SlotResult",
    "StructuredStream",
    "builtin_schema",
    "open_sink",
]

_LAZY = {
    "Dataset": "._dataset",
    "DatasetStats": "._dataset",
    "SlotFailure": "._dataset",
    "SlotResult": "._structured",
    "StructuredStream": "._generate",
    "SchemaSpec": "._schema",
    "open_sink": "._sinks",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module, __name__), name)
