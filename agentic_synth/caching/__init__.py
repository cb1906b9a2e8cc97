"""The response cache: settings, tiers (memory, SQLite, Redis), keys and entries.

``Synth(cache=...)`` takes a :class:`Cache` (or a path, URL or tier list that
stands for one); the tier classes are here for those who build tiers themselves
(a SQLite file with another durability, a Redis with another prefix).
"""

from ._base import CachedResult, CacheTier, LeasingTier, TierStats
from ._cache import Cache, CacheControl, CacheMode
from ._key import cache_key, strip_cache_control
from ._memory import MemoryTier
from ._sqlite import SQLiteTier

__all__ = [
    "Cache",
    "CacheControl",
    "CacheMode",
    "CacheTier",
    "CachedResult",
    "LeasingTier",
    "MemoryTier",
    "RedisTier",
    "SQLiteTier",
    "TierStats",
    "cache_key",
    "strip_cache_control",
]


def __getattr__(name: str) -> object:
    # redis-py costs ~50 ms to import: only for those who use a Redis tier
    if name == "RedisTier":
        from ._redis import RedisTier

        return RedisTier
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
