"""The memory governor: keep a job inside its memory budget.

Pressure is the process's resident memory over the limit
(``Synth(memory_limit="512MB")``, by default the cgroup's limit when there is
one). RSS is read from ``/proc/self/statm`` through a kept file descriptor (about
2 us; psutil costs ~25 us, tracemalloc slows the whole process several times)
at the scheduler's gate before each input: at most every ``interval`` seconds
while pressure is low, at every admission above the soft mark.

* Above the soft watermark it evicts from what the job can rebuild (the
  in-memory cache tier, prompt-dedup results kept for later duplicates), by the
  seed's adaptive table: 10% of entries while pressure < 0.7, 20% < 0.85, 30% <
  0.95, 50% above (at most once a second: freed memory takes a moment to show).
* Above the hard watermark it also stops new entries going into memory caches
  (they still reach the persistent tiers) and applies backpressure: fewer inputs
  may be in progress at once (halved each interval it stays there, never below one), and
  the allowance grows back (+10% an interval) once pressure is under the soft
  mark. An input in progress always finishes, so this can slow a job, never
  deadlock it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import math
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from ._exceptions import ConfigurationError
from ._log import get_logger

__all__ = ["MemoryGovernor", "cgroup_memory_limit", "parse_size", "read_rss"]

log = get_logger("agentic_synth.memory")

#: (pressure below which, share of entries to evict) — the seed guide's table.
EVICTION_TABLE = ((0.7, 0.10), (0.85, 0.20), (0.95, 0.30), (math.inf, 0.50))

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_IUNITS = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_size(value: int | str) -> int:
    """Bytes from ``512MB``, ``1.5GiB``, ``200M`` or an int."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str):
        match = _SIZE_RE.match(value)
        if match:
            number, unit = float(match.group(1)), (match.group(2) or "").lower()
            scale = _IUNITS[unit[0]] if "i" in unit else _UNITS[unit[:1]]
            size = int(number * scale)
            if size > 0:
                return size
    raise ConfigurationError(
        f"memory_limit must be a size such as '512MB' or '2GiB' or a number of bytes, got {value!r}"
    )


def cgroup_memory_limit() -> int | None:
    """The cgroup's memory limit in bytes (v2 ``memory.max`` or v1), if one is set."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text == "max" or not text.isdigit():
            return None
        limit = int(text)
        return None if limit >= 2**60 else limit  # "unlimited" written as a huge number
    return None


class _StatmReader:
    """RSS in bytes from a kept ``/proc/self/statm`` descriptor (Linux)."""

    def __init__(self) -> None:
        self._fd = os.open("/proc/self/statm", os.O_RDONLY)
        self._page = os.sysconf("SC_PAGE_SIZE")

    def __call__(self) -> int:
        return int(os.pread(self._fd, 128, 0).split()[1]) * self._page

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


def read_rss() -> int | None:
    """The process's resident memory now, in bytes, where the platform tells."""
    try:
        reader = _StatmReader()
    except OSError:
        return None
    try:
        return reader()
    finally:
        reader.close()


#: Something that can give memory back: called with a share of its entries to drop,
#: returns the bytes it freed (an estimate).
Evictor = Callable[[float], int]


