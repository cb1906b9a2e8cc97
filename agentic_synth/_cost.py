"""What a call cost, from its usage and the deployment's prices."""

from __future__ import annotations

from ._spec import ModelSpec
from ._types import Usage

__all__ = [
    "CACHE_READ_MULTIPLIER",
    "CACHE_WRITE_1H_MULTIPLIER",
    "CACHE_WRITE_MULTIPLIER",
    "usage_cost",
]

#: Prompt-cache prices relative to ``input_price`` when a spec gives none: Anthropic's
#: 5-minute cache writes and reads (platform.claude.com, prompt caching: pricing).
CACHE_WRITE_MULTIPLIER = 1.25
CACHE_WRITE_1H_MULTIPLIER = 2.0
CACHE_READ_MULTIPLIER = 0.1


def usage_cost(usage: Usage, spec: ModelSpec) -> float:
    """USD for ``usage`` at ``spec``'s prices: uncached input, cache writes and reads,
    and output each at their own price."""
    written = usage.cache_creation_input_tokens
    read = usage.cache_read_input_tokens
    if not (written or read):  # the common case
        return usage.input_tokens * spec.input_price + usage.output_tokens * spec.output_price
    write_price = spec.cache_write_price
    if write_price is None:
        write_price = spec.input_price * CACHE_WRITE_MULTIPLIER
    write_1h_price = spec.cache_write_1h_price
    if write_1h_price is None:
        write_1h_price = spec.input_price * CACHE_WRITE_1H_MULTIPLIER
    read_price = spec.cache_read_price
    if read_price is None:
        read_price = spec.input_price * CACHE_READ_MULTIPLIER
    written_1h = min(written, usage.cache_creation_1h_input_tokens)
    uncached = max(0, usage.input_tokens - written - read)
    return (
        uncached * spec.input_price
        + (written - written_1h) * write_price
        + written_1h * write_1h_price
        + read * read_price
        + usage.output_tokens * spec.output_price
    )
