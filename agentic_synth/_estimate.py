"""What a job will cost, before anything is sent (``synth.estimate``, ``--dry-run``).

Input tokens are counted per request: with the simulator's own rule for ``sim:``
models (so the estimate is exact there), else with the ``cl100k_base`` tokenizer
(exact for OpenAI's older models, within about 10-20% for Claude and newer
OpenAI tokenizers). Output is given two ways: the worst case, every request
using all of its ``max_tokens``, and, when the caller states an expected length,
the expected cost. Cache hits are not looked up: a rerun costs less.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._pricing import Prices, prices_for
from ._request import GenerationParams, Prompt, build_request
from ._spec import ModelSpec
from ._types import Request, Usage

__all__ = ["BATCH_PROVIDERS", "CostEstimate", "estimate_cost", "estimate_job", "estimate_text"]


@dataclass(frozen=True, slots=True)
class CostEstimate:
    """The tokens and the cost of a job at its first model's prices."""

    model: str
    requests: int
    #: Inputs that cannot become a request (they fail without being sent).
    unsendable: int
    input_tokens: int
    #: Output tokens if every request used all of its ``max_tokens``.
    max_output_tokens: int
    #: Output tokens at the stated expected length per request (``None``: not stated).
    expected_output_tokens: int | None
    #: USD if every request used all of its ``max_tokens`` (``None``: no known price).
    worst_case_usd: float | None
    #: USD at the expected length (``None``: no length stated, or no known price).
    expected_usd: float | None
    #: Provider batch prices (``mode="batch"``).
    batch: bool = False
    #: Where the prices came from (``price table 2026-03-21``, ``ModelSpec``...).
    price_source: str | None = None
    #: How input tokens were counted: ``simulator`` (exact) or ``cl100k_base``.
    tokenizer: str = "cl100k_base"
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "requests": self.requests,
            "unsendable": self.unsendable,
            "input_tokens": self.input_tokens,
            "max_output_tokens": self.max_output_tokens,
            "expected_output_tokens": self.expected_output_tokens,
            "worst_case_usd": self.worst_case_usd,
            "expected_usd": self.expected_usd,
            "batch": self.batch,
            "price_source": self.price_source,
            "tokenizer": self.tokenizer,
            "notes": list(self.notes),
        }


def _sim_tokens(request: Request) -> int:
    # the simulator bills one token per 4 characters of the prompt text
    return (len(request.prompt_text()) + 3) // 4 or 1


def estimate_cost(
    spec: ModelSpec,
    params: GenerationParams,
    inputs: Iterable[Prompt],
    *,
    expected_output_tokens: int | None = None,
    batch: bool = False,
) -> CostEstimate:
    """Count and price every input of a job at ``spec`` (nothing is sent)."""
    if expected_output_tokens is not None and (
        isinstance(expected_output_tokens, bool)
        or not isinstance(expected_output_tokens, int)
        or expected_output_tokens < 0
    ):
        from ._exceptions import InvalidRequestError

        raise InvalidRequestError(
            "expected_output_tokens must be a whole number of tokens >= 0, got "
            f"{expected_output_tokens!r}"
        )
    prices: Prices | None = prices_for(spec)
    if spec.provider == "sim":
        count = _sim_tokens
        tokenizer = "simulator"
    else:
        from .routing._tokens import TokenCounter

        counter = TokenCounter()

        def count(request: Request) -> int:
            return int(counter.count_messages(request.messages, request.system))

        tokenizer = "cl100k_base"
    requests = unsendable = input_tokens = max_output = expected_output = 0
    worst = expected = 0.0
    for item in inputs:
        try:
            request = build_request(item, params)
        except Exception:
            unsendable += 1
            continue
        requests += 1
        tokens_in = count(request)
        input_tokens += tokens_in
        max_output += request.max_tokens
        if prices is not None:
            worst += prices.cost(Usage(tokens_in, request.max_tokens), batch=batch)
        if expected_output_tokens is not None:
            out = min(expected_output_tokens, request.max_tokens)
            expected_output += out
            if prices is not None:
                expected += prices.cost(Usage(tokens_in, out), batch=batch)
    notes = []
    if prices is None:
        notes.append(f"{spec.name} has no known price: give input_price/output_price")
    if tokenizer == "cl100k_base" and spec.provider == "anthropic":
        notes.append("Claude's tokenizer differs from cl100k_base: input may be 10-20% off")
    return CostEstimate(
        model=spec.name,
        requests=requests,
        unsendable=unsendable,
        input_tokens=input_tokens,
        max_output_tokens=max_output,
        expected_output_tokens=None if expected_output_tokens is None else expected_output,
        worst_case_usd=None if prices is None else worst,
        expected_usd=None if prices is None or expected_output_tokens is None else expected,
        batch=batch,
        price_source=None if prices is None else prices.source,
        tokenizer=tokenizer,
        notes=tuple(notes),
    )


#: Providers with a batch API: a batch job goes to the first model of one of them.
BATCH_PROVIDERS = ("anthropic", "openai", "sim")


def estimate_job(
    specs: Sequence[ModelSpec],
    params: GenerationParams,
    inputs: Iterable[Prompt],
    *,
    expected_output_tokens: int | None = None,
    mode: str = "online",
) -> CostEstimate:
    """:func:`estimate_cost` at the model a job sends to first: the first one, or
    in batch mode the first with a batch API."""
    if mode not in ("online", "batch"):
        from ._exceptions import InvalidRequestError

        raise InvalidRequestError(f"mode must be 'online' or 'batch', got {mode!r}")
    spec = specs[0]
    if mode == "batch":
        spec = next((s for s in specs if s.provider in BATCH_PROVIDERS), spec)
    return estimate_cost(
        spec, params, inputs, expected_output_tokens=expected_output_tokens, batch=mode == "batch"
    )


def estimate_text(estimate: CostEstimate, budget: float | None = None) -> list[str]:
    """The estimate as lines for people (``synth generate --dry-run``)."""

    def usd(value: float | None) -> str:
        return "unknown" if value is None else f"${value:,.4f}"

    mode = " at batch prices" if estimate.batch else ""
    lines = [
        f"dry run: nothing sent; {estimate.requests:,} requests to {estimate.model}{mode}",
        f"input tokens: {estimate.input_tokens:,} (counted with {estimate.tokenizer})",
        f"output tokens: at most {estimate.max_output_tokens:,} (max_tokens per request)"
        + (
            ""
            if estimate.expected_output_tokens is None
            else f", expected {estimate.expected_output_tokens:,}"
        ),
        f"cost: at most {usd(estimate.worst_case_usd)}"
        + ("" if estimate.expected_usd is None else f", expected {usd(estimate.expected_usd)}"),
    ]
    if estimate.unsendable:
        lines.append(f"{estimate.unsendable:,} inputs cannot be sent (they would fail unsent)")
    if budget is not None and estimate.worst_case_usd is not None:
        fits = "fits" if estimate.worst_case_usd <= budget else "does not fit"
        lines.append(f"budget ${budget:,.4f}: the worst case {fits}")
    if estimate.price_source:
        lines.append(f"prices: {estimate.price_source}")
    lines.extend(f"note: {note}" for note in estimate.notes)
    return lines
