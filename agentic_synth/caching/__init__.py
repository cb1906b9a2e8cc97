"""The response cache: tiers (memory, SQLite, Redis), keys and what they store."""

from ._base import CachedResult, CacheTier, LeasingTier, TierStats
from ._key import cache_key, strip_cache_control

__all__ = [
    "CacheTier",
    "CachedResult",
    "LeasingTier",
    "TierStats",
    "cache_key",
    "strip_cache_control",
]
