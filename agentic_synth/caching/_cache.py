"""The response cache: tiers in order, sample identities, single-flight, per-call controls.

``Synth(cache=...)`` builds a :class:`ResponseCache` from a :class:`Cache`
setting. A lookup tries the in-memory tier (synchronously: it is in front of
everything), then each persistent tier in order; a hit in a lower tier is copied
to the memory tier. A store writes every tier and returns once the persistent
ones have committed, so a result is handed on only when a rerun would find it.

Two modes:

* ``"samples"`` (default): every input is its own sample. The key carries the
  sample identity (which occurrence of that exact request the input is within
  the job), so 50 identical inputs are 50 calls and 50 answers, and a rerun
  replays exactly those 50, in order.
* ``"shared"``: identical requests share one answer (temperature-0 work such as
  judging or labelling): concurrent identical requests make one call
  (single-flight), later ones replay it. With ``similarity=`` a deterministic
  request (``temperature=0``) may also reuse the answer of a near-identical one
  (compiled similarity index), scoped by models, parameters and system prompt.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import anyio

from .._core import SampleCounter, fingerprint
from .._exceptions import ConfigurationError, InvalidRequestError
from .._log import get_logger
from .._request import canonical_bytes
from .._types import Completion, Request, Result
from ._base import CachedResult, CacheTier, LeasingTier, TierStats
from ._key import key_prefix, request_digest, sample_key, strip_cache_control

__all__ = ["Cache", "CacheControl", "CacheMode", "ResponseCache", "SyncTier"]

log = get_logger("agentic_synth.caching")

CacheMode = Literal["samples", "shared"]
#: Per call: ``"default"`` reads and stores, ``"no-cache"`` skips the read (and
#: stores the fresh answer), ``"no-store"`` reads but does not store, ``"off"`` neither.
CacheControl = Literal["default", "no-cache", "no-store", "off"]
_CONTROLS = ("default", "no-cache", "no-store", "off")


class SyncTier(Protocol):
    """The in-memory tier: synchronous, so a hit never waits for the event loop."""

    name: str

    def get_nowait(self, key: bytes) -> bytes | None: ...

    def put_nowait(self, key: bytes, value: bytes, ttl: float | None = None) -> None: ...

    def stats(self) -> TierStats: ...


@dataclass(frozen=True, slots=True)
class Cache:
    """Response cache settings (``Synth(cache=Cache(...))``).

    ``tiers``: in lookup order, each ``"memory"``, a file path (SQLite, for resume),
    ``"redis://..."`` (shared across processes), or a tier object. A bare path or
    URL given to ``Synth(cache=...)`` means ``("memory", that)``.
    """

    tiers: Sequence[Any] = ("memory",)
    mode: CacheMode = "samples"
    #: Seconds an entry lives in the memory tier (seed guide default: 1 h).
    memory_ttl: float | None = 3600.0
    #: Entries kept in memory (seed guide default: 1000), and their bytes at most.
    memory_entries: int = 1000
    memory_bytes: int = 256 * 1024 * 1024
    #: Seconds an entry lives in the persistent tiers (``None``: for ever).
    ttl: float | None = None
    #: Keys of different namespaces never meet (one cache file, several jobs).
    namespace: str = ""
    #: ``"shared"`` mode: reuse the answer of a near-identical deterministic request
    #: at this Jaccard similarity (e.g. 0.95); ``None``: exact matches only.
    similarity: float | None = None
    #: SQLite tiers: ``"normal"`` (survives a crash of the process) or ``"full"``
    #: (an fsync per commit: survives power loss).
    durability: Literal["normal", "full"] = "normal"
    #: Shared tiers (Redis): how long a process's claim to make a call lasts. Others
    #: wanting the same answer wait for it that long at most, then make it themselves.
    lease_seconds: float = 120.0

    def __post_init__(self) -> None:
        if self.mode not in ("samples", "shared"):
            raise ConfigurationError(f"cache mode must be 'samples' or 'shared', got {self.mode!r}")
        if isinstance(self.tiers, str) or not self.tiers:
            raise ConfigurationError(
                "Cache(tiers=...) takes a list such as ('memory', 'runs/cache.db')"
            )
        for name, ttl in (("memory_ttl", self.memory_ttl), ("ttl", self.ttl)):
            if ttl is not None and not (ttl > 0 and math.isfinite(ttl)):
                raise ConfigurationError(f"{name} must be a positive number of seconds or None")
        if isinstance(self.memory_entries, bool) or not (
            isinstance(self.memory_entries, int) and self.memory_entries >= 1
        ):
            raise ConfigurationError("memory_entries must be an integer >= 1")
        if isinstance(self.memory_bytes, bool) or not (
            isinstance(self.memory_bytes, int) and self.memory_bytes >= 1
        ):
            raise ConfigurationError("memory_bytes must be an integer >= 1")
        if self.similarity is not None:
            if self.mode != "shared":
                raise ConfigurationError(
                    "Cache(similarity=...) needs mode='shared': near-duplicate hits reuse "
                    "another request's answer, which samples must never do"
                )
            if not (0.0 < self.similarity <= 1.0):
                raise ConfigurationError("similarity must be a Jaccard threshold in (0, 1]")
        if self.durability not in ("normal", "full"):
            raise ConfigurationError("durability must be 'normal' or 'full'")
        if not (self.lease_seconds > 0 and math.isfinite(self.lease_seconds)):
            raise ConfigurationError("lease_seconds must be a positive number of seconds")

    @classmethod
    def coerce(cls, value: Any) -> Cache | None:
        """``Synth(cache=...)``'s argument as settings: None, a Cache, "memory", a
        path or URL (memory in front of it), or a list of tiers."""
        if value is None or value is False:
            return None
        if isinstance(value, Cache):
            return value
        if isinstance(value, str):
            return cls(("memory",) if value == "memory" else ("memory", value))
        if isinstance(value, list | tuple):
            return cls(tuple(value))
        if hasattr(value, "get") and hasattr(value, "put"):
            return cls(("memory", value))
        raise ConfigurationError(
            "cache takes 'memory', a file path such as 'runs/cache.db', a 'redis://' URL, "
            f"a list of those, or Cache(...); got {type(value).__name__}"
        )


def check_control(control: str) -> CacheControl:
    if control not in _CONTROLS:
        raise InvalidRequestError(f"cache must be one of {', '.join(_CONTROLS)}, got {control!r}")
    return control  # type: ignore[return-value]


class _Flight:
    """One call in progress for a key (shared mode): later askers wait for it."""

    __slots__ = ("done", "result")

    def __init__(self) -> None:
        self.done: anyio.Event | None = None  # made only when somebody waits
        self.result: Result | None = None


class ResponseCache:
    """The cache of one engine: lookups, stores, sample identities, single-flight."""

    def __init__(
        self,
        settings: Cache,
        *,
        memory: SyncTier | None,
        tiers: Sequence[CacheTier],
        models: Sequence[str],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._memory = memory
        self._tiers = list(tiers)
        #: A tier shared by several processes, whose leases say who pays for a call.
        self._leasing: LeasingTier | None = next(
            (t for t in self._tiers if isinstance(t, LeasingTier)), None
        )
        self.lease_waits = 0
        self._models = tuple(models)
        self._shared = settings.mode == "shared"
        self._samples = None if self._shared else SampleCounter()
        self._prefix = key_prefix(settings.namespace)
        self._flights: dict[bytes, _Flight] = {}
        #: Off while memory is short (the memory governor says): new answers then go
        #: to the persistent tiers only.
        self.memory_admission = True
        self._clock = clock
        self.hits = 0
        self.misses = 0
        self.stores = 0
        self._near: _NearIndex | None = (
            _NearIndex(settings.similarity) if settings.similarity is not None else None
        )

    @property
    def persistent(self) -> bool:
        """Whether a store waits for a tier outside this process (a commit to disk)."""
        return bool(self._tiers)

    # -- keys ----------------------------------------------------------------------

    def key(self, request: Request, sample: int | None = None) -> bytes:
        """The key of ``request``'s next sample (shared mode: of its one answer), or of
        the given ``sample`` (a caller that numbers its samples itself, such as the
        dataset generator's slots, so the numbering does not depend on timing)."""
        digest = request_digest(request, self._models)
        if sample is None:
            sample = 0 if self._samples is None else self._samples.next(digest)
        return sample_key(self._prefix, digest, sample)

    # -- lookups and stores ------------------------------------------------------------

    async def lookup(self, key: bytes) -> CachedResult | None:
        memory = self._memory
        if memory is not None:
            raw = memory.get_nowait(key)
            if raw is not None:
                return CachedResult.from_bytes(raw)
        for i, tier in enumerate(self._tiers):
            raw = await tier.get(key)
            if raw is not None:
                if memory is not None and self.memory_admission:
                    memory.put_nowait(key, raw, self.settings.memory_ttl)
                for upper in self._tiers[:i]:  # e.g. a Redis hit lands in the local file
                    await upper.put(key, raw, ttl=self.settings.ttl)
                return CachedResult.from_bytes(raw)
        return None

    async def store(self, key: bytes, completion: Completion, ttl: float | None) -> None:
        """Keep ``completion``; returns once every persistent tier has it committed."""
        raw = CachedResult.of(completion).to_bytes()
        if self._memory is not None and self.memory_admission:
            self._memory.put_nowait(key, raw, self.settings.memory_ttl)
        tiers = self._tiers
        if len(tiers) == 1:
            await tiers[0].put(key, raw, ttl=ttl)
        elif tiers:
            async with anyio.create_task_group() as tg:
                for tier in tiers:
                    tg.start_soon(_put, tier, key, raw, ttl)
        self.stores += 1

    async def fetch(
        self,
        request: Request,
        index: int | None,
        compute: Callable[[], Awaitable[Result]],
        *,
        control: CacheControl = "default",
        ttl: float | None = None,
        sample: int | None = None,
    ) -> Result:
        """``request``'s result: replayed from the cache, or computed (once per key in
        shared mode) and stored. Only successes are stored."""
        if control == "off":
            return await compute()
        started = self._clock()
        key = self.key(request, sample)
        near = self._near if self._near is not None and request.temperature == 0 else None
        if control != "no-cache":
            cached = await self.lookup(key)
            if cached is None and near is not None:
                other = near.match(request)
                if other is not None:
                    cached = await self.lookup(other)
            if cached is not None:
                self.hits += 1
                return cached.completion(index=index, latency=self._clock() - started)
            self.misses += 1
        if not self._shared:
            return await self._compute_and_store(key, index, request, compute, control, ttl, near)
        while True:
            flight = self._flights.get(key)
            if flight is None:
                break
            if flight.done is None:
                flight.done = anyio.Event()
            await flight.done.wait()
            result = flight.result
            if result is not None:  # the leader's answer (or its failure) is ours too
                return _for(result, index)
            # the leader was cancelled: one of the waiters takes over
        flight = _Flight()
        self._flights[key] = flight
        try:
            result = await self._compute_and_store(key, index, request, compute, control, ttl, near)
            flight.result = result
            return result
        finally:
            del self._flights[key]
            if flight.done is not None:
                flight.done.set()

    async def _compute_and_store(
        self,
        key: bytes,
        index: int | None,
        request: Request,
        compute: Callable[[], Awaitable[Result]],
        control: CacheControl,
        ttl: float | None,
        near: _NearIndex | None,
    ) -> Result:
        leasing = self._leasing
        if leasing is None or control == "no-store":
            return await self._compute(key, request, compute, control, ttl, near)
        seconds = self.settings.lease_seconds
        deadline = self._clock() + seconds
        pause = 0.05
        while not await leasing.lease(key, seconds):
            # another process is making this call: wait for its answer, not pay again
            self.lease_waits += 1
            await anyio.sleep(pause)
            pause = min(1.0, pause * 1.5)
            raw = await leasing.get(key)
            if raw is not None:
                self.hits += 1
                return CachedResult.from_bytes(raw).completion(
                    index=index, latency=self._clock() - deadline + seconds
                )
            if self._clock() >= deadline:
                break  # its lease ran out: that process died; make the call here
        try:
            return await self._compute(key, request, compute, control, ttl, near)
        finally:
            with anyio.move_on_after(2.0, shield=True):
                await leasing.release(key)

    async def _compute(
        self,
        key: bytes,
        request: Request,
        compute: Callable[[], Awaitable[Result]],
        control: CacheControl,
        ttl: float | None,
        near: _NearIndex | None,
    ) -> Result:
        result = await compute()
        if control != "no-store" and isinstance(result, Completion):
            await self.store(key, result, self.settings.ttl if ttl is None else ttl)
            if near is not None:
                near.add(request, key)
        return result

    # -- reading -----------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        looked = self.hits + self.misses
        tiers = [self._memory.stats()] if self._memory is not None else []
        tiers += [t.stats() for t in self._tiers]
        return {
            "mode": self.settings.mode,
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": None if looked == 0 else self.hits / looked,
            "stores": self.stores,
            "lease_waits": self.lease_waits,
            "sample_counter_bytes": 0 if self._samples is None else self._samples.memory_bytes(),
            "tiers": {
                s.name: {
                    "entries": s.entries,
                    "bytes": s.bytes,
                    "hits": s.hits,
                    "misses": s.misses,
                    "hit_rate": s.hit_rate,
                    "writes": s.writes,
                    "evictions": s.evictions,
                    "errors": s.errors,
                    **s.extra,
                }
                for s in tiers
            },
        }

    def evictor(self) -> Callable[[float], int] | None:
        """The memory tier's ``evict_fraction``, for the memory governor."""
        return getattr(self._memory, "evict_fraction", None)

    def set_memory_admission(self, admit: bool) -> None:
        self.memory_admission = admit

    async def optimize(self) -> dict[str, Any]:
        """Purge expired memory entries and checkpoint the persistent tiers."""
        done: dict[str, Any] = {}
        purge = getattr(self._memory, "purge_expired", None)
        if purge is not None:
            done["memory_purged_bytes"] = purge()
        for tier in self._tiers:
            checkpoint = getattr(tier, "checkpoint", None)
            if checkpoint is not None:
                done[f"{tier.name}_checkpoint"] = await checkpoint()
        return done

    async def aclose(self) -> None:
        for tier in self._tiers:
            with anyio.move_on_after(10.0, shield=True):
                await tier.aclose()


async def _put(tier: CacheTier, key: bytes, raw: bytes, ttl: float | None) -> None:
    await tier.put(key, raw, ttl=ttl)


def _for(result: Result, index: int | None) -> Result:
    """The shared result as this input's own record."""
    if isinstance(result, Completion):
        copy = CachedResult.of(result).completion(index=index, latency=result.latency)
        copy.cached = True
        return copy
    from .._types import Failure

    return Failure(result.error, index=index, model=result.model, attempts=0)


class _NearIndex:
    """Near-identical deterministic requests, per scope (models, parameters, system):
    the key of the first answer stored for each distinct prompt text."""

    def __init__(self, threshold: float) -> None:
        self._threshold = threshold
        self._scopes: dict[bytes, tuple[Any, dict[int, bytes]]] = {}

    def _scope(self, request: Request) -> tuple[Any, dict[int, bytes]]:
        bare = Request(
            [{"role": "user", "content": ""}],
            request.max_tokens,
            request.system,
            request.temperature,
            request.top_p,
            request.stop,
            request.json_schema,
            None,
            strip_cache_control(request.extra) if request.extra else None,
        )
        scope_key = fingerprint(canonical_bytes(bare))
        scope = self._scopes.get(scope_key)
        if scope is None:
            from .._core import SimilarityIndex

            scope = (SimilarityIndex("minhash", self._threshold), {})
            self._scopes[scope_key] = scope
        return scope

    def match(self, request: Request) -> bytes | None:
        index, keys = self._scope(request)
        hits = index.query(request.prompt_text())
        for position, _ in hits:
            key = keys.get(position)
            if key is not None:
                return key
        return None

    def add(self, request: Request, key: bytes) -> None:
        index, keys = self._scope(request)
        position, earlier = index.claim(request.prompt_text())
        if earlier is None:
            keys[position] = key
