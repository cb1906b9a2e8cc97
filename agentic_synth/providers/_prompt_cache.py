"""Automatic provider prompt caching: which prefix to mark, and the warm-up gate.

Jobs send thousands of requests sharing a long system prompt or few-shot block,
and providers can cache that prefix. Anthropic caches the prompt up to each
block marked ``cache_control`` (at most 4 per request) when it reaches the
model's minimum length, for 5 minutes (a write costs 1.25x the input price) or
an hour (2x), refreshed by every read (0.1x). OpenAI caches prompts of 1,024+
tokens by itself; ``prompt_cache_key`` routes requests sharing a prefix to the
machines that hold it.

:class:`PromptCache` makes a :class:`Plan` per request, in the provider:

- **What is marked.** The system prompt, and the end of the leading turns
  (everything but the last message) once an earlier request had the same ones:
  the provider sees one request at a time, and marking a per-input prefix would
  pay the write premium for an entry nobody reads. Where requests seen so far
  branch (two few-shot sets after one shared block) the branch point is marked
  too; at most :data:`MAX_BREAKPOINTS`, the deepest always kept. The last
  message is never marked. A prefix shorter than the model's minimum
  (:data:`MIN_CACHEABLE_TOKENS`, a data table) is not marked. After
  :data:`DISTINCT_SYSTEMS` long system prompts in a row that were each new, the
  job evidently has a system prompt per input: from then on one is marked only
  when seen before.
- **Tokens** are estimated as UTF-8 bytes / 4 (the byte rule of
  :func:`agentic_synth.routing._tokens.estimate_tokens`, without its word count,
  so an ASCII text costs O(1): ``len`` and ``isascii`` are stored on the str).
  Claude's tokenizer averages ~3.5 characters per English token, so this runs
  low: a prefix just over the minimum may go unmarked, never the reverse.
- **TTL.** 5 minutes, unless forced with ``options={"prompt_cache": "1h"}`` (or
  ``"5m"``), or the prefix is used less often than the 5-minute entry lives: a
  prefix whose previous request was more than 5 minutes (and under an hour) ago
  switches to the 1-hour TTL (one 2x write then reads, instead of a 1.25x write
  on every use). A breakpoint before a 1-hour one becomes 1-hour too, as the API
  requires (longer TTLs first).
- **Warm-up.** A cache entry is readable only once the request writing it has
  started answering, so parallel requests would all write. The first request of
  a prefix group (keyed by the hash of the marked prefix) goes alone; the others
  wait (:class:`Ticket`) until its answer starts, for at most half their call
  timeout (then they go anyway, the timeout shortened by the wait). A warm-up
  that fails or is cancelled hands over to the next waiter. A group stays warm
  for its TTL after its last answered request and is forgotten an hour after its
  last use.

Requests with no long prefix cost a length sum and nothing else: no hashing, no
lock, no await.
"""

from __future__ import annotations

import fnmatch
import json
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import anyio

from .._core import fingerprint  # type: ignore[import-not-found,unused-ignore]
from .._exceptions import ConfigurationError
from .._types import Message

__all__ = [
    "DEFAULT_MIN_TOKENS",
    "EXTENDED_TTL_BETA",
    "MAX_BREAKPOINTS",
    "MIN_CACHEABLE_TOKENS",
    "OPENAI_MIN_TOKENS",
    "TTL_SECONDS",
    "Breakpoint",
    "Plan",
    "PlanSalt",
    "PromptCache",
    "PromptCacheConfig",
    "Ticket",
    "cache_control",
    "estimate_tokens",
    "gated_stream",
    "min_cacheable_tokens",
    "prompt_cache_config",
]

T = TypeVar("T")
E = TypeVar("E")
TTL = Literal["5m", "1h"]
TTL_SECONDS: Mapping[str, float] = {"5m": 300.0, "1h": 3600.0}
#: Breakpoints the Anthropic API accepts per request.
MAX_BREAKPOINTS = 4
#: OpenAI caches prompts from this many tokens on.
OPENAI_MIN_TOKENS = 1024
#: The Anthropic beta that makes ``"ttl": "1h"`` count (reported ignored without it).
EXTENDED_TTL_BETA = "extended-cache-ttl-2025-04-11"

