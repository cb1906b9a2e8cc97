"""The response cache through Synth: samples never collapse, reruns replay, shared mode
coalesces, controls, keys. Tiers here are small in-test ones; the real tiers have
their own tests."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import agentic_synth._synth as synth_module
from agentic_synth import Completion, Failure, ModelSpec, ServerError, Synth
from agentic_synth._types import ProviderResponse, ProviderStreamEnd, Request, TextDelta, Usage
from agentic_synth.caching import TierStats, cache_key
from agentic_synth.caching._cache import Cache


class DictMemory:
    """A memory tier for tests: a dict, no TTL."""

    name = "memory"

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def get_nowait(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def put_nowait(self, key: bytes, value: bytes, ttl: float | None = None) -> None:
        self.data.setdefault(key, value)

    def stats(self) -> TierStats:
        return TierStats("memory", entries=len(self.data))


class DictStore:
    """A 'persistent' tier for tests: survives Synth instances; first write wins."""

    name = "store"

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.puts = 0

    async def get(self, key: bytes) -> bytes | None:
        await anyio.lowlevel.checkpoint()
        return self.data.get(key)

    async def put(self, key: bytes, value: bytes, *, ttl: float | None = None) -> None:
        await anyio.lowlevel.checkpoint()
        self.puts += 1
        self.data.setdefault(key, value)

    async def delete(self, key: bytes) -> None:
        self.data.pop(key, None)

    async def clear(self) -> int:
        n = len(self.data)
        self.data.clear()
        return n

    def stats(self) -> TierStats:
        return TierStats("store", entries=len(self.data))

    async def aclose(self) -> None:
        return None


class Sampler:
    """A provider whose every call gives a new text, like a model at temperature > 0."""

    name = "sim"

    def __init__(self, *, latency: float = 0.0, fail: bool = False) -> None:
        self.calls = 0
        self.latency = latency
        self.fail = fail
        self._ids = itertools.count()

    async def complete(self, model: str, request: Request) -> ProviderResponse:
        self.calls += 1
        n = next(self._ids)
        if self.latency:
            await anyio.sleep(self.latency)
        else:
            await anyio.lowlevel.checkpoint()
        if self.fail:
            raise ServerError("boom", status=500)
        return ProviderResponse(
            f"answer {n} to {request.messages[-1]['content']}", "end_turn", Usage(5, 3), f"req_{n}"
        )

    async def stream(
        self, model: str, request: Request
    ) -> AsyncIterator[TextDelta | ProviderStreamEnd]:
        raise NotImplementedError  # not used here
        yield  # pragma: no cover

    async def aclose(self) -> None:
        return None


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> Sampler:
    sampler = Sampler()
    monkeypatch.setattr(synth_module, "create_provider", lambda spec, **kw: sampler)
    return sampler


def synth(cache: Any, **kw: Any) -> Synth:
    from agentic_synth import RetryPolicy

    return Synth([ModelSpec("sim", "m")], cache=cache, retry=RetryPolicy(max_attempts=1), **kw)


async def test_samples_never_collapse_and_a_rerun_replays_them_in_order(provider: Sampler) -> None:
    store = DictStore()
    inputs = ["Write a tagline for a coffee shop."] * 50
    async with synth(Cache((DictMemory(), store))) as s:
        first = await s.generate_batch(inputs, temperature=0.8, max_tokens=16)
    assert provider.calls == 50
    texts = [r.text for r in first]  # type: ignore[union-attr]
    assert len(set(texts)) == 50  # 50 samples, 50 answers
    async with synth(Cache((DictMemory(), store))) as s:
        again = await s.generate_batch(inputs, temperature=0.8, max_tokens=16)
        stats = s.metrics().cache
    assert provider.calls == 50  # the rerun made no call
    assert [r.text for r in again] == texts  # the same 50, in order  # type: ignore[union-attr]
    assert all(isinstance(r, Completion) and r.cached for r in again)
    assert stats is not None and stats["hits"] == 50 and stats["hit_rate"] == 1.0


async def test_shared_mode_coalesces_identical_requests(provider: Sampler) -> None:
    provider.latency = 0.02
    async with synth(Cache((DictMemory(),), mode="shared"), max_concurrency=100) as s:
        results = await s.generate_batch(["label this: cats"] * 100, temperature=0)
    assert provider.calls == 1  # one call for 100 concurrent identical requests
    assert len({r.text for r in results}) == 1  # type: ignore[union-attr]
    assert [r.index for r in results] == list(range(100))
    assert sum(r.cached for r in results) == 99  # type: ignore[union-attr]


async def test_default_mode_makes_every_identical_input_its_own_call(provider: Sampler) -> None:
    provider.latency = 0.02
    async with synth(Cache((DictMemory(),)), max_concurrency=100) as s:
        results = await s.generate_batch(["label this: cats"] * 100)
    assert provider.calls == 100 and len({r.text for r in results}) == 100  # type: ignore[union-attr]


async def test_a_failed_leader_reaches_every_waiter_and_is_not_stored(provider: Sampler) -> None:
    provider.latency = 0.02
    provider.fail = True
    memory = DictMemory()
    async with synth(Cache((memory,), mode="shared"), max_concurrency=10) as s:
        results = await s.generate_batch(["q"] * 10)
        assert provider.calls == 1 and all(isinstance(r, Failure) for r in results)
        assert memory.data == {}  # only successes are stored
        provider.fail = False
        again = await s.generate_batch(["q"] * 3)
    assert all(r.ok for r in again) and provider.calls == 2  # the entry was cleared


async def test_cancelling_the_leader_does_not_cancel_the_others(provider: Sampler) -> None:
    provider.latency = 0.05
    async with synth(Cache((DictMemory(),), mode="shared")) as s:
        got: list[str] = []
        leader = anyio.CancelScope()

        async def lead() -> None:
            with leader:
                await s.generate("q", temperature=0)

        async def follow() -> None:
            got.append((await s.generate("q", temperature=0)).text)

        async with anyio.create_task_group() as tg:
            tg.start_soon(lead)
            await anyio.wait_all_tasks_blocked()  # the leader's call is in flight
            tg.start_soon(follow)
            tg.start_soon(follow)
            await anyio.wait_all_tasks_blocked()  # both wait for the leader
            leader.cancel()
    assert leader.cancelled_caught
    assert len(got) == 2 and got[0] == got[1]
    assert provider.calls == 2  # the leader's call was cancelled; one follower took over


async def test_per_call_controls(provider: Sampler) -> None:
    memory = DictMemory()
    async with synth(Cache((memory,))) as s:
        a = await s.generate("q")
        assert provider.calls == 1 and len(memory.data) == 1
        fresh = await s.generate("q", cache="no-store")
        assert provider.calls == 2 and len(memory.data) == 2 - 1  # not stored
        assert not fresh.cached
        skipped = await s.generate("q", cache="no-cache")
        assert provider.calls == 3 and not skipped.cached
        off = await s.generate("q", cache="off")
        assert provider.calls == 4 and not off.cached
    assert a.text != fresh.text


async def test_a_shared_cache_replays_the_first_answer_for_identical_requests(
    provider: Sampler,
) -> None:
    store = DictStore()
    async with synth(Cache((DictMemory(), store), mode="shared")) as s:
        one = await s.generate("label: dogs", temperature=0)
    async with synth(Cache((DictMemory(), store), mode="shared")) as s:
        two = await s.generate("label: dogs", temperature=0)
    assert two.cached and two.text == one.text and provider.calls == 1


async def test_near_identical_deterministic_requests_share_an_answer_when_asked(
    provider: Sampler,
) -> None:
    base = (
        "Classify the sentiment of this product review: the battery lasts all day and "
        "the screen is bright, but the speakers are weak and the case scratches easily"
    )
    async with synth(Cache((DictMemory(),), mode="shared", similarity=0.8)) as s:
        first = await s.generate(base, temperature=0)
        near = await s.generate(base + " indeed", temperature=0)
        sampled = await s.generate(base + " indeed", temperature=0.7)
        other_system = await s.generate(base + " indeed", temperature=0, system="Be terse.")
    assert near.cached and near.text == first.text
    assert not sampled.cached  # not deterministic: never a near hit
    assert not other_system.cached  # another scope
    assert provider.calls == 3


def test_near_hits_need_the_shared_mode() -> None:
    from agentic_synth import ConfigurationError

    with pytest.raises(ConfigurationError, match="shared"):
        Cache(("memory",), similarity=0.9)


# -- keys ------------------------------------------------------------------------

BASE = Request(
    messages=[{"role": "user", "content": "hello"}],
    max_tokens=64,
    system="sys",
    temperature=0.5,
    top_p=0.9,
    stop=("END",),
    json_schema={"type": "object", "properties": {"a": {"type": "string"}}},
    extra={"seed": 1, "metadata": {"x": 1}},
)

MUTATIONS = {
    "messages": [{"role": "user", "content": "hello!"}],
    "max_tokens": 65,
    "system": "sys2",
    "temperature": 0.6,
    "top_p": 0.8,
    "stop": ("END", "STOP"),
    "json_schema": {"type": "object", "properties": {"a": {"type": "integer"}}},
    "extra": {"seed": 2, "metadata": {"x": 1}},
}


def _with(field: str, value: Any) -> Request:
    values = {f: getattr(BASE, f) for f in MUTATIONS} | {field: value}
    return Request(**values, timeout=BASE.timeout)


@pytest.mark.parametrize("field", sorted(MUTATIONS))
def test_every_field_that_changes_the_answer_changes_the_key(field: str) -> None:
    assert cache_key(_with(field, MUTATIONS[field]), models=["sim:m"]) != cache_key(
        BASE, models=["sim:m"]
    )


def test_sample_namespace_and_models_change_the_key_and_nothing_else_does() -> None:
    key = cache_key(BASE, models=["sim:m"])
    assert cache_key(BASE, models=["sim:m"], sample=1) != key
    assert cache_key(BASE, models=["sim:m"], namespace="job-2") != key
    assert cache_key(BASE, models=["sim:other"]) != key
    assert cache_key(BASE, models=["sim:m", "sim:backup"]) != key
    # what does not change the answer: timeout, dict order, cache_control markers
    same = [
        Request(**{f: getattr(BASE, f) for f in MUTATIONS}, timeout=3.0),
        _with("extra", {"metadata": {"x": 1}, "seed": 1}),
        _with("extra", {"seed": 1, "metadata": {"x": 1}, "cache_control": {"type": "ephemeral"}}),
        _with("json_schema", {"properties": {"a": {"type": "string"}}, "type": "object"}),
    ]
    assert all(cache_key(r, models=["sim:m"]) == key for r in same)


@settings(max_examples=200, deadline=None)
@given(
    field=st.sampled_from(sorted(MUTATIONS)),
    text=st.text(min_size=1, max_size=40),
    number=st.integers(min_value=1, max_value=10_000),
)
def test_property_any_mutation_changes_the_key(field: str, text: str, number: int) -> None:
    value: Any
    if field == "messages":
        value = [{"role": "user", "content": "hello" + text}]
    elif field == "max_tokens":
        value = 64 + number
    elif field in ("system",):
        value = "sys" + text
    elif field == "temperature":
        value = 0.5 + number / 100_000
    elif field == "top_p":
        value = 0.9 - number / 100_000
    elif field == "stop":
        value = ("END", text)
    elif field == "json_schema":
        value = {"type": "object", "title": text}
    else:
        value = {"seed": 1, "metadata": {"x": 1}, "user": text}
    mutated = _with(field, value)
    assert cache_key(mutated, models=["sim:m"]) != cache_key(BASE, models=["sim:m"])


async def test_fifty_samples_on_the_simulator_with_a_real_cache_file(tmp_path: object) -> None:
    """The issue's proof, with real parts: 50 samples of one prompt at temperature 0.8
    are 50 calls and 50 distinct texts; the rerun is 0 calls and the same 50 in order."""
    from pathlib import Path

    db = str(Path(str(tmp_path)) / "cache.db")
    runs = []
    for _ in range(2):
        async with Synth(["sim:s"], cache=db) as s:
            results = await s.generate_batch(["Write a tagline."] * 50, temperature=0.8)
            runs.append(([r.text for r in results], s.metrics()))  # type: ignore[union-attr]
    (first, m1), (second, m2) = runs
    assert m1.requests == 50 and len(set(first)) == 50
    assert m2.requests == 0 and second == first
    assert m2.cache is not None and m2.cache["tiers"]["sqlite"]["hits"] == 50


def test_the_engine_keys_answers_with_the_public_cache_key() -> None:
    from agentic_synth.caching._cache import ResponseCache

    cache = ResponseCache(
        Cache(("memory",), namespace="ns"), memory=None, tiers=[], models=["sim:m"]
    )
    keys = [cache.key(BASE) for _ in range(3)]  # three occurrences: three samples
    assert keys == [cache_key(BASE, models=["sim:m"], sample=s, namespace="ns") for s in range(3)]
    shared = ResponseCache(Cache(("memory",), mode="shared"), memory=None, tiers=[], models=["m"])
    assert shared.key(BASE) == shared.key(BASE) == cache_key(BASE, models=["m"])
