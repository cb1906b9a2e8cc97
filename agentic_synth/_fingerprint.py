"""Request fingerprints from the compiled core: xxh3-128 over the canonical bytes."""

from __future__ import annotations

from ._core import fingerprint, fingerprint_hex
from ._request import canonical_bytes
from ._types import Request

__all__ = ["request_fingerprint", "request_fingerprint_hex"]


def request_fingerprint(request: Request, model: str = "") -> bytes:
    """16-byte digest identifying an exact repeat of ``request`` (for ``model``)."""
    return fingerprint(canonical_bytes(request, model))


def request_fingerprint_hex(request: Request, model: str = "") -> str:
    return fingerprint_hex(canonical_bytes(request, model))