#: Minimum cacheable prefix of Anthropic models, in tokens: (minimum, model name
#: globs), first match wins; names are matched lower-cased from ``claude-`` on,
#: so Bedrock and Vertex ids (``us.anthropic.claude-...-v1:0``, ``...@2025...``) match.
#: Source: the "Cache limitations" list of Anthropic's prompt caching guide
#: (platform.claude.com/docs/en/build-with-claude/prompt-caching), as quoted in
#: anthropic-sdk-python issue #1194 (2026); Claude 3.5 Sonnet and 3 Opus from the
#: earlier version of that list. That issue reports Sonnet 4.6 caching only from
#: ~2,048 tokens in practice; marking below a model's real minimum costs nothing
#: (the API caches nothing and says nothing), so the documented figure stays.
MIN_CACHEABLE_TOKENS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (4096, ("claude-opus-4-6*", "claude-opus-4-5*", "claude-haiku-4-5*")),
    (
        1024,
        (
            "claude-sonnet-4-6*",
            "claude-sonnet-4-5*",
            "claude-opus-4-1*",
            "claude-opus-4",
            "claude-opus-4-2???????*",
            "claude-opus-4@*",
            "claude-sonnet-4",
            "claude-sonnet-4-2???????*",
            "claude-sonnet-4@*",
            "claude-3-7-sonnet*",
            "claude-3-5-sonnet*",
            "claude-3-opus*",
        ),
    ),
    (2048, ("claude-3-5-haiku*", "claude-3-haiku*")),
)
#: Models the table does not know: the highest documented minimum (the newest
#: models moved up to it), so nothing is marked or gated that cannot be cached.
#: ``options={"prompt_cache_min_tokens": N}`` sets it per deployment.
DEFAULT_MIN_TOKENS = 4096

#: Consecutive new long system prompts after which only repeated ones are marked.
DISTINCT_SYSTEMS = 32
#: A follower waits at most this share of its call timeout for the warm-up.
GATE_WAIT_SHARE = 0.5
#: ... and never longer than this (also the limit without a timeout).
GATE_WAIT_CAP = 300.0
#: Seconds before its TTL runs out that an entry is taken for gone (the provider
#: counts from when it processed the request, a little after we sent it).
WARM_MARGIN = 10.0
#: Groups tracked at most; past it new prefixes are marked but not gated.
MAX_GROUPS = 16384
#: Groups are swept when a new one comes this long after the last sweep (or the
#: table doubled since).
SWEEP_SECONDS = 60.0
#: Prefixes whose sightings are remembered, per generation (two generations).
SIGHTINGS = 1 << 16

_PROMPT_CACHE_VALUES = (True, False, "auto", "5m", "1h")
_min_memo: dict[str, int] = {}


def estimate_tokens(text: str) -> int:
    """UTF-8 bytes / 4, rounded up; O(1) for ASCII text."""
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    return (size + 3) // 4


def min_cacheable_tokens(model: str) -> int:
    """The minimum cacheable prefix of an Anthropic ``model``, from the table."""
    found = _min_memo.get(model)
    if found is not None:
        return found
    name = model.lower()
    start = name.find("claude-")
    if start > 0:
        name = name[start:]
    found = DEFAULT_MIN_TOKENS
    for tokens, patterns in MIN_CACHEABLE_TOKENS:
        if any(fnmatch.fnmatchcase(name, p) for p in patterns):
            found = tokens
            break
    if len(_min_memo) < 1024:
        _min_memo[model] = found
    return found


@dataclass(frozen=True, slots=True)
class PromptCacheConfig:
    """What ``ModelSpec.options`` ask of automatic prompt caching."""

    enabled: bool = True
    #: Every breakpoint's TTL; ``None``: chosen per prefix (see the module docs).
    ttl: TTL | None = None
    #: Minimum prefix tokens worth marking; ``None``: the model's, from the table.
    min_tokens: int | None = None


def prompt_cache_config(
    options: Mapping[str, Any], name: str, *, ttls: bool = True
) -> PromptCacheConfig:
    """Read and check ``prompt_cache`` (``True``/``"auto"``, ``False``, ``"5m"``,
    ``"1h"``; ``ttls=False``: no TTLs) and ``prompt_cache_min_tokens``."""
    value = options.get("prompt_cache", True)
    allowed = _PROMPT_CACHE_VALUES if ttls else _PROMPT_CACHE_VALUES[:3]
    if not any(value is v or (isinstance(v, str) and value == v) for v in allowed):
        raise ConfigurationError(
            f"options['prompt_cache'] for {name} must be one of "
            f"{', '.join(repr(v) for v in allowed)}, got {value!r}"
        )
    minimum = options.get("prompt_cache_min_tokens")
    if minimum is not None and (
        isinstance(minimum, bool) or not isinstance(minimum, int) or minimum < 1
    ):
        raise ConfigurationError(
            f"options['prompt_cache_min_tokens'] for {name} must be an integer >= 1, "
            f"got {minimum!r}"
        )
    ttl: TTL | None = "5m" if value == "5m" else "1h" if value == "1h" else None
    return PromptCacheConfig(value is not False, ttl, minimum)


