"""Run by test_sqlite.py: writes to a SQLiteTier until killed, printing each key
once its put has returned (acknowledged = committed)."""

from __future__ import annotations

import asyncio
import hashlib
import random
import sys

from agentic_synth.caching._sqlite import SQLiteTier


def value_of(key: bytes) -> bytes:
    return hashlib.sha256(key).digest() * 40


async def main(path: str, seed: int, checkpoint_bytes: int) -> None:
    tier = SQLiteTier(path, checkpoint_bytes=checkpoint_bytes)
    rng = random.Random(seed)
    out = sys.stdout

    async def writer() -> None:
        while True:
            key = rng.randbytes(16)
            await tier.put(key, value_of(key))
            out.write(key.hex() + "\n")
            out.flush()

    out.write("ready\n")
    out.flush()
    await asyncio.gather(*(writer() for _ in range(32)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
