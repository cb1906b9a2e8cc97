"""The shared tier: Redis, for several processes or machines running one job.

Values are ``SET key value NX PX ttl`` (first write wins, Redis expires them);
a lease is ``SET lease-key token NX PX`` on a separate key, so two workers never
pay for the same call, and only its holder's token releases it.

Redis is a helper here, never a dependency of the job: when it is unreachable
or goes away mid-run the tier logs ONE warning, counts the error, and answers
as a miss (``get``), a no-op (``put``) or a granted lease (``lease``: with no
shared store, this worker pays), so the engine carries on with its local tiers.
It does not retry on every call: after a failure it stays quiet for a back-off
(1 s, doubling to 30 s) and the first call after that tries again; a success
ends the outage (and re-arms the warning for the next one).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.exceptions import RedisError

from .._exceptions import redact_url
from .._log import get_logger
from .._redis_client import open_redis
from ._base import TierStats

__all__ = ["RedisTier"]

log = get_logger("agentic_synth.caching")

T = TypeVar("T")

# Delete the lease only if we still hold it (it may have expired and been retaken).
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class RedisTier:
    """Entries under ``prefix`` in the Redis at ``url`` (``redis://``, ``rediss://``
    or ``unix://``), shared by every process that uses the same URL and prefix.

    ``ttl`` is the longest an entry lives (``None``: until Redis evicts it); a
    put's own ``ttl`` can only shorten it. ``timeout`` bounds each call (connect
    and answer), so a hung server costs at most that before the tier backs off.
    """

    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        ttl: float | None = None,
        prefix: str = "synth:v1:",
        timeout: float = 1.0,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl is not None and not ttl > 0:
            raise ValueError("ttl must be > 0 seconds or None")
        self.url = url
        self.ttl = ttl
        self.prefix = prefix
        self._prefix = prefix.encode()
        self._client: Any = open_redis(url, timeout=timeout)  # retries: ours only
        self._release = self._client.register_script(_RELEASE)
        self._token = os.urandom(12).hex().encode()
        self._clock = clock
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._delay = backoff
        self._down_until: float | None = None
        self._probing = False
        self._warned = False
        self._hits = self._misses = self._writes = self._ignored = self._errors = 0
        self._skipped = self._outages = 0

    # -- CacheTier -----------------------------------------------------------

    async def get(self, key: bytes) -> bytes | None:
        value: bytes | None = await self._call(lambda: self._client.get(self._key(key)), None)
        if value is None:
            if self._down_until is None:
                self._misses += 1
            return None
        self._hits += 1
        return value

    async def put(self, key: bytes, value: bytes, *, ttl: float | None = None) -> None:
        """Store ``value`` unless ``key`` is present; returns once Redis has it."""
        limit = self.ttl if ttl is None else ttl if self.ttl is None else min(ttl, self.ttl)
        px = None if limit is None else max(1, math.ceil(limit * 1000))
        stored = await self._call(
            lambda: self._client.set(self._key(key), value, nx=True, px=px), None
        )
        if stored:
            self._writes += 1
        elif self._down_until is None:
            self._ignored += 1

    async def delete(self, key: bytes) -> None:
        await self._call(lambda: self._client.delete(self._key(key)), 0)

    async def clear(self) -> int:
        """Delete every entry and lease under this prefix (SCAN, not KEYS: the
        server keeps answering others meanwhile)."""

        async def run() -> int:
            count = 0
            batch: list[bytes] = []
            async for name in self._client.scan_iter(match=_glob_escape(self._prefix) + b"*"):
                batch.append(name)
                if len(batch) == 512:
                    count += await self._client.unlink(*batch)
                    batch.clear()
            if batch:
                count += await self._client.unlink(*batch)
            return count

        cleared: int = await self._call(run, 0)
        return cleared

    def stats(self) -> TierStats:
        """Counters of this client (Redis is shared: ``entries`` and ``bytes``
        are not known here and stay 0)."""
        return TierStats(
            name=self.name,
            hits=self._hits,
            misses=self._misses,
            writes=self._writes,
            errors=self._errors,
            extra={
                "url": redact_url(self.url),
                "prefix": self.prefix,
                "ignored": self._ignored,
                "down": self._down_until is not None,
                "outages": self._outages,
                "skipped": self._skipped,
            },
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- LeasingTier ---------------------------------------------------------

    async def lease(self, key: bytes, seconds: float) -> bool:
        """Take the lease on ``key`` for ``seconds`` unless another holder has it.
        With Redis unreachable the answer is True: this worker pays for the call."""
        px = max(1, math.ceil(seconds * 1000))
        taken = await self._call(
            lambda: self._client.set(self._lease_key(key), self._token, nx=True, px=px), True
        )
        return bool(taken)

    async def release(self, key: bytes) -> None:
        """Give the lease back if this tier still holds it."""
        await self._call(lambda: self._release(keys=[self._lease_key(key)], args=[self._token]), 0)

    # -- internals -----------------------------------------------------------

    def _key(self, key: bytes) -> bytes:
        return self._prefix + key.hex().encode()

    def _lease_key(self, key: bytes) -> bytes:
        return self._prefix + b"lease:" + key.hex().encode()

    async def _call(self, op: Callable[[], Awaitable[T]], fallback: T) -> T:
        """``op()``, or ``fallback`` while Redis is down (errors counted, one warning).
        Once the back-off is over, one call probes; the others keep skipping."""
        probe = False
        if self._down_until is not None:
            if self._probing or self._clock() < self._down_until:
                self._skipped += 1
                return fallback
            probe = self._probing = True
        try:
            result = await op()
        except (RedisError, OSError) as exc:
            self._failed(exc, probe)
            return fallback
        finally:
            if probe:
                self._probing = False
        if self._down_until is not None:
            self._down_until = None
            self._delay = self._backoff
            self._warned = False
            log.info("redis cache reachable again", url=redact_url(self.url))
        return result

    def _failed(self, exc: BaseException, probe: bool) -> None:
        self._errors += 1
        if self._down_until is None:  # a new outage
            self._outages += 1
            self._delay = self._backoff
        elif probe:  # still down: wait twice as long
            self._delay = min(self._delay * 2, self._max_backoff)
        else:  # a call sent before the outage was noticed
            return
        self._down_until = self._clock() + self._delay
        if not self._warned:
            self._warned = True
            log.warning(
                "redis cache unreachable; continuing on the local tiers",
                url=redact_url(self.url),
                error=f"{type(exc).__name__}: {exc}",
                retry_in_s=self._delay,
            )


def _glob_escape(prefix: bytes) -> bytes:
    out = bytearray()
    for byte in prefix:
        if byte in b"*?[]\\":
            out += b"\\"
        out.append(byte)
    return bytes(out)