def cache_control(ttl: str) -> dict[str, str]:
    """The ``cache_control`` object for a breakpoint (5 minutes is the API's default)."""
    return {"type": "ephemeral", "ttl": "1h"} if ttl == "1h" else {"type": "ephemeral"}


@dataclass(frozen=True, slots=True)
class Breakpoint:
    """Mark the end of the system prompt (``at == -1``) or of message ``at``."""

    at: int
    ttl: TTL


#: The breakpoints of a plan that marks the system prompt only, by TTL.
_SYSTEM_ONLY: dict[str, tuple[Breakpoint, ...]] = {
    "5m": (Breakpoint(-1, "5m"),),
    "1h": (Breakpoint(-1, "1h"),),
}


class _Group:
    """One marked prefix: its TTL, when it was last used, and its warm-up state."""

    __slots__ = ("event", "leading", "ttl", "used", "warm_until")

    def __init__(self, now: float) -> None:
        self.ttl: TTL = "5m"
        self.used = now
        #: Until when the provider is taken to hold the entry (``-inf``: cold).
        self.warm_until = -math.inf
        #: A warm-up request is in flight; the others wait on ``event``.
        self.leading = False
        self.event: anyio.Event | None = None


class _Sightings:
    """How many earlier requests had each prefix, with bounded memory.

    Two generations of :data:`SIGHTINGS` entries: when the current one fills it
    becomes the previous one and the oldest is dropped.
    """

    __slots__ = ("_current", "_previous", "_size")

    def __init__(self, size: int = SIGHTINGS) -> None:
        self._current: dict[bytes, int] = {}
        self._previous: dict[bytes, int] = {}
        self._size = size

    def next(self, key: bytes) -> int:
        """Count ``key`` once more; return the count before."""
        current = self._current
        seen = current.get(key)
        if seen is None:
            seen = self._previous.get(key, 0)
            if len(current) >= self._size:
                self._previous = current
                self._current = current = {}
        current[key] = seen + 1
        return seen


@dataclass(slots=True)
class Plan:
    """What to mark in one request, and the group it warms up or waits for."""

    #: In prompt order; 1-hour ones first.
    breakpoints: tuple[Breakpoint, ...]
    #: Estimated tokens up to the last breakpoint.
    tokens: int
    #: Hash of the prefix up to the last breakpoint (model and salt included).
    digest: bytes
    group: _Group | None
    clock: Callable[[], float]

    @property
    def key(self) -> str:
        """The prefix hash as text (OpenAI's ``prompt_cache_key``)."""
        return self.digest.hex()

    @property
    def one_hour(self) -> bool:
        return self.breakpoints[0].ttl == "1h"

    def ticket(self) -> Ticket:
        return Ticket(self.group, TTL_SECONDS[self.breakpoints[-1].ttl], self.clock)


class Ticket:
    """One request's pass through its group's warm-up gate.

    ``await wait(timeout)`` before sending, ``opened()`` when the answer starts,
    ``close()`` in a ``finally``. Synchronous apart from the follower's wait, so
    cancellation anywhere leaves the group consistent: leadership is released in
    ``opened`` or ``close``, and every waiter re-checks the group when woken.
    """

    __slots__ = ("_clock", "_group", "_open", "_span", "leader", "sent_at")

    def __init__(self, group: _Group | None, span: float, clock: Callable[[], float]) -> None:
        self._group = group
        self._span = span
        self._clock = clock
        self._open = False
        #: This request is its group's warm-up.
        self.leader = False
        self.sent_at = 0.0

    async def wait(self, call_timeout: float | None) -> float:
        """Return once this request may go: the group is warm, this request leads
        its warm-up, or it waited its share of ``call_timeout``. Returns seconds waited."""
        group = self._group
        clock = self._clock
        self.sent_at = now = clock()
        if group is None or group.warm_until > now:
            return 0.0
        if not group.leading:
            self._lead(group)
            return 0.0
        limit = (
            GATE_WAIT_CAP
            if call_timeout is None
            else min(GATE_WAIT_CAP, call_timeout * GATE_WAIT_SHARE)
        )
        began = anyio.current_time()
        with anyio.move_on_after(limit):  # then go unwarmed
            while True:
                if not group.leading:
                    # Synchronous up to the end of the scope: no cancellation in between.
                    self._lead(group)
                    break
                event = group.event
                assert event is not None
                await event.wait()
                if group.warm_until > clock():
                    break
        self.sent_at = clock()
        return anyio.current_time() - began

    def _lead(self, group: _Group) -> None:
        group.leading = True
        group.event = anyio.Event()
        self.leader = True

    def opened(self) -> None:
        """The answer started: the provider holds the entry; release the waiters."""
        if self._open:
            return
        self._open = True
        group = self._group
        if group is None:
            return
        warm = self.sent_at + self._span - WARM_MARGIN
        if warm > group.warm_until:
            group.warm_until = warm
        if self.leader:
            self._release()

    def close(self) -> None:
        """The call is over; a warm-up that never started answering hands over."""
        if self.leader:
            self._release()

    def _release(self) -> None:
        self.leader = False
        group = self._group
        if group is not None:
            group.leading = False
            if group.event is not None:
                group.event.set()


