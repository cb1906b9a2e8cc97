"""Cache keys: a digest of everything that decides an answer, and which sample it is.

The key covers the job's models (in preference order), the messages, the system
prompt, every parameter that changes the output (``max_tokens``, ``temperature``,
``top_p``, ``stop``, the JSON Schema, provider extras), the *sample identity* and
a namespace. It leaves out what does not change the answer: the timeout, dict
order, and ``cache_control`` markers anywhere in the extras.

The sample identity is which occurrence of this exact request the input is
within the job (0 for the first, 1 for the second, ...), or the sample number
of an input that asks for several: N intended samples of one prompt are N keys,
so a cache can replay samples but never merge them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .._core import fingerprint
from .._request import canonical_bytes
from .._types import Request

__all__ = [
    "cache_key",
    "key_prefix",
    "request_digest",
    "sample_key",
    "strip_cache_control",
    "without_cache_control",
]

#: Bumped when the key's definition changes, so old entries are never misread.
_KEY_VERSION = b"synth-cache-key/1\x1f"


def strip_cache_control(value: Any) -> Any:
    """``value`` without any ``cache_control`` entry, at any depth (it marks where a
    provider may cache a prefix; it never changes the answer)."""
    if isinstance(value, Mapping):
        return {k: strip_cache_control(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray):
        return [strip_cache_control(v) for v in value]
    return value


def without_cache_control(request: Request) -> Request:
    """``request`` with no ``cache_control`` in its extras (itself when it has none)."""
    if not request.extra or not _mentions_cache_control(request.extra):
        return request
    return Request(
        request.messages,
        request.max_tokens,
        request.system,
        request.temperature,
        request.top_p,
        request.stop,
        request.json_schema,
        request.timeout,
        strip_cache_control(request.extra),
    )


def request_digest(request: Request, models: Sequence[str]) -> bytes:
    """16-byte digest of everything in ``request`` that decides its answer from
    ``models`` (the sample identity and namespace come on top)."""
    return fingerprint(canonical_bytes(without_cache_control(request), "\x1e".join(models)))


def key_prefix(namespace: str) -> bytes:
    """The part of every key that a namespace decides (computed once per cache)."""
    return _KEY_VERSION + f"{len(namespace)}:{namespace}".encode("utf-8", "surrogatepass")


def sample_key(prefix: bytes, digest: bytes, sample: int) -> bytes:
    """The key of the ``sample``-th answer to the request with ``digest``."""
    return fingerprint(prefix + str(sample).encode() + b"\x1f" + digest)


def cache_key(
    request: Request,
    *,
    models: Sequence[str],
    sample: int = 0,
    namespace: str = "",
) -> bytes:
    """16-byte key of ``request``'s ``sample``-th answer from ``models``."""
    return sample_key(key_prefix(namespace), request_digest(request, models), sample)


def _mentions_cache_control(value: Any) -> bool:
    if isinstance(value, Mapping):
        return "cache_control" in value or any(_mentions_cache_control(v) for v in value.values())
    if isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray):
        return any(_mentions_cache_control(v) for v in value)
    return False
