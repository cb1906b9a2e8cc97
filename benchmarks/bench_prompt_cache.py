"""Provider prompt caching: the modelled saving of a 10,000-request job, and its CPU.

The job (issue 8): 10,000 requests sharing a 3,000-token system prompt, each with
its own ~150-token input, answers of ~200 tokens. It runs through the engine
(``Synth.generate_batch``) twice in the same process, prompt caching on and then
off (``options={"prompt_cache": False}``), against the simulator: the in-process
``sim`` provider by default, or the mock server through the official anthropic
SDK with ``--wire``. The simulator bills as the Anthropic API does (one cache
write, then reads; input tokens are its own estimate, characters / 4), and the
cost is ``metrics().cost_usd`` at Claude Sonnet 4.5's list prices:

- input $3 / MTok, output $15 / MTok, 5-minute cache write $3.75 / MTok (1.25x),
  cache read $0.30 / MTok (0.1x). Source: Anthropic's pricing page
  (docs.anthropic.com/en/docs/about-claude/pricing, Sonnet-tier row; the same for
  Sonnet 4, 4.5 and 4.6), read 2026-12-01.

Sonnet 4.5 caches from 1,024 tokens, so the 3,000-token prompt is cacheable
(Haiku 4.5 and Opus 4.5/4.6 need 4,096: there it would not be, and nothing is marked).

CPU: the added work per request of the prefix logic, measured apart from the
simulator: the anthropic provider's plan + warm-up gate + marked body against
its body without prompt caching, for the shared 3,000-token prompt (one str
object, as ``system=`` gives it; and an equal copy per request, the worst case:
hashed and encoded every time), and the short-prompt path.

    python benchmarks/bench_prompt_cache.py [--n 10000] [--wire]
"""

from __future__ import annotations

import argparse
import gc
import random
import time
from typing import Any

import anyio
from _report import save, table, timed

from agentic_synth import ModelSpec, Synth
from agentic_synth._types import Request
from agentic_synth.providers.anthropic import AnthropicProvider
from agentic_synth.simulator import MockServer, SimConfig

MODEL = "claude-sonnet-4-5"
#: USD per token, Claude Sonnet 4.5 (see the module docstring for the source).
PRICES = {
    "input_price": 3.00e-6,
    "output_price": 15.00e-6,
    "cache_write_price": 3.75e-6,
    "cache_read_price": 0.30e-6,
}
SYSTEM_TOKENS = 3000
INPUT_TOKENS = 150
OUTPUT_TOKENS = 200

_WORDS = (
    "label each record with its category and a confidence score between zero and one "
    "using the definitions the examples and the edge cases below always answer in json"
).split()


def text_of(tokens: int, rng: random.Random) -> str:
    """ASCII prose of ``tokens`` estimated tokens (4 characters each)."""
    out: list[str] = []
    size = 0
    while size < 4 * tokens:
        word = rng.choice(_WORDS)
        out.append(word)
        size += len(word) + 1
    return " ".join(out)[: 4 * tokens]


def job(n: int) -> tuple[str, list[str]]:
    rng = random.Random(8)
    system = text_of(SYSTEM_TOKENS, rng)
    inputs = [f"Record {i}: " + text_of(INPUT_TOKENS - 3, rng) for i in range(n)]
    return system, inputs


async def run_job(
    n: int, cached: bool, *, wire: MockServer | None, concurrency: int
) -> dict[str, Any]:
    system, inputs = job(n)
    options: dict[str, Any] = {} if cached else {"prompt_cache": False}
    if wire is None:
        options |= {"seed": 8, "latency": "uniform:0.01,0.03", "output_tokens": OUTPUT_TOKENS}
        spec = ModelSpec("sim", MODEL, options=options, **PRICES)
    else:
        spec = ModelSpec(
            "anthropic", MODEL, base_url=wire.url, api_key="sk-ant-bench", options=options, **PRICES
        )
    async with Synth([spec], max_concurrency=concurrency) as synth:
        gc.collect()
        with timed() as t:
            results = await synth.generate_batch(inputs, system=system, max_tokens=1024)
        metrics = synth.metrics()
    assert all(r.ok for r in results), [r for r in results if not r.ok][:3]
    usage = [r.usage for r in results]  # type: ignore[union-attr]
    return {
        "caching": "on" if cached else "off",
        "requests": n,
        "cost_usd": metrics.cost_usd,
        "input_tokens": sum(u.input_tokens for u in usage),
        "cache_write_tokens": sum(u.cache_creation_input_tokens for u in usage),
        "cache_read_tokens": sum(u.cache_read_input_tokens for u in usage),
        "output_tokens": sum(u.output_tokens for u in usage),
        "writes": sum(1 for u in usage if u.cache_creation_input_tokens),
        "reads": sum(1 for u in usage if u.cache_read_input_tokens),
        "cpu_us_per_request": t.cpu / n * 1e6,
        "wall_s": t.wall,
    }


def modelled(n: int, system: int, own: int, output: float) -> dict[str, float]:
    """The bill by formula: one write of the prompt, n - 1 reads (all within the TTL)."""
    p = PRICES
    off = n * (system + own) * p["input_price"] + n * output * p["output_price"]
    on = (
        system * p["cache_write_price"]
        + (n - 1) * system * p["cache_read_price"]
        + n * own * p["input_price"]
        + n * output * p["output_price"]
    )
    return {"off": off, "on": on, "saving": 1 - on / off}