class PromptCache:
    """Plans breakpoints and keeps the warm-up groups of one provider instance."""

    def __init__(
        self,
        config: PromptCacheConfig | None = None,
        *,
        min_tokens: Callable[[str], int] = min_cacheable_tokens,
        max_breakpoints: int = MAX_BREAKPOINTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config = config or PromptCacheConfig()
        self._minimum: Callable[[str], int] = (
            min_tokens if config.min_tokens is None else _constant(config.min_tokens)
        )
        self._max_breakpoints = max_breakpoints
        self.clock = clock
        self._sightings = _Sightings()
        self._groups: dict[bytes, _Group] = {}
        self._sweep_at = 1024
        self._sweep_time = clock() + SWEEP_SECONDS
        # Forgotten this long after their last use: an hour, to see a sparse prefix
        # outlive the 5-minute entry; a forced 5-minute TTL needs no such memory.
        self._horizon = TTL_SECONDS["5m" if config.ttl == "5m" else "1h"]
        self._fresh_systems = 0
        #: (system, model, salt, tokens, digest) of the last system prompt planned alone.
        self._memo: tuple[str, str, str, int, bytes] | None = None

    def plan(
        self,
        model: str,
        system: str | None,
        messages: Sequence[Message],
        salt: str = "",
    ) -> Plan | None:
        """Breakpoints for one request, or ``None`` when it has no long shared prefix.

        ``salt`` names whatever else the provider's cache key covers (tools, a
        schema compiled into the prompt), so different ones never share a group.
        """
        leading = len(messages) - 1
        minimum = self._minimum(model)
        if leading == 0:  # the common case: one input after a system prompt
            if not system or len(system) < minimum:
                return None
            return self._plan_system(model, system, salt, minimum)
        chars = len(system) if system else 0
        for i in range(leading):
            chars += len(messages[i]["content"])
        # Estimates never exceed the length in characters: most requests stop here.
        if chars < minimum:
            return None
        digest = fingerprint(f"{model}\x00{salt}\x00".encode("utf-8", "surrogatepass"))
        tokens = 0
        bounds: list[tuple[int, int, bytes]] = []
        if system:
            tokens = estimate_tokens(system)
            digest = fingerprint(digest + b"s" + system.encode("utf-8", "surrogatepass"))
            bounds.append((-1, tokens, digest))
        for i in range(leading):
            message = messages[i]
            text = message["content"]
            tokens += estimate_tokens(text)
            tag = b"a" if message["role"] == "assistant" else b"u"
            digest = fingerprint(digest + tag + text.encode("utf-8", "surrogatepass"))
            bounds.append((i, tokens, digest))
        sightings = self._sightings
        seen = [sightings.next(bound[2]) for bound in bounds]
        chosen: list[int] = []
        last = len(bounds) - 1
        for j, (at, size, _) in enumerate(bounds):
            if size < minimum:
                continue
            if at < 0:
                if seen[j]:
                    self._fresh_systems = 0
                else:
                    self._fresh_systems += 1
                    if self._fresh_systems > DISTINCT_SYSTEMS:
                        continue
                chosen.append(j)
            elif seen[j] and (j == last or seen[j + 1] < seen[j]):
                # the deepest turn seen before, or where the requests seen so far branch
                chosen.append(j)
        if not chosen:
            return None
        cap = self._max_breakpoints
        if len(chosen) > cap:
            deepest = chosen[-1]
            kept = sorted(chosen[:-1], key=lambda j: (seen[j], j), reverse=True)[: cap - 1]
            chosen = [*sorted(kept), deepest]
        now = self.clock()
        groups = [self._group(bounds[j][2], now) for j in chosen]
        ttls = [self._ttl(group, now) for group in groups]
        # Longer TTLs first: a breakpoint before a 1-hour one is 1-hour too.
        for k in range(len(ttls) - 2, -1, -1):
            if ttls[k + 1] == "1h":
                ttls[k] = "1h"
        points = tuple(Breakpoint(bounds[j][0], t) for j, t in zip(chosen, ttls, strict=True))
        _, size, digest = bounds[chosen[-1]]
        return Plan(points, size, digest, groups[-1], self.clock)

    def _plan_system(self, model: str, system: str, salt: str, minimum: int) -> Plan | None:
        """:meth:`plan` for a system prompt and one message, the same plan in fewer steps;
        a job passes one str object as every request's system prompt: hashed once."""
        memo = self._memo
        if memo is not None and memo[0] is system and memo[1] == model and memo[2] == salt:
            tokens, digest = memo[3], memo[4]
        else:
            tokens = estimate_tokens(system)
            head = fingerprint(f"{model}\x00{salt}\x00".encode("utf-8", "surrogatepass"))
            digest = fingerprint(head + b"s" + system.encode("utf-8", "surrogatepass"))
            self._memo = (system, model, salt, tokens, digest)
        if tokens < minimum:
            return None
        if self._sightings.next(digest):
            self._fresh_systems = 0
        else:
            self._fresh_systems += 1
            if self._fresh_systems > DISTINCT_SYSTEMS:
                return None
        now = self.clock()
        group = self._group(digest, now)
        return Plan(_SYSTEM_ONLY[self._ttl(group, now)], tokens, digest, group, self.clock)

    def _ttl(self, group: _Group | None, now: float) -> TTL:
        forced = self.config.ttl
        if forced is not None:
            return forced
        if group is None:
            return "5m"
        gap = now - group.used
        if gap > TTL_SECONDS["1h"]:
            group.ttl = "5m"
        elif gap > TTL_SECONDS["5m"]:
            group.ttl = "1h"  # used less often than a 5-minute entry lives
        group.used = now
        return group.ttl

    def _group(self, digest: bytes, now: float) -> _Group | None:
        groups = self._groups
        group = groups.get(digest)
        if group is None:
            if len(groups) >= self._sweep_at or now >= self._sweep_time:
                self._sweep(now)
            if len(groups) >= MAX_GROUPS:
                return None
            group = groups[digest] = _Group(now)
        elif self.config.ttl is not None:
            group.used = now
        return group

    def _sweep(self, now: float) -> None:
        """Forget groups unused for the horizon (none in a warm-up)."""
        horizon = self._horizon
        groups = self._groups
        for digest in [d for d, g in groups.items() if not g.leading and now - g.used > horizon]:
            del groups[digest]
        self._sweep_at = max(1024, 2 * len(groups))
        self._sweep_time = now + SWEEP_SECONDS

    def __len__(self) -> int:
        """Groups tracked (for tests of the memory bound)."""
        return len(self._groups)


def _constant(value: int) -> Callable[[str], int]:
    def minimum(model: str) -> int:
        return value

    return minimum


class PlanSalt:
    """What a provider's prompt cache keys on besides the prompt itself, per request.

    ``own_layout``: ``Request.extra`` keys that mean the caller laid the prompt
    out (or marked it) itself: then nothing is done automatically (``None``).
    ``keyed``: extra keys the provider's cache covers (tools, ...). A JSON Schema
    that becomes part of the prompt is salted too; a job reuses one schema object,
    so its text is made once.
    """

    __slots__ = ("_keyed", "_own_layout", "_schema", "_schema_text")

    def __init__(self, own_layout: frozenset[str], keyed: tuple[str, ...]) -> None:
        self._own_layout = own_layout
        self._keyed = keyed
        self._schema: Mapping[str, Any] | None = None
        self._schema_text = ""

    def __call__(
        self, extra: Mapping[str, Any] | None, schema: Mapping[str, Any] | None
    ) -> str | None:
        salt = ""
        if extra:
            if not self._own_layout.isdisjoint(extra):
                return None
            keyed = {k: extra[k] for k in self._keyed if k in extra}
            if keyed:
                salt = json.dumps(keyed, sort_keys=True, default=str)
        if schema is not None:
            if schema is not self._schema:
                self._schema_text = json.dumps(schema, sort_keys=True, default=str)
                self._schema = schema
            salt += self._schema_text
        return salt


async def gated_stream(
    ticket: Ticket,
    wait: Callable[[], Awaitable[T]],
    open_stream: Callable[[T], AsyncIterator[E]],
) -> AsyncGenerator[E, None]:
    """A stream sent once its warm-up gate lets it (``wait`` passes the gate and
    gives what ``open_stream`` needs); the ticket is closed however it ends."""
    try:
        ready = await wait()
        async with aclosing(open_stream(ready)) as events:  # type: ignore[type-var]
            async for event in events:
                yield event
    finally:
        ticket.close()
