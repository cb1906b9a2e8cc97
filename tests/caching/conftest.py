"""A real ``redis-server`` on a free loopback port, in a temporary directory.

Skipped only when the binary is missing and ``SYNTH_REQUIRE_REDIS`` is unset;
CI sets it (and installs the Debian package), so there a missing server fails.
"""

from __future__ import annotations

import os

import pytest
from redis_helpers import RedisServer, free_port, redis_binary  # noqa: F401


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    """Keys of this test only, on the shared server."""
    return f"test:{request.node.name}:{os.getpid()}:"
