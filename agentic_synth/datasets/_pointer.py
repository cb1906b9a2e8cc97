"""Local JSON pointers (``#/$defs/Item``) into a schema, shared by the schema's
column finder and the sinks' column typing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["MISSING", "follow_pointer"]

#: What :func:`follow_pointer` gives for a pointer that leads nowhere.
MISSING: Any = object()


def follow_pointer(root: Any, ref: str) -> Any:
    """The node ``ref`` (``#`` or ``#/a/b``, RFC 6901 escapes) points at in ``root``,
    or :data:`MISSING`. A plain-name fragment (``#anchor``) is taken as the root."""
    target = root
    for part in ref[1:].split("/")[1:] if ref.startswith("#/") else []:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(target, Mapping) and part in target:
            target = target[part]
        elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
            target = target[int(part)]
        else:
            return MISSING
    return target