async def prefix_cpu(n: int) -> dict[str, float]:
    """Microseconds per request of body building with and without the prefix logic."""
    system, inputs = job(n)
    requests = [Request([{"role": "user", "content": x}], 1024, system) for x in inputs]
    copies = [
        Request([{"role": "user", "content": x}], 1024, "".join([system[:1], system[1:]]))
        for x in inputs
    ]
    short = [Request([{"role": "user", "content": x}], 1024, "Be brief.") for x in inputs]

    def provider(on: bool) -> AnthropicProvider:
        from agentic_synth.providers._prompt_cache import PromptCacheConfig

        return AnthropicProvider(
            api_key="sk-ant-bench",
            base_url="http://127.0.0.1:9",
            timeout=600.0,
            max_connections=1,
            prompt_cache=PromptCacheConfig(enabled=on),
        )

    async def per_request(p: AnthropicProvider, batch: list[Request]) -> float:
        # Warm the group first, as in a job: one warm-up, then everyone passes the gate.
        first = p._plan(MODEL, batch[0], batch[0].system)
        if first is not None:
            ticket = first.ticket()
            await ticket.wait(600.0)
            ticket.opened()
            ticket.close()
        gc.collect()
        start = time.process_time()
        for r in batch:
            system_text = p._system(r)
            plan = p._plan(MODEL, r, system_text)
            if plan is None:
                p._params(MODEL, r, system_text)
                continue
            ticket = plan.ticket()
            await ticket.wait(600.0)
            p._params(MODEL, r, system_text, plan)
            ticket.opened()
            ticket.close()
        return (time.process_time() - start) / len(batch) * 1e6

    on, off = provider(True), provider(False)
    try:
        figures = {
            "body_without_caching_us": await per_request(off, requests),
            "shared_prompt_us": await per_request(on, requests),
            "equal_copies_us": await per_request(provider(True), copies),
            "short_prompt_us": await per_request(on, short),
            "short_prompt_off_us": await per_request(off, short),
        }
    finally:
        await on.aclose()
        await off.aclose()
    return figures


async def one_run(n: int, cached: bool, wire: bool, concurrency: int) -> dict[str, Any]:
    """A run on a fresh simulator (a simulator answers a repeated request differently)."""
    if not wire:
        return await run_job(n, cached, wire=None, concurrency=concurrency)
    config = SimConfig(seed=8, latency="uniform:0.01,0.03", output_tokens=OUTPUT_TOKENS)
    async with MockServer(config) as server:
        return await run_job(n, cached, wire=server, concurrency=concurrency)


async def main(n: int, wire: bool, concurrency: int) -> None:
    await one_run(min(n, 500), True, wire, concurrency)  # warm-up: imports, pools, caches
    runs = [await one_run(n, cached, wire, concurrency) for cached in (True, False)]
    on, off = runs
    saving = 1 - on["cost_usd"] / off["cost_usd"]
    prefix = on["cache_write_tokens"] / max(on["writes"], 1)
    own = off["input_tokens"] / n - prefix
    output = off["output_tokens"] / n
    formula = modelled(n, round(prefix), round(own), output)
    where = "mock server, anthropic SDK" if wire else "in-process sim"
    print(
        f"\n{n:,} requests, {prefix:,.0f}-token shared system prompt, ~{own:,.0f} input "
        f"and ~{output:,.0f} output tokens each ({where})\n"
    )
    columns = [
        "caching",
        "cost_usd",
        "writes",
        "reads",
        "input_tokens",
        "cache_read_tokens",
        "output_tokens",
        "cpu_us_per_request",
        "wall_s",
    ]
    print(table(runs, columns))
    print(
        f"\nmeasured saving: {saving:.1%} (${off['cost_usd']:.2f} -> ${on['cost_usd']:.2f}); "
        f"by formula: {formula['saving']:.1%} "
        f"(${formula['off']:.2f} -> ${formula['on']:.2f})"
    )
    cpu = await prefix_cpu(n)
    base = cpu["body_without_caching_us"]
    added = cpu["shared_prompt_us"] - base
    print("\nprefix logic, CPU per request (us):")
    print(table([{k: round(v, 2) for k, v in cpu.items()}], list(cpu)))
    print(
        f"added for a cached prefix: {added:.2f} us (equal copies: "
        f"{cpu['equal_copies_us'] - base:.2f} us); short prompts: "
        f"{cpu['short_prompt_us'] - cpu['short_prompt_off_us']:.2f} us"
    )
    path = save(
        "prompt_cache_wire" if wire else "prompt_cache",
        {
            "requests": n,
            "prices_usd_per_token": PRICES,
            "runs": runs,
            "measured_saving": saving,
            "modelled": formula,
            "prefix_cpu_us": cpu,
            "added_cpu_us_per_request": added,
        },
    )
    print(f"\nsaved {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--wire", action="store_true", help="mock server + anthropic SDK")
    parser.add_argument("--concurrency", type=int, default=128)
    args = parser.parse_args()
    anyio.run(main, args.n, args.wire, args.concurrency)
