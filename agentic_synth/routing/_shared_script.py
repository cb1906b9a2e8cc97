"""The one Lua script behind shared rate limits, and its argument and reply layout.

A deployment's limits live in one Redis hash, so one script call is atomic and
touches one key (cluster-safe). Each lane (``r`` requests, ``i`` input tokens,
``o`` output tokens) is a token bucket kept as level + stamp, GCRA's equivalent
that also survives rate changes (AIMD cuts, a server's lower limit). All times
are the server's ``TIME``, so machines with skewed clocks agree.

Every call first applies the client's pending settlements (returns, charges, a
429's cut and cooldown, header news) and then, by mode, peeks, tries, books or
does nothing. ``book`` always takes and returns how long to wait before sending:
callers form one FIFO queue across processes, and a large request is never
starved by small ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["LUA", "MODES", "Pending", "Reply", "decode", "encode"]

#: ``flush``: settle only; ``peek``: the wait, take nothing; ``try``: take if no wait;
#: ``book``: take now, send after the returned wait.
MODES = ("flush", "peek", "try", "book")

LUA = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local key = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local conf = {tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])}
local burst = tonumber(ARGV[4])
local decrease, floor_ = tonumber(ARGV[5]), tonumber(ARGV[6])
local step, interval = tonumber(ARGV[7]), tonumber(ARGV[8])
local ttl = tonumber(ARGV[9])
local mode = ARGV[10]
local cost = {1, tonumber(ARGV[11]), tonumber(ARGV[12])}
local adjust = {tonumber(ARGV[13]), tonumber(ARGV[14]), tonumber(ARGV[15])}
local cut_at, retry_after = ARGV[16], tonumber(ARGV[17])
local new_limit = {ARGV[18], ARGV[19], ARGV[20]}
local remain = {ARGV[21], ARGV[22], ARGV[23]}
local reset = {tonumber(ARGV[24]), tonumber(ARGV[25]), tonumber(ARGV[26])}
local names = {'r', 'i', 'o'}

local s = redis.call('HMGET', key, 'r.l', 'r.t', 'r.c', 'i.l', 'i.t', 'i.c',
                     'o.l', 'o.t', 'o.c', 'm', 'd', 'n', 'cool')
local level, stamp, limit = {}, {}, {}
for k = 1, 3 do
  level[k], stamp[k], limit[k] = tonumber(s[3*k-2]), tonumber(s[3*k-1]), tonumber(s[3*k])
end
local m_after = tonumber(s[10]) or 1
local dec_at = tonumber(s[11])
local cuts = tonumber(s[12]) or 0
local cool = tonumber(s[13]) or 0

-- AIMD: after a cut to m_after, + step per whole interval, up to 1
local mult = 1
if m_after < 1 and dec_at then
  mult = math.min(1, m_after + math.floor(math.max(0, now - dec_at) / interval) * step)
end
local rate, cap = {}, {}
local function rates()
  for k = 1, 3 do
    if conf[k] > 0 then
      local ceiling = conf[k]
      if limit[k] and limit[k] < ceiling then ceiling = limit[k] end
      rate[k] = ceiling * mult / 60
      cap[k] = rate[k] * burst
      if level[k] == nil or level[k] > cap[k] then level[k] = cap[k] end
    end
  end
end
rates()
for k = 1, 3 do
  if conf[k] > 0 then
    if stamp[k] and now > stamp[k] then
      level[k] = math.min(cap[k], level[k] + (now - stamp[k]) * rate[k])
    end
    if not stamp[k] or now > stamp[k] then stamp[k] = now end
  end
end

-- pending settlements of this client
for k = 1, 3 do
  if conf[k] > 0 and adjust[k] ~= 0 then
    if adjust[k] > 0 then
      level[k] = math.min(cap[k], level[k] + adjust[k])
    else
      level[k] = level[k] + adjust[k]
    end
  end
  if conf[k] > 0 and new_limit[k] ~= '' then limit[k] = tonumber(new_limit[k]) end
end
rates()
if cut_at ~= '' then
  local at = tonumber(cut_at)
  if at < 0 or not dec_at or at > dec_at then
    mult = math.max(floor_, mult * decrease)
    m_after, dec_at, cuts = mult, now, cuts + 1
    rates()
  end
end
if retry_after > 0 and now + retry_after > cool then cool = now + retry_after end
for k = 1, 3 do
  if conf[k] > 0 and remain[k] ~= '' then
    local target = tonumber(remain[k])
    if target < 1 and reset[k] > 0 then target = math.min(target, -reset[k] * rate[k]) end
    if level[k] > target then level[k] = target end
  end
end

-- the request
local granted, wait = 0, 0
if mode ~= 'flush' then
  for k = 1, 3 do
    if conf[k] > 0 then
      local short = math.min(cost[k], cap[k]) - level[k]
      if short > 1e-6 then wait = math.max(wait, short / rate[k]) end
    end
  end
  if cool > now then wait = math.max(wait, cool - now) end
  if mode == 'book' or (mode == 'try' and wait == 0) then
    granted = 1
    for k = 1, 3 do
      if conf[k] > 0 then level[k] = level[k] - cost[k] end
    end
  end
end

local function f(x) if x == nil then return '' end return string.format('%.17g', x) end
if mode ~= 'peek' then
  local fields = {'m', f(m_after), 'n', cuts, 'cool', f(cool)}
  if dec_at then fields[#fields+1] = 'd'; fields[#fields+1] = f(dec_at) end
  for k = 1, 3 do
    if conf[k] > 0 then
      local p = names[k]
      fields[#fields+1] = p .. '.l'; fields[#fields+1] = f(level[k])
      fields[#fields+1] = p .. '.t'; fields[#fields+1] = f(stamp[k])
      if limit[k] then fields[#fields+1] = p .. '.c'; fields[#fields+1] = f(limit[k]) end
    end
  end
  redis.call('HSET', key, unpack(fields))
  local keep = ttl
  if cool > now then keep = keep + (cool - now) * 1000 end
  redis.call('PEXPIRE', key, math.ceil(keep))
end
return {granted, f(wait), f(now), f(mult), cuts, f(dec_at), f(cool),
        f(level[1]), f(limit[1]), f(level[2]), f(limit[2]), f(level[3]), f(limit[3])}
"""


