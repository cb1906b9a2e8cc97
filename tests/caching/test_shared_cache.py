"""Several engines sharing one Redis: leases so a call is paid once, and a Redis that
goes away mid-run loses nothing (the engines go on on their local tiers)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

import agentic_synth._synth as synth_module
from agentic_synth import ModelSpec, Synth
from agentic_synth.caching._cache import Cache

from .conftest import RedisServer
from .test_response_cache import Sampler


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> Sampler:
    sampler = Sampler(latency=0.02)
    monkeypatch.setattr(synth_module, "create_provider", lambda spec, **kw: sampler)
    return sampler


def engine(tiers: tuple[object, ...], **kw: object) -> Synth:
    return Synth([ModelSpec("sim", "m")], cache=Cache(tiers, **kw), max_concurrency=16)  # type: ignore[arg-type]


async def test_two_engines_on_one_redis_pay_once_for_each_answer(
    provider: Sampler, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Two workers of one job run the same inputs at the same time (a retried shard,
    say): every answer is paid once; both see the same answers."""
    inputs = [f"item {i}" for i in range(60)]
    url = redis_server.url
    a = engine(("memory", str(tmp_path / "a.db"), url), namespace="lease-test")
    b = engine(("memory", str(tmp_path / "b.db"), url), namespace="lease-test")
    got: dict[str, list[str]] = {}

    async def run(name: str, synth: Synth) -> None:
        async with synth:
            results = await synth.generate_batch(inputs)
        got[name] = [r.text for r in results]  # type: ignore[union-attr]

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, "a", a)
        tg.start_soon(run, "b", b)
    assert provider.calls == 60  # not 120
    assert got["a"] == got["b"]


async def test_redis_killed_mid_run_loses_nothing(
    provider: Sampler, new_redis_server: Callable[[], RedisServer], tmp_path: Path
) -> None:
    redis = new_redis_server()
    db = tmp_path / "local.db"
    inputs = [f"item {i}" for i in range(200)]
    done = 0
    async with engine(("memory", str(db), redis.url)) as synth:
        async with synth.iter_batch(inputs) as results:
            async for _, result in results:
                assert result.ok
                done += 1
                if done == 50:
                    redis.kill()  # Redis goes away: warn once, go on on the local tiers
        stats = synth.metrics().cache
    assert done == 200 and provider.calls == 200
    assert stats is not None and stats["tiers"]["redis"]["errors"] > 0
    # everything is in the local file: a rerun without Redis pays nothing
    async with engine(("memory", str(db))) as synth:
        again = await synth.generate_batch(inputs)
    assert all(r.cached for r in again) and provider.calls == 200  # type: ignore[union-attr]
