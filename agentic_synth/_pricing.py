"""What calls cost: the shipped price table, a deployment's own prices, the cost of a
usage and the worst case of a request.

Prices come, first match wins, from the :class:`~agentic_synth.ModelSpec` (or its
``[[models]]`` entry in ``synth.toml``), then from ``data/prices.toml``, a dated
table of current Anthropic and OpenAI prices. A model found in neither has no
price: its cost is ``None`` ("unknown"), never 0.
"""

from __future__ import annotations

import functools
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from ._exceptions import ConfigurationError
from ._spec import ModelSpec
from ._types import Request, Usage

__all__ = [
    "PriceTable",
    "Prices",
    "price_table",
    "prices_for",
    "worst_case_input_tokens",
    "worst_case_output_tokens",
]

_PER_MILLION = 1e-6
#: A dated snapshot suffix: claude-haiku-4-5-20251001, gpt-4o-2024-08-06.
_SNAPSHOT = re.compile(r"-(?:\d{8}|\d{4}-\d{2}-\d{2})$")
#: Tokens a chat format may add around a request (roles, separators, the reply
#: priming, a provider's system preamble): the margin of the worst case.
_FRAMING_TOKENS = 64
_PER_MESSAGE_TOKENS = 8


@dataclass(frozen=True, slots=True)
class Prices:
    """USD per token of one deployment, every kind of token priced."""

    input: float
    output: float
    #: Input tokens written to the provider's prompt cache (5-minute, 1-hour TTL).
    cache_write: float
    cache_write_1h: float
    #: Input tokens read from the provider's prompt cache.
    cache_read: float
    #: The provider's batch API prices of input and output tokens; cache writes and
    #: reads in a batch get the input discount too (the discounts stack).
    batch_input: float
    batch_output: float
    #: Where the prices came from: ``"price table 2026-03-21"``, ``"ModelSpec"``...
    source: str = ""

    def cost(self, usage: Usage, *, batch: bool = False) -> float:
        """USD for ``usage``: uncached input, cache writes (5-minute and 1-hour),
        cache reads and output, each at its own price; ``batch``: at batch prices."""
        if batch:
            scale = self.batch_input / self.input if self.input else 0.5
            input_price, output_price = self.batch_input, self.batch_output
        else:
            scale = 1.0
            input_price, output_price = self.input, self.output
        written = usage.cache_creation_input_tokens
        read = usage.cache_read_input_tokens
        if not (written or read):  # the common case
            return usage.input_tokens * input_price + usage.output_tokens * output_price
        written_1h = min(written, usage.cache_creation_1h_input_tokens)
        uncached = max(0, usage.input_tokens - written - read)
        return (
            uncached * input_price
            + (written - written_1h) * self.cache_write * scale
            + written_1h * self.cache_write_1h * scale
            + read * self.cache_read * scale
            + usage.output_tokens * output_price
        )

    def worst_case(self, input_tokens: int, output_tokens: int, *, batch: bool = False) -> float:
        """The most ``input_tokens`` in and ``output_tokens`` out can cost: every
        input token at the dearest input price (a 1-hour cache write can cost more
        than plain input)."""
        if batch:
            scale = self.batch_input / self.input if self.input else 0.5
            dearest_in = max(
                self.batch_input, self.cache_write * scale, self.cache_write_1h * scale
            )
            return input_tokens * dearest_in + output_tokens * self.batch_output
        dearest_in = max(self.input, self.cache_write, self.cache_write_1h)
        return input_tokens * dearest_in + output_tokens * self.output


class PriceTable:
    """The shipped table: ``(provider, model)`` to :class:`Prices`."""

    def __init__(self, data: Mapping[str, Any], *, origin: str = "prices.toml") -> None:
        try:
            self.as_of = str(data["as_of"])
            defaults = {str(k): dict(v) for k, v in dict(data.get("defaults", {})).items()}
            entries: dict[tuple[str, str], Prices] = {}
            for entry in data.get("models", []):
                provider = str(entry["provider"])
                factors = defaults.get(provider, {})
                prices = _entry_prices(entry, factors, f"price table {self.as_of}")
                for name in entry["names"]:
                    entries[(provider, str(name))] = prices
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigurationError(
                f"{origin} is malformed: {type(exc).__name__}: {exc}"
            ) from None
        self._entries = entries
        self.defaults = defaults

    def lookup(self, provider: str, model: str) -> Prices | None:
        """The model's prices: by its exact name, then without a dated snapshot
        suffix or ``-latest``, then a provider-wide ``*`` entry; ``None`` if absent."""
        entries = self._entries
        for name in (model, _SNAPSHOT.sub("", model), model.removesuffix("-latest"), "*"):
            found = entries.get((provider, name))
            if found is not None:
                return found
        return None

    def __len__(self) -> int:
        return len(self._entries)


def _entry_prices(entry: Mapping[str, Any], factors: Mapping[str, Any], source: str) -> Prices:
    def per_token(key: str) -> float | None:
        value = entry.get(key)
        if value is None:
            return None
        number = float(value)
        if not (number >= 0 and math.isfinite(number)):
            raise ValueError(f"{key} = {value!r} is not a price")
        return number * _PER_MILLION

    input_price = per_token("input")
    output_price = per_token("output")
    if input_price is None or output_price is None:
        raise ValueError(f"entry {entry.get('names')!r} needs both input and output")
    return _complete(
        input_price,
        output_price,
        cache_write=per_token("cache_write"),
        cache_write_1h=per_token("cache_write_1h"),
        cache_read=per_token("cache_read"),
        batch_input=per_token("batch_input"),
        batch_output=per_token("batch_output"),
        factors=factors,
        source=source,
    )


