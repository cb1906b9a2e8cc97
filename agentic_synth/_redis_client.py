"""One way to open an asyncio Redis client for the engine's shared state (the cache
tier, shared rate limits).

redis-py's default pool refuses a 101st concurrent command at once
("Too many connections"), which a job with hundreds of requests in flight reaches
and would read as an outage. A blocking pool of a bounded size makes a command wait
(up to ``timeout``) for a free connection instead; no retries are hidden in the
client: the callers have their own.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

__all__ = ["MAX_CONNECTIONS", "open_redis"]

#: Connections per client: Redis answers a script in tens of microseconds, so a few
#: dozen connections serve thousands of commands a second.
MAX_CONNECTIONS = 64


def open_redis(url: str, *, timeout: float, max_connections: int = MAX_CONNECTIONS) -> Any:
    """An asyncio client of ``url`` on a blocking pool; ``ValueError`` on a bad URL."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )
    return aioredis.Redis(connection_pool=pool)
