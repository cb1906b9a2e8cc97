"""Batch mode over OpenAI's Files + Batch API against the mock server (its own
process): the same records as online mode, in order, at half the price, and a rerun
that pays nothing."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from agentic_synth import Completion, ModelSpec, Synth
from agentic_synth.simulator import SimConfig
from agentic_synth.simulator._serve import spawn_mock_server

pytestmark = pytest.mark.anyio

PROMPTS = [f"Name a fact about the number {i}." for i in range(25)]
KEY = "sk-proj-openai-test-key-987654"


def stats(url: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{url}/_sim/stats", timeout=10) as response:
        data: dict[str, int] = json.load(response)
    return data


async def test_openai_batch_mode_end_to_end(tmp_path: Path) -> None:
    state = tmp_path / "state.sqlite"
    with spawn_mock_server(SimConfig(seed=5, batch_processing_time=0.3)) as url:
        spec = ModelSpec("openai:gpt-4o-mini", base_url=f"{url}/v1", api_key=KEY)
        async with Synth([spec]) as synth:
            batch = await synth.generate_batch(
                PROMPTS, max_tokens=16, mode="batch", batch_state=state, batch_poll_interval=0.05
            )
            assert stats(url)["batches_created"] == 1
            again = await synth.generate_batch(
                PROMPTS, max_tokens=16, mode="batch", batch_state=state, batch_poll_interval=0.05
            )
            assert stats(url)["batches_created"] == 1  # the rerun replays the state
        async with Synth([spec]) as synth:
            online = await synth.generate_batch(PROMPTS, max_tokens=16)
    assert len(batch) == len(online) == len(PROMPTS)
    for i, (b, o, a) in enumerate(zip(batch, online, again, strict=True)):
        assert isinstance(b, Completion) and isinstance(o, Completion), (b, o)
        assert (b.index, b.text, b.usage, b.finish_reason) == (i, o.text, o.usage, o.finish_reason)
        assert b.model == "openai:gpt-4o-mini" and b.batch_id and b.batch_id.startswith("batch_")
        assert b.cost is not None and o.cost is not None
        assert b.cost == pytest.approx(o.cost / 2, rel=1e-12)  # the batch discount
        assert isinstance(a, Completion) and a.cached and a.cost == 0.0 and a.text == b.text
    assert not any(KEY.encode() in blob for blob in state_files(tmp_path))


def state_files(folder: Path) -> list[bytes]:
    """The state database and its write-ahead log, as bytes."""
    return [file.read_bytes() for file in folder.glob("state.sqlite*")]
