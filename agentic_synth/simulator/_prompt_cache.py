"""The provider side of prompt caching, simulated: what the APIs cache and report.

Anthropic: the prompt up to a block marked ``cache_control`` is cached when it
holds at least the model's minimum tokens (the client's table,
:data:`~agentic_synth.providers._prompt_cache.MIN_CACHEABLE_TOKENS`, unless
``SimConfig.prompt_cache_min_tokens`` says otherwise; shorter: silently not
cached). A request reads the longest live entry found at one of its breakpoints
or up to 20 blocks before one (the read refreshes the entry's TTL), writes from
there to its last cacheable breakpoint, and is billed as the API reports it:
``cache_read_input_tokens``, ``cache_creation_input_tokens`` (split by TTL in
``cache_creation``) and the uncached rest as ``input_tokens``. ``"ttl": "1h"``
needs the extended-cache-ttl beta header, else it is a 5-minute entry.

OpenAI: a prompt of 1,024+ tokens is cached at each message boundary; a request
reads the longest cached boundary, counted in 128-token steps from 1,024
(``prompt_tokens_details.cached_tokens``). Entries live 5 minutes from last use.

Both: what a request writes becomes readable only once its response has started
(:meth:`PromptCacheSim.started`), so requests sent together all write, as on the
real APIs. TTLs run on the simulator's clock. Tokens are the simulator's own
estimate (characters / 4), the same that makes ``input_tokens``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .._core import fingerprint  # type: ignore[import-not-found,unused-ignore]
from ..providers._prompt_cache import OPENAI_MIN_TOKENS, TTL_SECONDS, min_cacheable_tokens
from ._config import SimConfig

__all__ = ["LOOKBACK_BLOCKS", "Block", "CacheUse", "PromptCacheSim"]

#: A breakpoint finds entries at itself and up to this many blocks before it.
LOOKBACK_BLOCKS = 20
#: OpenAI counts cached tokens in steps of this many (past the minimum).
OPENAI_STEP = 128
#: Entries kept at most; past it expired ones are dropped, then the oldest.
MAX_ENTRIES = 200_000

#: One content block of a prompt, in order: its text, a tag naming where it is
#: (system, or the role and index of its message) and its breakpoint's TTL
#: (``"5m"``, ``"1h"``) or ``None`` when it carries no ``cache_control``.
Block = tuple[str, str, str | None]


@dataclass(slots=True)
class CacheUse:
    """What one request read from and will write to the prompt cache."""

    read: int = 0
    written: int = 0
    #: Of ``written``, tokens written with the 1-hour TTL.
    written_1h: int = 0
    #: (prefix hash, TTL seconds) of the entries its response will make readable.
    writes: list[tuple[bytes, float]] = field(default_factory=list)
    #: Its response started (the writes are readable).
    started: bool = False


class PromptCacheSim:
    """The cache entries of one simulated provider, on its clock."""

    __slots__ = ("_entries", "clock", "enabled", "min_tokens")

    def __init__(
        self, config: SimConfig | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        config = config or SimConfig()
        self.enabled = config.prompt_cache is not False
        self.min_tokens = config.prompt_cache_min_tokens
        self.clock = clock
        #: prefix hash -> [expires at, TTL seconds]
        self._entries: dict[bytes, list[float]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def anthropic(
        self, model: str, blocks: Sequence[Block], total: int, *, one_hour: bool = True
    ) -> CacheUse | None:
        """Reads and writes of an Anthropic request of ``total`` input tokens;
        ``one_hour``: the request carried the extended-cache-ttl beta header."""
        if not self.enabled:
            return None
        marks = [j for j, block in enumerate(blocks) if block[2] is not None]
        if not marks:
            return None
        minimum = self.min_tokens or min_cacheable_tokens(model)
        digests, tokens = _chain(f"anthropic\x00{model}", blocks[: marks[-1] + 1])
        now = self.clock()
        entries = self._entries
        read_at = -1
        places = {p for m in marks for p in range(max(0, m - LOOKBACK_BLOCKS), m + 1)}
        for place in sorted(places, reverse=True):
            entry = entries.get(digests[place])
            if entry is not None and entry[0] > now:
                entry[0] = now + entry[1]  # a read refreshes the TTL
                read_at = place
                break
        done = tokens[read_at] if read_at >= 0 else 0
        use = CacheUse(read=min(done, total))
        for m in marks:
            size = tokens[m]
            if m <= read_at or size < minimum:
                continue  # already read, or too short to cache (no error: just not cached)
            ttl = blocks[m][2]
            if ttl == "1h" and not one_hour:
                ttl = "5m"
            part = min(size, total) - done
            done = min(size, total)
            use.written += part
            if ttl == "1h":
                use.written_1h += part
            use.writes.append((digests[m], TTL_SECONDS[str(ttl)]))
        return use

    def openai(self, model: str, blocks: Sequence[Block], total: int) -> CacheUse | None:
        """Reads and writes of an OpenAI request of ``total`` prompt tokens."""
        minimum = self.min_tokens or OPENAI_MIN_TOKENS
        if not self.enabled or total < minimum:
            return None
        digests, tokens = _chain(f"openai\x00{model}", blocks)
        now = self.clock()
        entries = self._entries
        read_at = -1
        for place in range(len(blocks) - 1, -1, -1):
            if tokens[place] < minimum:
                break
            entry = entries.get(digests[place])
            if entry is not None and entry[0] > now:
                entry[0] = now + entry[1]
                read_at = place
                break
        use = CacheUse()
        if read_at >= 0:
            size = min(tokens[read_at], total)
            use.read = minimum + (size - minimum) // OPENAI_STEP * OPENAI_STEP
        span = TTL_SECONDS["5m"]
        for place in range(read_at + 1, len(blocks)):
            if tokens[place] >= minimum:
                use.writes.append((digests[place], span))
        if use.writes and read_at < 0:
            # Not on this wire's usage (no such field): for the server's counters, a
            # prompt found cold and cached; extending a cached prefix is not counted.
            use.written = min(tokens[-1], total)
        return use

    def started(self, use: CacheUse) -> None:
        """The response of the request behind ``use`` started: its writes are readable."""
        if use.started:
            return
        use.started = True
        if not use.writes:
            return
        now = self.clock()
        entries = self._entries
        for digest, span in use.writes:
            entries[digest] = [now + span, span]
        if len(entries) > MAX_ENTRIES:
            for digest in [d for d, e in entries.items() if e[0] <= now]:
                del entries[digest]
            while len(entries) > MAX_ENTRIES:
                del entries[next(iter(entries))]


def _chain(head: str, blocks: Sequence[Block]) -> tuple[list[bytes], list[int]]:
    """Hash and token estimate of the prompt up to the end of each block.

    Texts count as joined by newlines, as ``Request.prompt_text`` joins them.
    """
    digest = fingerprint(head.encode("utf-8", "surrogatepass"))
    digests: list[bytes] = []
    tokens: list[int] = []
    end = -1
    for text, tag, _ in blocks:
        digest = fingerprint(
            digest + tag.encode() + b"\x00" + text.encode("utf-8", "surrogatepass")
        )
        end += 1 + len(text)
        digests.append(digest)
        tokens.append((end + 3) // 4)
    return digests, tokens
