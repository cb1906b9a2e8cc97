"""Shared fixtures. Tests never touch the network or need a real API key."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from redis_helpers import RedisServer, redis_binary


@pytest.fixture(autouse=True)
def _no_real_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see no provider keys or URLs from the developer's environment."""
    for name in (
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "SYNTH_MODELS",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One server for the tests that only read and write (each uses its own prefix)."""
    server = RedisServer(redis_binary(), tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.kill()


@pytest.fixture
def new_redis_server(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Servers of the test's own (to kill and restart, with extra flags or a
    password); all killed afterwards."""
    binary = redis_binary()
    servers: list[RedisServer] = []

    def make(*extra: str, password: str | None = None) -> RedisServer:
        workdir = tmp_path / f"redis{len(servers)}"
        workdir.mkdir()
        server = RedisServer(binary, workdir, *extra, password=password)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.kill()
