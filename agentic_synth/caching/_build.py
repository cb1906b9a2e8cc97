"""From ``Synth(cache=...)`` settings to open tiers and a :class:`ResponseCache`."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from .._exceptions import ConfigurationError
from ._base import CacheTier
from ._cache import Cache, ResponseCache, SyncTier

__all__ = ["open_cache"]


async def open_cache(
    settings: Cache, *, models: Sequence[str], clock: Callable[[], float] = time.monotonic
) -> ResponseCache:
    """Open every tier the settings name (files, connections) and the cache over them."""
    memory: SyncTier | None = None
    tiers: list[CacheTier] = []
    try:
        for spec in settings.tiers:
            tier = _tier(spec, settings, clock)
            if hasattr(tier, "get_nowait"):
                if memory is not None:
                    raise ConfigurationError("a cache has at most one in-memory tier")
                memory = tier
            else:
                opener = getattr(tier, "open", None)
                if opener is not None:
                    await opener()
                tiers.append(tier)
    except BaseException:
        for opened in tiers:
            await opened.aclose()
        raise
    return ResponseCache(settings, memory=memory, tiers=tiers, models=models, clock=clock)


def _tier(spec: Any, settings: Cache, clock: Callable[[], float]) -> Any:
    if not isinstance(spec, str):
        if hasattr(spec, "get_nowait") or isinstance(spec, CacheTier):
            return spec
        raise ConfigurationError(
            f"a cache tier is 'memory', a file path, a 'redis://' URL or a tier object, "
            f"got {type(spec).__name__}"
        )
    if spec == "memory":
        from ._memory import MemoryTier

        return MemoryTier(
            max_entries=settings.memory_entries,
            max_bytes=settings.memory_bytes,
            ttl=settings.memory_ttl,
            clock=clock,
        )
    if spec.startswith(("redis://", "rediss://", "unix://")):
        from ._redis import RedisTier

        return RedisTier(spec, ttl=settings.ttl)
    if "://" in spec:
        raise ConfigurationError(
            f"unknown cache URL {spec!r}; use a file path (SQLite) or redis://host:port/db"
        )
    from ._sqlite import SQLiteTier

    return SQLiteTier(spec, durability=settings.durability, ttl=settings.ttl)
