"""The simulated model: what happens to one request, decided from its own hash.

Every random choice (fault, latency, text, JSON) is drawn from the 128-bit
xxh3 digest (``_core.fingerprint``, ~0.2 us) of ``(canonical request content,
seed, times seen before)``, so outcomes never depend on how concurrent
requests interleave. A fresh ``random.Random`` costs ~5 us to seed, so the
plain-text path reads its few numbers straight from the digest bits; only
schema JSON seeds a generator.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .._core import fingerprint  # type: ignore[import-not-found,unused-ignore]
from .._request import canonical_bytes
from .._types import Request
from ._config import FAULT_KINDS, SCHEMA_FAULTS, SimConfig
from ._corrupt import PROSE, corrupt
from ._prompt_cache import PromptCacheSim
from ._schema_json import generate_json
from ._text import corpus

__all__ = ["Outcome", "Simulator", "estimate_tokens"]

FinishReason = Literal["end", "max_tokens", "stop_sequence"]

_U32 = 1.0 / 4294967296.0
_MASK32 = 0xFFFFFFFF
#: Distinct request contents remembered per generation of the seen-counter.
_SEEN_GENERATION = 1 << 17


def estimate_tokens(text: str) -> int:
    """Input-token estimate: one token per 4 characters (rounded up), at least 1."""
    return (len(text) + 3) // 4 or 1


@dataclass(slots=True)
class Outcome:
    """The simulated answer to one request (or the fault it hits)."""

    #: ``None`` for a normal answer, else one of :data:`FAULT_KINDS`, ``"forbidden"``
    #: or ``"unauthorized"``.
    fault: str | None
    #: Seconds before the first token (or the error) is sent.
    delay: float
    text: str
    output_tokens: int
    input_tokens: int
    finish: FinishReason
    #: The stop sequence that ended the text, when ``finish == "stop_sequence"``.
    stop_sequence: str | None
    #: 24 hex digits unique to this (content, repetition, seed).
    token: str
    #: A further uniform draw in ``[0, 1)`` for fault details (where a stream breaks).
    u_extra: float
    #: Prose streams a word per token; anything else (JSON) ~4 characters per token.
    prose: bool = False
    #: The content fault (one of :data:`SCHEMA_FAULTS`) injected into this answer, if any.
    #: Not a ``fault``: the answer is a normal 200, only its JSON is wrong.
    injected: str | None = None

    def pieces(self, chunk_tokens: int = 1) -> list[str]:
        """The text as stream deltas of ``chunk_tokens`` tokens each."""
        text = self.text
        if not text:
            return []
        if not self.prose:
            step = 4 * chunk_tokens
            return [text[i : i + step] for i in range(0, len(text), step)]
        words = text.split(" ")
        if chunk_tokens == 1:
            return [words[0], *[" " + w for w in words[1:]]]
        return [
            ("" if i == 0 else " ") + " ".join(words[i : i + chunk_tokens])
            for i in range(0, len(words), chunk_tokens)
        ]


class _SeenCounter:
    """How often each request content was seen, with bounded memory.

    Two generations of ``generation`` entries each: when the current one fills
    up it becomes the previous one and the oldest is dropped, so a repeat (a
    retry) is counted correctly as long as it comes within ~``generation``
    distinct requests of the last time.
    """

    __slots__ = ("_current", "_generation", "_previous")

    def __init__(self, generation: int = _SEEN_GENERATION) -> None:
        self._current: dict[int, int] = {}
        self._previous: dict[int, int] = {}
        self._generation = generation

    def next(self, key: int) -> int:
        """Return how many times ``key`` was seen before, and count this one."""
        current = self._current
        seen = current.get(key)
        if seen is None:
            seen = self._previous.get(key, 0)
            if len(current) >= self._generation:
                self._previous = current
                self._current = current = {}
        current[key] = seen + 1
        return seen


class Simulator:
    """Decides outcomes for one :class:`SimConfig`; shared by provider and server."""

    __slots__ = (
        "_arrivals",
        "_forbid_below",
        "_gated",
        "_seed_bytes",
        "_seen",
        "_thresholds",
        "config",
        "prompt_cache",
    )

    def __init__(
        self, config: SimConfig | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config = config or SimConfig()
        #: The provider's prompt cache; its TTLs run on ``clock``.
        self.prompt_cache = PromptCacheSim(config, clock)
        cumulative = 0.0
        thresholds: list[tuple[float, str]] = []
        for kind in FAULT_KINDS:
            rate = getattr(config, f"fault_{kind}")
            if rate > 0:
                cumulative += rate
                thresholds.append((cumulative, kind))
        self._thresholds = tuple(thresholds)
        self._seed_bytes = config.seed.to_bytes(16, "big", signed=True)
        self._seen = _SeenCounter()
        self._arrivals = 0
        #: Prompts whose 32-bit content hash falls below this are blocked (403).
        self._forbid_below = round(config.forbidden * 4294967296.0)
        # One test on the hot path for both request-independent gates.
        self._gated = config.unauthorized or self._forbid_below > 0
        corpus()  # build it now (~50 ms once per process), not during the first request

    def is_forbidden(self, prompt_text: str) -> bool:
        """Whether the ``forbidden`` gate blocks a prompt with this text.

        ``prompt_text`` is :meth:`Request.prompt_text`: for one user message and no
        system prompt, the message itself. Seen counts play no part, so a blocked
        prompt is blocked on every attempt, on every model sharing the config.
        """
        if self._forbid_below <= 0:
            return False
        digest = fingerprint(
            prompt_text.encode("utf-8", "surrogatepass") + self._seed_bytes + b"forbidden"
        )
        return int.from_bytes(digest[:4], "big") < self._forbid_below

    def decide(self, request: Request) -> Outcome:
        """The outcome of ``request``, counting it as seen once more."""
        return self.decide_raw(
            canonical_bytes(request),
            max_tokens=request.max_tokens,
            input_text=request.prompt_text(),
            stop=request.stop,
            json_schema=request.json_schema,
        )

    def decide_raw(
        self,
        content: bytes,
        *,
        max_tokens: int,
        input_text: str,
        stop: tuple[str, ...] = (),
        json_schema: Mapping[str, Any] | None = None,
    ) -> Outcome:
        """Like :meth:`decide` for callers that already hold the canonical bytes."""
        config = self.config
        count = self._seen.next(hash(content))
        digest = fingerprint(content + self._seed_bytes + count.to_bytes(8, "big"))
        bits = int.from_bytes(digest, "big")
        u_fault = (bits & _MASK32) * _U32
        u_lat1 = ((bits >> 32) & _MASK32) * _U32
        u_lat2 = ((bits >> 64) & _MASK32) * _U32
        u_len = ((bits >> 96) & 0xFFFF) * (1.0 / 65536.0)
        pick = bits >> 112

        fault: str | None = None
        # Where in its band u_fault fell: an independent uniform for fault details.
        u_extra = u_len
        if self._gated and (config.unauthorized or self.is_forbidden(input_text)):
            # Turned away at the door: never reaches the model, so not an arrival.
            fault = "unauthorized" if config.unauthorized else "forbidden"
        elif (arrival := self._arrivals) < config.fail_first_n:
            self._arrivals = arrival + 1
            fault = config.fail_first_kind
        else:
            self._arrivals = arrival + 1
            below = 0.0
            for threshold, kind in self._thresholds:
                if u_fault < threshold:
                    fault = kind
                    u_extra = (u_fault - below) / (threshold - below)
                    break
                below = threshold
        injected: str | None = None
        if fault in SCHEMA_FAULTS:
            # a content fault: the answer is a normal 200 (wrong only in its JSON)
            injected, fault = fault, None
        latency = config.latency
        delay = 0.0 if latency.is_zero else latency.sample(u_lat1, u_lat2)
        input_tokens = estimate_tokens(input_text)
        token = digest[:12].hex()

        if json_schema is not None:
            rng = random.Random(bits)
            value = generate_json(json_schema, rng)
            finish: FinishReason = "end"
            if injected == "invalid_output":
                broken = corrupt(value, json_schema, rng)
                text = PROSE if broken is None else json.dumps(broken, ensure_ascii=False)
            else:
                text = json.dumps(value, ensure_ascii=False)
            if injected == "truncated_output" and len(text) > 1:
                # cut somewhere in the JSON, as max_tokens would
                text = text[: 1 + int(u_extra * (len(text) - 1))]
                finish = "max_tokens"
            tokens = (len(text) + 3) // 4 or 1
            if tokens > max_tokens:
                text = text[: 4 * max_tokens]
                tokens = max_tokens
                finish = "max_tokens"
            return Outcome(
                fault,
                delay,
                text,
                tokens,
                input_tokens,
                finish,
                None,
                token,
                u_extra,
                injected=injected,
            )

        text, output_tokens, was_cut = corpus().text(
            pick, max(1, round(config.output_tokens * (0.5 + u_len))), max_tokens
        )
        finish = "max_tokens" if was_cut else "end"
        stop_sequence: str | None = None
        if stop:
            cut = -1
            for candidate in stop:
                at = text.find(candidate) if candidate else -1
                if at >= 0 and (cut < 0 or at < cut):
                    cut, stop_sequence = at, candidate
            if stop_sequence is not None:
                text = text[:cut]
                output_tokens = len(text.split())
                finish = "stop_sequence"
        return Outcome(
            fault,
            delay,
            text,
            output_tokens,
            input_tokens,
            finish,
            stop_sequence,
            token,
            u_extra,
            True,
        )

    def stream_seconds(self, outcome: Outcome) -> float:
        """Seconds to stream ``outcome``'s tokens after the first one."""
        tps = self.config.tokens_per_s
        if tps is None:
            return 0.0
        return max(outcome.output_tokens - 1, 0) / tps