class MemoryGovernor:
    """Samples pressure, evicts what can be rebuilt, throttles admission when needed."""

    def __init__(
        self,
        limit: int,
        *,
        soft: float = 0.6,
        hard: float = 0.9,
        interval: float = 0.05,
        evict_interval: float = 0.25,
        max_in_progress: int,
        clock: Callable[[], float] = time.monotonic,
        rss: Callable[[], int] | None = None,
    ) -> None:
        if not 0 < soft < hard <= 1.5:
            raise ConfigurationError("memory watermarks need 0 < soft < hard")
        self.limit = limit
        self._soft = soft
        self._hard = hard
        self._interval = interval
        self._evict_interval = evict_interval
        self._evicted_at = -math.inf
        self._clock = clock
        self._statm: _StatmReader | None = None
        if rss is None:
            self._statm = _StatmReader()
            rss = self._statm
        self._rss = rss
        self._evictors: list[Evictor] = []
        self._admissions: list[Callable[[bool], None]] = []
        self._admitting = True
        self._max = max_in_progress
        self.allowed = max_in_progress
        self.in_progress = 0
        self._room = anyio.Event()
        self._sampled_at = -math.inf
        self.rss = rss()
        self.peak_rss = self.rss
        self.pressure = self.rss / limit
        self.evicted_bytes = 0
        self.evictions = 0
        self.backpressure_seconds = 0.0

    def add_evictor(self, evictor: Evictor) -> None:
        self._evictors.append(evictor)

    def add_admission(self, admit: Callable[[bool], None]) -> None:
        """``admit(False)`` when memory caches must take no new entries, ``True`` again
        once pressure is under the soft mark."""
        self._admissions.append(admit)

    def _admit_entries(self, admit: bool) -> None:
        if admit != self._admitting:
            self._admitting = admit
            for set_admission in self._admissions:
                set_admission(admit)

    def _sample(self, now: float) -> None:
        self._sampled_at = now
        rss = self._rss()
        self.rss = rss
        if rss > self.peak_rss:
            self.peak_rss = rss
        pressure = rss / self.limit
        self.pressure = pressure
        if pressure >= self._soft:
            if now - self._evicted_at >= self._evict_interval:
                # at most once an evict_interval: freed memory takes a moment to show in RSS
                self._evicted_at = now
                share = next(s for below, s in EVICTION_TABLE if pressure < below)
                freed = sum(evict(share) for evict in self._evictors)
                if freed:
                    self.evictions += 1
                    self.evicted_bytes += freed
                    _malloc_trim()
            if pressure >= self._hard:
                self._admit_entries(False)
                allowed = max(1, self.allowed // 2)
                if allowed != self.allowed:
                    log.warning(
                        "memory_backpressure",
                        rss_mb=round(rss / 2**20),
                        limit_mb=round(self.limit / 2**20),
                        in_progress_allowed=allowed,
                    )
                self.allowed = allowed
        else:
            self._admit_entries(True)
            if self.allowed < self._max:
                self.allowed = min(self._max, self.allowed + max(1, self._max // 10))
                self._wake()

    def _wake(self) -> None:
        room, self._room = self._room, anyio.Event()
        room.set()

    async def acquire(self) -> None:
        """Before an input is taken on: wait while too many are in progress."""
        now = self._clock()
        # under pressure, every admission looks (2 us): memory can fill fast between
        # two periodic samples
        if self.pressure >= self._soft or now - self._sampled_at >= self._interval:
            self._sample(now)
        if self.in_progress >= self.allowed and self.in_progress > 0:
            started = now
            while self.in_progress >= self.allowed and self.in_progress > 0:
                with anyio.move_on_after(self._interval):
                    await self._room.wait()
                if self._clock() - self._sampled_at >= self._interval:
                    self._sample(self._clock())
            self.backpressure_seconds += self._clock() - started
        self.in_progress += 1

    def release(self) -> None:
        """The input's result was handed on."""
        self.in_progress -= 1
        if self.in_progress < self.allowed:
            self._wake()

    def optimize(self) -> dict[str, Any]:
        """Give memory back now: evict half of what can be rebuilt, collect garbage and
        return freed heap pages to the system (glibc ``malloc_trim``)."""
        before = self._rss()
        freed = sum(evict(0.5) for evict in self._evictors)
        collected = gc.collect()
        trimmed = _malloc_trim()
        after = self._rss()
        self._sample(self._clock())
        return {
            "evicted_bytes": freed,
            "gc_objects": collected,
            "malloc_trim": trimmed,
            "rss_before": before,
            "rss_after": after,
        }

    def snapshot(self) -> dict[str, Any]:
        return {
            "limit": self.limit,
            "rss": self.rss,
            "peak_rss": self.peak_rss,
            "pressure": self.pressure,
            "in_progress": self.in_progress,
            "in_progress_allowed": self.allowed,
            "caching_in_memory": self._admitting,
            "evictions": self.evictions,
            "evicted_bytes": self.evicted_bytes,
            "backpressure_seconds": self.backpressure_seconds,
        }

    def close(self) -> None:
        if self._statm is not None:
            self._statm.close()


def _malloc_trim() -> bool:
    """Ask glibc to hand freed heap memory back to the system; False where unavailable."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes = [ctypes.c_size_t]
    return bool(trim(0))
