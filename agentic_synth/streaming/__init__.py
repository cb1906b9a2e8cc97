"""Incremental Server-Sent Events parsing for streamed provider responses."""

from __future__ import annotations

from ._sse import ServerSentEvent, SSEDecoder, SSELimitError

__all__ = ["SSEDecoder", "SSELimitError", "ServerSentEvent"]