def _complete(
    input_price: float,
    output_price: float,
    *,
    cache_write: float | None,
    cache_write_1h: float | None,
    cache_read: float | None,
    batch_input: float | None,
    batch_output: float | None,
    factors: Mapping[str, Any],
    source: str,
) -> Prices:
    """Prices with every missing kind filled from the provider's multipliers."""
    batch = float(factors.get("batch", 0.5))
    return Prices(
        input=input_price,
        output=output_price,
        cache_write=(
            input_price * float(factors.get("cache_write", 1.25))
            if cache_write is None
            else cache_write
        ),
        cache_write_1h=(
            input_price * float(factors.get("cache_write_1h", 2.0))
            if cache_write_1h is None
            else cache_write_1h
        ),
        cache_read=(
            input_price * float(factors.get("cache_read", 0.1))
            if cache_read is None
            else cache_read
        ),
        batch_input=input_price * batch if batch_input is None else batch_input,
        batch_output=output_price * batch if batch_output is None else batch_output,
        source=source,
    )


@functools.cache
def price_table() -> PriceTable:
    """The shipped table, read once per process."""
    text = resources.files("agentic_synth").joinpath("data", "prices.toml").read_text("utf-8")
    return PriceTable(tomllib.loads(text))


def prices_for(spec: ModelSpec, table: PriceTable | None = None) -> Prices | None:
    """``spec``'s prices: its own where it gives them, the table's for the rest;
    ``None`` when neither knows the model (cost unknown).

    A spec that prices input but not output (or the reverse) for a model the table
    does not know is refused: half a price would be a silent 0.
    """
    table = price_table() if table is None else table
    known = table.lookup(spec.provider, spec.model)
    own_in, own_out = spec.input_price, spec.output_price
    if known is None and own_in is None and own_out is None:
        return None
    if known is None and (own_in is None or own_out is None):
        missing = "output_price" if own_out is None else "input_price"
        raise ConfigurationError(
            f"{spec.name} has no entry in the price table and no {missing}; give both "
            "input_price and output_price (USD per token) or neither (cost unknown)"
        )
    own = (
        own_in,
        own_out,
        spec.cache_write_price,
        spec.cache_write_1h_price,
        spec.cache_read_price,
        spec.batch_input_price,
        spec.batch_output_price,
    )
    if known is not None and all(v is None for v in own):
        return known
    if known is None:
        assert own_in is not None and own_out is not None
        base_in, base_out, source = own_in, own_out, "ModelSpec"
        inherit_in = inherit_out = None
    else:
        base_in = known.input if own_in is None else own_in
        base_out = known.output if own_out is None else own_out
        source = f"ModelSpec over price table {table.as_of}"
        # the table's input-side prices stand only while its input price does
        inherit_in = known if own_in is None else None
        inherit_out = known if own_out is None else None
    return _complete(
        base_in,
        base_out,
        cache_write=_first(spec.cache_write_price, inherit_in, "cache_write"),
        cache_write_1h=_first(spec.cache_write_1h_price, inherit_in, "cache_write_1h"),
        cache_read=_first(spec.cache_read_price, inherit_in, "cache_read"),
        batch_input=_first(spec.batch_input_price, inherit_in, "batch_input"),
        batch_output=_first(spec.batch_output_price, inherit_out, "batch_output"),
        factors=table.defaults.get(spec.provider, {}),
        source=source,
    )


def _first(own: float | None, table: Prices | None, name: str) -> float | None:
    """The spec's own price, else the table's (when it still applies), else None."""
    if own is not None:
        return own
    return None if table is None else float(getattr(table, name))


#: Body fields of ``Request.extra`` that replace the output cap on the wire.
_OUTPUT_CAPS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


def worst_case_output_tokens(request: Request) -> int:
    """The most output tokens ``request`` can be billed for: its ``max_tokens``, or a
    larger cap its provider extras put on the wire, times the choices asked for
    (``n``)."""
    cap = request.max_tokens
    extra = request.extra
    if not extra:
        return cap
    for name in _OUTPUT_CAPS:
        value = extra.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > cap:
            cap = value
    n = extra.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n > 1:
        cap *= n
    return cap


def worst_case_input_tokens(request: Request) -> int:
    """An upper bound on the input tokens ``request`` can be billed for, without a
    tokenizer: the byte-level BPE tokenizers of current models never make more
    tokens than bytes, plus a margin for each message's framing and the request's.
    """
    total = _FRAMING_TOKENS + _PER_MESSAGE_TOKENS * len(request.messages)
    for message in request.messages:
        total += _utf8_len(message["content"])
    if request.system:
        total += _utf8_len(request.system)
    if request.json_schema is not None:
        # an instruction or a native schema both reach the model as text
        total += 2 * len(repr(request.json_schema))
    if request.extra:
        total += 2 * len(repr(request.extra))
    return total


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
