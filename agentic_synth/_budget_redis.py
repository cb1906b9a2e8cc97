"""The budget ledger in Redis: one limit for every process on every machine.

The same exchange as the SQLite ledger (:class:`agentic_synth._budget._Ledger`),
as one Lua script: report what a process spent, set its claim, read the total.
A process cannot be checked for life across machines, so each claim carries
the Redis time it was last refreshed (a live process refreshes it every second);
a claim older than ``stale_seconds`` is reclaimed as spent (its owner's unknown
spending counts in full: never an overshoot).

Fail closed: Redis unreachable, or refusing scripts, is a ConfigurationError at
the start; a failure later stops the flush (the allowance already claimed stays
usable, so nothing is overspent) and the next claim raises.
"""

from __future__ import annotations

import hashlib
import os
import socket
import uuid
from typing import Any
from urllib.parse import urlsplit

from ._exceptions import ConfigurationError, redact, redact_url
from ._log import get_logger

__all__ = ["BudgetLedgerUnavailableError", "RedisLedger"]

log = get_logger("agentic_synth")

#: KEYS: spent hash, claims hash, alerts set. ARGV: holder, limit, want, spent,
#: uncertain, keep, stale_ms. Returns {claim, committed, others} as strings (Lua
#: numbers would come back as integers).
_EXCHANGE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local holder = ARGV[1]
local limit, want = tonumber(ARGV[2]), tonumber(ARGV[3])
local spent, uncertain = tonumber(ARGV[4]), tonumber(ARGV[5])
local keep, stale = tonumber(ARGV[6]), tonumber(ARGV[7])
local claims = redis.call('HGETALL', KEYS[2])
local others = 0
for i = 1, #claims, 2 do
  local who, value = claims[i], claims[i + 1]
  if who ~= holder then
    local sep = string.find(value, '|', 1, true)
    local amount = tonumber(string.sub(value, 1, sep - 1))
    local updated = tonumber(string.sub(value, sep + 1))
    if now - updated > stale then
      redis.call('HINCRBYFLOAT', KEYS[1], 'committed', amount)
      redis.call('HINCRBYFLOAT', KEYS[1], 'uncertain', amount)
      redis.call('HDEL', KEYS[2], who)
    else
      others = others + amount
    end
  end
end
if spent ~= 0 then
  redis.call('HINCRBYFLOAT', KEYS[1], 'committed', spent)
end
if uncertain ~= 0 then
  redis.call('HINCRBYFLOAT', KEYS[1], 'uncertain', uncertain)
end
local committed = tonumber(redis.call('HGET', KEYS[1], 'committed') or '0')
local room = limit - committed - others - keep
if room < 0 then room = 0 end
local claim = keep + math.min(want, room)
if claim > 0 then
  redis.call('HSET', KEYS[2], holder, string.format('%.17g', claim) .. '|' .. now)
else
  redis.call('HDEL', KEYS[2], holder)
end
return {string.format('%.17g', claim), string.format('%.17g', committed),
        string.format('%.17g', others)}
"""


class BudgetLedgerUnavailableError(ConfigurationError):
    """The budget's Redis ledger cannot be used: the job does not spend blind."""


class RedisLedger:
    """The budget ledger of :class:`~agentic_synth.Budget` at a ``redis://`` path."""

    def __init__(self, url: str, scope: str, *, stale_seconds: float = 60.0) -> None:
        import redis

        self._shown = redact_url(url)
        self._password = urlsplit(url).password
        self._stale_ms = int(stale_seconds * 1000)
        self._holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        # the scope's keys hash its name: any string is a safe key
        self._prefix = f"synth:budget1:{hashlib.sha256(scope.encode()).hexdigest()[:24]}"
        self.path = self._shown
        try:
            self._client: Any = redis.Redis.from_url(
                url, socket_timeout=5.0, socket_connect_timeout=5.0
            )
            self._client.ping()
            self._script = self._client.register_script(_EXCHANGE)
            self._script(keys=self._keys("check"), args=["check", 0, 0, 0, 0, 0, 1])
        except (redis.RedisError, OSError, ValueError) as exc:
            raise BudgetLedgerUnavailableError(
                f"budget ledger: Redis at {self._shown} cannot be used ({self._clean(exc)}); "
                "start Redis, correct the URL (and its password), or allow its scripts "
                "(EVALSHA): a budget is not enforced without its ledger"
            ) from None

    def _clean(self, exc: BaseException) -> str:
        return redact(f"{type(exc).__name__}: {exc}", self._password)

    def _keys(self, period: str) -> list[str]:
        base = f"{self._prefix}:{period}"
        return [f"{base}:spent", f"{base}:claims", f"{base}:alerts"]

    def _call(self, what: str, fn: Any) -> Any:
        import redis

        try:
            return fn()
        except (redis.RedisError, OSError) as exc:
            raise BudgetLedgerUnavailableError(
                f"budget ledger: Redis at {self._shown} failed while {what} "
                f"({self._clean(exc)}); nothing more is reserved until it answers"
            ) from None

    def exchange(
        self, period: str, limit: float, want: float, spent: float, uncertain: float, keep: float
    ) -> tuple[float, float, float]:
        """See :meth:`agentic_synth._budget._Ledger.exchange`."""
        args = [self._holder, repr(limit), repr(want), repr(spent), repr(uncertain), repr(keep)]
        reply = self._call(
            "claiming",
            lambda: self._script(keys=self._keys(period), args=[*args, self._stale_ms]),
        )
        return float(reply[0]), float(reply[1]), float(reply[2])

    def spent(self, period: str) -> tuple[float, float, float]:
        """(committed, of which uncertain, claimed by live processes)."""
        keys = self._keys(period)

        def read() -> tuple[float, float, float]:
            committed, uncertain = self._client.hmget(keys[0], "committed", "uncertain")
            claims = self._client.hvals(keys[1])
            claimed = sum(float(v.split(b"|")[0]) for v in claims)
            return float(committed or 0), float(uncertain or 0), claimed

        result: tuple[float, float, float] = self._call("reading", read)
        return result

    def fire_once(self, period: str, threshold: float) -> bool:
        """Whether this call is the first to fire ``threshold`` in ``period``."""
        key = self._keys(period)[2]
        added = self._call("recording an alert", lambda: self._client.sadd(key, repr(threshold)))
        return bool(added)

    def close(self) -> None:
        self._client.close()