@dataclass(slots=True)
class Pending:
    """Settlements waiting for the next script call, merged so they stay a fixed size.

    ``adjust`` is the net per lane (+: return, -: charge). ``cut`` is the newest
    throttled reservation's grant time (-1.0: cut whatever the time; None: no cut).
    """

    adjust: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    cut: float | None = None
    retry_after: float = 0.0
    limit: list[float | None] = field(default_factory=lambda: [None, None, None])
    remaining: list[float | None] = field(default_factory=lambda: [None, None, None])
    reset: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])

    def __bool__(self) -> bool:
        return bool(
            any(self.adjust)
            or self.cut is not None
            or self.retry_after
            or any(x is not None for x in self.limit)
            or any(x is not None for x in self.remaining)
        )

    def add_cut(self, granted_at: float | None, retry_after: float | None) -> None:
        at = -1.0 if granted_at is None else granted_at
        if self.cut is None or (self.cut >= 0 and (at < 0 or at > self.cut)):
            self.cut = at
        if retry_after is not None and retry_after > 0:
            self.retry_after = max(self.retry_after, min(retry_after, _MAX_COOLDOWN))

    def restore(self, sent: Pending) -> None:
        """Put back what a failed call carried. Returns are dropped (the call may have
        reached Redis: a return applied twice would loosen the limit); charges, cuts
        and the server's news are kept (applying one twice only tightens it)."""
        for k in range(3):
            self.adjust[k] += min(0.0, sent.adjust[k])
            if self.limit[k] is None:
                self.limit[k] = sent.limit[k]
            if self.remaining[k] is None:
                self.remaining[k], self.reset[k] = sent.remaining[k], sent.reset[k]
        if sent.cut is not None:
            self.add_cut(None if sent.cut < 0 else sent.cut, None)
        self.retry_after = max(self.retry_after, sent.retry_after)


#: Longest cooldown a Retry-After may set (a day): past that it is a typo or an attack.
_MAX_COOLDOWN = 86400.0


def _num(x: float | None) -> str:
    return "" if x is None else repr(float(x))


def encode(
    rates: tuple[float, float, float],
    burst_seconds: float,
    aimd: tuple[float, float, float, float],
    ttl_ms: int,
    mode: str,
    input_tokens: int,
    output_tokens: int,
    pending: Pending,
) -> list[str]:
    """ARGV for :data:`LUA`; a rate of 0 is a lane this client does not limit."""
    return [
        *(repr(float(r)) for r in rates),
        repr(float(burst_seconds)),
        *(repr(float(x)) for x in aimd),
        str(ttl_ms),
        mode,
        str(input_tokens),
        str(output_tokens),
        *(repr(float(a)) for a in pending.adjust),
        _num(pending.cut),
        repr(float(pending.retry_after)),
        *(_num(x) for x in pending.limit),
        *(_num(x) for x in pending.remaining),
        *(repr(float(x)) for x in pending.reset),
    ]


@dataclass(slots=True, frozen=True)
class Reply:
    """What a script call says: all times are Redis server seconds since the epoch."""

    granted: bool
    wait: float
    now: float
    multiplier: float
    rate_limited: int
    decreased_at: float | None
    cooled_until: float
    #: Per lane (requests, input, output): level after the call and the server's limit.
    levels: tuple[float | None, float | None, float | None]
    limits: tuple[float | None, float | None, float | None]


def _opt(raw: bytes | str) -> float | None:
    return None if raw in (b"", "") else float(raw)


def decode(raw: list[bytes | str | int]) -> Reply:
    def num(x: bytes | str | int) -> float:
        value = float(x)
        if not math.isfinite(value):
            raise ValueError(f"non-finite value in a shared-limits reply: {x!r}")
        return value

    opts = [_opt(x) if not isinstance(x, int) else float(x) for x in raw[7:13]]
    dec = raw[5]
    return Reply(
        granted=int(raw[0]) == 1,
        wait=num(raw[1]),
        now=num(raw[2]),
        multiplier=num(raw[3]),
        rate_limited=int(raw[4]),
        decreased_at=None if isinstance(dec, bytes | str) and not dec else num(dec),
        cooled_until=num(raw[6]),
        levels=(opts[0], opts[2], opts[4]),
        limits=(opts[1], opts[3], opts[5]),
    )
