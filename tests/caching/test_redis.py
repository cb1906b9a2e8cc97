"""The Redis tier against a real redis-server: values and leases shared by clients
and processes, Redis' own expiry, and graceful degradation when Redis dies, hangs
or comes back (one warning per outage, misses and no-ops, back-off, recovery)."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio
import pytest
import redis.asyncio as aioredis

from agentic_synth.caching import LeasingTier
from agentic_synth.caching._redis import RedisTier

if TYPE_CHECKING:
    from redis_helpers import RedisServer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def key(i: int) -> bytes:
    return i.to_bytes(16, "big")


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "agentic_synth.caching" and r.levelno == logging.WARNING
    ]


async def eventually_none(tier: RedisTier, k: bytes) -> None:
    """Poll until Redis has expired ``k`` (no assertion on how long it took)."""
    with anyio.fail_after(10):
        while await tier.get(k) is not None:  # noqa: ASYNC110 (Redis' clock, no event)
            await anyio.sleep(0.01)


async def test_put_get_first_write_wins(redis_server: RedisServer, prefix: str) -> None:
    tier = RedisTier(redis_server.url, prefix=prefix)
    assert isinstance(tier, LeasingTier)
    assert await tier.get(key(1)) is None
    await tier.put(key(1), b"first")
    await tier.put(key(1), b"second")
    assert await tier.get(key(1)) == b"first"
    stats = tier.stats()
    assert (stats.hits, stats.misses, stats.writes, stats.errors) == (1, 1, 1, 0)
    assert stats.extra["ignored"] == 1
    await tier.delete(key(1))
    assert await tier.get(key(1)) is None
    await tier.aclose()


async def test_two_clients_share_values_and_prefixes_separate(
    redis_server: RedisServer, prefix: str
) -> None:
    a = RedisTier(redis_server.url, prefix=prefix)
    b = RedisTier(redis_server.url, prefix=prefix)
    other = RedisTier(redis_server.url, prefix=prefix[:-1] + "-other:")
    await a.put(key(1), b"from a")
    assert await b.get(key(1)) == b"from a"
    assert await other.get(key(1)) is None
    await other.put(key(2), b"other's")
    assert await b.lease(key(3), 60)
    assert await a.clear() == 2  # the entry and the lease, not the other prefix's
    assert await b.get(key(1)) is None
    assert await other.get(key(2)) == b"other's"
    assert await other.clear() == 1
    for tier in (a, b, other):
        await tier.aclose()


async def test_ttl_is_redis_expiry(redis_server: RedisServer, prefix: str) -> None:
    tier = RedisTier(redis_server.url, prefix=prefix, ttl=10.0)
    raw = aioredis.Redis.from_url(redis_server.url)
    await tier.put(key(1), b"short", ttl=0.05)
    await tier.put(key(2), b"capped", ttl=1000.0)
    await tier.put(key(3), b"tier's")
    assert 0 < await raw.pttl(tier._key(key(1))) <= 50
    assert 9_000 < await raw.pttl(tier._key(key(2))) <= 10_000
    assert 9_000 < await raw.pttl(tier._key(key(3))) <= 10_000
    await eventually_none(tier, key(1))
    assert await tier.get(key(2)) == b"capped"
    await tier.put(key(1), b"again")  # expired: absent, so this write wins
    assert await tier.get(key(1)) == b"again"

    forever = RedisTier(redis_server.url, prefix=prefix)
    await forever.put(key(4), b"v")
    assert await raw.pttl(forever._key(key(4))) == -1
    await raw.aclose()
    await tier.aclose()
    await forever.aclose()


async def test_leases_are_exclusive_and_only_the_holder_releases(
    redis_server: RedisServer, prefix: str
) -> None:
    a = RedisTier(redis_server.url, prefix=prefix)
    b = RedisTier(redis_server.url, prefix=prefix)
    assert await a.lease(key(1), 60)
    assert not await b.lease(key(1), 60)
    assert not await a.lease(key(1), 60)  # not re-entrant: one call per lease
    await b.release(key(1))  # not b's to give back
    assert not await b.lease(key(1), 60)
    await a.release(key(1))
    assert await b.lease(key(1), 60)
    # The lease key is not the value's key.
    assert await a.get(key(1)) is None
    # A lease runs out by itself.
    assert await a.lease(key(2), 0.05)
    with anyio.fail_after(10):
        while not await b.lease(key(2), 60):  # noqa: ASYNC110 (Redis' clock, no event)
            await anyio.sleep(0.01)
    for tier in (a, b):
        await tier.aclose()


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from agentic_synth.caching._redis import RedisTier

    async def main(url, prefix, action):
        tier = RedisTier(url, prefix=prefix)
        k = bytes(16)
        if action == "write":
            await tier.put(k, b"written by the child")
            print(await tier.lease(b"L" * 16, 60))
        else:
            print((await tier.get(b"P" * 16)).decode())
            print(await tier.lease(b"L" * 16, 60))
        await tier.aclose()

    asyncio.run(main(*sys.argv[1:]))
    """
)


