"""What every cache tier stores and promises: bytes under a 16-byte key.

A tier never sees a request or a completion: the key is
:func:`~agentic_synth.caching.cache_key` (a digest of the canonical request, its
sample identity and a namespace) and the value is :class:`CachedResult` encoded
by :meth:`CachedResult.to_bytes`. Only successes are stored.

Semantics every tier follows:

* **first write wins**: ``put`` of a key already present keeps the stored value
  (a resumed job replays the answer it first got, never a later one);
* ``ttl`` is seconds from the write (``None``: no expiry); an expired entry reads
  as a miss;
* ``put`` returns once the value is as durable as the tier makes it (committed,
  for a persistent tier): a result is acknowledged only after that.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .._types import Completion, Usage

__all__ = ["CacheTier", "CachedResult", "LeasingTier", "TierStats"]


@dataclass(slots=True)
class TierStats:
    """Counters of one tier. ``hit_rate`` = hits / (hits + misses)."""

    name: str
    entries: int = 0
    bytes: int = 0
    hits: int = 0
    misses: int = 0
    writes: int = 0
    evictions: int = 0
    errors: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def hit_rate(self) -> float | None:
        looked = self.hits + self.misses
        return None if looked == 0 else self.hits / looked


@runtime_checkable
class CacheTier(Protocol):
    """One level of the response cache (memory, SQLite file, Redis)."""

    #: Short name for metrics and logs: ``"memory"``, ``"sqlite"``, ``"redis"``.
    name: str

    async def get(self, key: bytes) -> bytes | None:
        """The value stored under ``key``, or ``None`` (absent or expired)."""
        ...

    async def put(self, key: bytes, value: bytes, *, ttl: float | None = None) -> None:
        """Store ``value`` unless ``key`` is present; return once it is durable."""
        ...

    async def delete(self, key: bytes) -> None: ...

    async def clear(self) -> int:
        """Drop every entry; returns how many there were (when known, else 0)."""
        ...

    def stats(self) -> TierStats: ...

    async def aclose(self) -> None:
        """Flush what is pending and release files and connections."""
        ...


@runtime_checkable
class LeasingTier(CacheTier, Protocol):
    """A tier shared by several processes: a lease says who pays for a call."""

    async def lease(self, key: bytes, seconds: float) -> bool:
        """Take the lease on ``key`` for ``seconds`` if nobody holds it."""
        ...

    async def release(self, key: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class CachedResult:
    """What a cache keeps of a successful completion: enough to replay it exactly."""

    text: str
    model: str
    usage: Usage
    finish_reason: str
    raw_finish_reason: str | None
    request_id: str | None
    #: Wall-clock time (epoch seconds) the answer was stored.
    stored_at: float

    @classmethod
    def of(cls, completion: Completion) -> CachedResult:
        return cls(
            completion.text,
            completion.model,
            completion.usage,
            completion.finish_reason,
            completion.raw_finish_reason,
            completion.request_id,
            time.time(),
        )

    def to_bytes(self) -> bytes:
        u = self.usage
        return json.dumps(
            [
                1,  # format version
                self.text,
                self.model,
                [
                    u.input_tokens,
                    u.output_tokens,
                    u.cache_creation_input_tokens,
                    u.cache_read_input_tokens,
                    u.cache_creation_1h_input_tokens,
                ],
                self.finish_reason,
                self.raw_finish_reason,
                self.request_id,
                self.stored_at,
            ],
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode("utf-8", "surrogatepass")

    @classmethod
    def from_bytes(cls, data: bytes) -> CachedResult:
        """Inverse of :meth:`to_bytes`; ``ValueError`` on anything else."""
        try:
            version, text, model, usage, finish, raw, request_id, stored_at = json.loads(
                data.decode("utf-8", "surrogatepass")
            )
            if version != 1:
                raise ValueError(f"unknown cache entry format {version!r}")
            return cls(
                str(text),
                str(model),
                Usage(*(int(n) for n in usage)),
                str(finish),
                None if raw is None else str(raw),
                None if request_id is None else str(request_id),
                float(stored_at),
            )
        except (TypeError, UnicodeDecodeError) as exc:
            raise ValueError(f"not a cache entry: {exc}") from exc

    def completion(self, *, index: int | None, latency: float) -> Completion:
        """The replayed :class:`Completion` (``cached=True``, one attempt, no fallbacks)."""
        u = self.usage
        return Completion(
            text=self.text,
            model=self.model,
            usage=Usage(
                u.input_tokens,
                u.output_tokens,
                u.cache_creation_input_tokens,
                u.cache_read_input_tokens,
                u.cache_creation_1h_input_tokens,
            ),
            latency=latency,
            finish_reason=self.finish_reason,
            attempts=0,
            cached=True,
            request_id=self.request_id,
            index=index,
            raw_finish_reason=self.raw_finish_reason,
            cost=0.0,  # replayed: nothing paid this time
        )
