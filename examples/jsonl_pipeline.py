"""Stream a large, lazily generated input through iter_batch into a JSONL file.

Memory stays proportional to max_concurrency however long the input is, and
every input ends as exactly one line: a result or an error record.
"""

import json
from collections.abc import Iterator

import anyio

from agentic_synth import Synth

TOPICS = ["databases", "gardening", "chess", "astronomy", "cooking"]


def prompts(n: int) -> Iterator[dict[str, object]]:
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        yield {"prompt": f"Ask a beginner question about {topic} (#{i}).", "max_tokens": 32}


async def main() -> None:
    written = failed = 0
    async with Synth(models=["sim:sim-1"], max_concurrency=128) as synth:
        # buffered local writes are fast enough to do on the event loop
        with open("questions.jsonl", "w") as out:  # noqa: ASYNC230
            async with synth.iter_batch(prompts(20_000)) as results:
                async for index, result in results:
                    if result.ok:
                        record = {"index": index, "text": result.text, "model": result.model}
                    else:
                        record = {"index": index, "error": result.message}
                        failed += 1
                    out.write(json.dumps(record) + "\n")
                    written += 1
        m = synth.metrics()
    print(f"wrote {written} lines ({failed} errors) at {m.throughput:,.0f} req/s")


anyio.run(main)