def child(url: str, prefix: str, action: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, url, prefix, action],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.split()


async def test_two_processes_share_values_and_leases(
    redis_server: RedisServer, prefix: str
) -> None:
    tier = RedisTier(redis_server.url, prefix=prefix)
    assert await anyio.to_thread.run_sync(child, redis_server.url, prefix, "write") == ["True"]
    assert await tier.get(bytes(16)) == b"written by the child"
    assert not await tier.lease(b"L" * 16, 60)  # the child (gone) took it for 60 s
    await tier.put(b"P" * 16, b"from-the-parent")
    await tier.release(b"L" * 16)  # not ours: stays
    out = await anyio.to_thread.run_sync(child, redis_server.url, prefix, "read")
    assert out == ["from-the-parent", "False"]
    await tier.aclose()


async def test_redis_killed_mid_run_then_restarted(
    new_redis_server: Callable[[], RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agentic_synth.caching")
    server = new_redis_server()
    clock = Clock()
    tier = RedisTier(server.url, clock=clock, timeout=2.0)
    await tier.put(key(1), b"v")
    assert await tier.get(key(1)) == b"v"

    server.kill()
    for i in range(50):  # no exception: misses, no-op puts, granted leases
        assert await tier.get(key(1)) is None
        await tier.put(key(i), b"lost")
        assert await tier.lease(key(i), 60)
        await tier.release(key(i))
        await tier.delete(key(i))
    assert await tier.clear() == 0
    stats = tier.stats()
    assert stats.errors == 1  # one try, then quiet for the back-off
    assert stats.extra["skipped"] == 50 * 5 + 1 - 1  # all 251 calls but the first
    assert stats.extra["down"] and stats.extra["outages"] == 1
    assert (stats.hits, stats.misses) == (1, 0)  # calls that never reached Redis are neither
    assert len(warnings_of(caplog)) == 1
    assert "redis cache unreachable" in warnings_of(caplog)[0]

    clock.now += 1.0  # back-off over: one more try, still down, back-off doubles
    assert await tier.get(key(1)) is None
    assert tier.stats().errors == 2
    clock.now += 1.0
    assert await tier.get(key(1)) is None
    assert tier.stats().errors == 2  # 2 s now

    server.start()  # same port, empty (no persistence)
    clock.now += 1.0
    assert await tier.get(key(1)) is None
    await tier.put(key(1), b"after")
    assert await tier.get(key(1)) == b"after"
    assert not tier.stats().extra["down"]
    assert any(
        "reachable again" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO
    )
    assert len(warnings_of(caplog)) == 1

    server.kill()  # a new outage warns again, once
    for _ in range(10):
        assert await tier.get(key(1)) is None
    assert len(warnings_of(caplog)) == 2
    assert tier.stats().extra["outages"] == 2
    await tier.aclose()


async def test_concurrent_calls_in_an_outage_back_off_once_and_probe_alone(
    new_redis_server: Callable[[], RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = new_redis_server()
    clock = Clock()
    tier = RedisTier(server.url, clock=clock)
    await tier.put(key(1), b"v")
    server.kill()

    async def burst() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(tier.get, key(1))

    await burst()  # all sent before anyone saw the outage: 50 errors, one back-off
    assert tier.stats().errors == 50
    assert tier._delay == 1.0
    clock.now += 1.0
    await burst()  # one probe, 49 skipped; still down: the back-off doubles
    assert tier.stats().errors == 51
    assert tier._delay == 2.0
    clock.now += 1.0
    await burst()  # within the 2 s: all skipped
    assert tier.stats().errors == 51
    assert tier.stats().extra["skipped"] == 49 + 50
    assert len(warnings_of(caplog)) == 1
    server.start()
    clock.now += 1.0
    await burst()
    assert not tier.stats().extra["down"]
    assert await tier.get(key(1)) is None  # a new, empty server
    await tier.aclose()


async def test_a_hung_redis_costs_one_timeout(
    new_redis_server: Callable[[], RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = new_redis_server()
    clock = Clock()
    tier = RedisTier(server.url, clock=clock, timeout=0.2)
    await tier.put(key(1), b"v")
    server.pause()
    try:
        assert await tier.get(key(1)) is None  # times out
        assert await tier.get(key(1)) is None  # skipped: backing off
        assert tier.stats().errors == 1
        assert len(warnings_of(caplog)) == 1
    finally:
        server.resume()
    clock.now += 1.0
    assert await tier.get(key(1)) == b"v"
    await tier.aclose()


async def test_an_unreachable_url_warns_without_its_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"redis://user:hunter2@127.0.0.1:{port}/0"
    tier = RedisTier(url)
    assert await tier.get(key(1)) is None
    assert await tier.lease(key(1), 10)
    [warning] = warnings_of(caplog)
    assert "hunter2" not in warning and "user:***@127.0.0.1" in warning
    assert "hunter2" not in str(tier.stats())
    await tier.aclose()
