"""One generation, a batch and a stream, on the embedded simulator (no key needed).

Set ANTHROPIC_API_KEY (or pass models=["anthropic:claude-haiku-4-5"]) to use a real model.
"""

import anyio

from agentic_synth import Synth


async def main() -> None:
    async with Synth(models=["sim:sim-1"], max_concurrency=64) as synth:
        one = await synth.generate("Write a haiku about rain.", max_tokens=40)
        print(f"{one.model}: {one.text!r} ({one.usage.output_tokens} tokens)")

        prompts = [f"Write a customer question about product #{i}." for i in range(1000)]
        results = await synth.generate_batch(prompts, max_tokens=48)
        print(f"batch: {sum(r.ok for r in results)} of {len(results)} succeeded")

        async for event in synth.generate_stream("Tell a very short story.", max_tokens=40):
            if event.type == "text":
                print(event.text, end="", flush=True)
            else:
                print(f"\n(time to first token {event.completion.ttft * 1000:.1f} ms)")

        m = synth.metrics()
        print(f"{m.requests} requests, p99 latency {m.latency_p99 * 1000:.2f} ms")


anyio.run(main)
