"""OpenAI-compatible Chat Completions (OpenAI, vLLM, llama.cpp, Ollama, LM Studio, OpenRouter).

Written directly on :class:`aiohttp.ClientSession` rather than httpx: at 256
concurrent requests on loopback, httpx (even over the aiohttp transport) costs
2-3x the client CPU per request, and this provider is on the hot path of
million-request jobs (``benchmarks/bench_transport_clients.py`` measures it).
One session (one connection pool sized by ``max_connections``) per provider,
created lazily inside the running event loop.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import anyio
import yarl

from .._exceptions import (
    APIConnectionError,
    APITimeoutError,
    ConfigurationError,
    ProviderError,
    redact,
)
from .._spec import ModelSpec
from .._types import ProviderResponse, ProviderStreamEnd, Request, TextDelta, Usage
from ..streaming import SSEDecoder
from ._base import ProviderStreamEvent
from ._http_errors import (
    BodyError,
    error_for_status,
    error_for_type,
    error_from_body,
    rate_limit_headers,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "OpenAIProvider",
    "chat_completions_url",
    "create",
    "validate",
]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_USER_AGENT = "agentic-synth/0.1 (aiohttp)"
#: Seconds a finished stream may take to end its HTTP body before the connection is dropped.
DRAIN_SECONDS = 0.5


def validate(spec: ModelSpec) -> None:
    """Fail at configuration time on a base URL that cannot work."""
    chat_completions_url(spec.base_url)


def create(spec: ModelSpec, *, max_connections: int) -> OpenAIProvider:
    """Build the provider for a resolved ``openai:`` spec."""
    return OpenAIProvider(
        base_url=spec.base_url,
        api_key=spec.api_key,
        timeout=spec.timeout,
        max_connections=max_connections,
    )


def chat_completions_url(base_url: str | None) -> yarl.URL:
    """``{base_url}/chat/completions``.

    Like the openai SDK, ``base_url`` is expected to include the API version
    (``https://openrouter.ai/api/v1``); a bare ``http://host:port`` gets ``/v1``,
    since no compatible server answers chat completions at the root.
    """
    url = yarl.URL((base_url or DEFAULT_BASE_URL).rstrip("/"))
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(
            f"base_url must be an http(s) URL such as {DEFAULT_BASE_URL}, got {str(url)!r}"
        )
    if url.path in ("", "/"):
        url = url.with_path("/v1")
    return url.with_path(url.path.rstrip("/") + "/chat/completions")


def _env_proxy(url: yarl.URL) -> str | None:
    """The proxy the environment asks for, resolved once instead of on every request."""
    host = url.host or ""
    if host in _LOOPBACK or urllib.request.proxy_bypass(host):
        return None
    return urllib.request.getproxies().get(url.scheme)


class OpenAIProvider:
    """Chat Completions over one aiohttp session; errors mapped to ProviderError."""

    name = "openai"

    def __init__(
        self,
        *,
        base_url: str | None,
        api_key: str | None,
        timeout: float | None,
        max_connections: int,
    ) -> None:
        if max_connections < 1:
            raise ConfigurationError(f"max_connections must be >= 1, got {max_connections!r}")
        self._url = chat_completions_url(base_url)
        self._host = self._url.host
        self._api_key = api_key
        self._proxy = _env_proxy(self._url)
        self._headers = {"Content-Type": "application/json", "User-Agent": _USER_AGENT}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"OpenAIProvider(url={str(self._url)!r}, max_connections={self._max_connections})"

    def _client(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._session
        if session is None or session.closed or self._loop is not loop:
            # A session belongs to the loop it was made in; a new loop (a new
            # ``asyncio.run``) gets a new pool.
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, ttl_dns_cache=300, keepalive_timeout=30
            )
            session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                # API gateways set cookies we never need: don't parse or store them.
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("Accept-Encoding",),
            )
            self._session, self._loop = session, loop
        return session

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    def _body(self, model: str, request: Request, *, stream: bool) -> bytes:
        messages: list[Any] = request.messages
        if request.system is not None:
            messages = [{"role": "system", "content": request.system}, *messages]
        body: dict[str, Any] = {"model": model, "messages": messages}
        extra = request.extra
        if not extra or "max_completion_tokens" not in extra:
            body["max_tokens"] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop"] = list(request.stop)
        if request.json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": request.json_schema, "strict": True},
            }
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        if extra:
            body.update(extra)
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()

    async def _post(self, body: bytes, request: Request) -> aiohttp.ClientResponse:
        timeout = (
            self._timeout
            if request.timeout is None
            else aiohttp.ClientTimeout(total=request.timeout)
        )
        return await self._client().post(
            self._url, data=body, headers=self._headers, timeout=timeout, proxy=self._proxy
        )

    async def complete(self, model: str, request: Request) -> ProviderResponse:
        body = self._body(model, request, stream=False)
        try:
            async with await self._post(body, request) as resp:
                raw = await resp.read()
                if resp.status >= 400:
                    raise self._status_error(resp, raw, model)
                headers = rate_limit_headers(resp.headers.items())
                request_id = _request_id(resp)
        except ProviderError:
            raise
        except Exception as exc:
            raise self._transport_error(exc, model) from _cause(exc)
        return self._parse_completion(raw, model, request_id, headers)

    async def stream(self, model: str, request: Request) -> AsyncIterator[ProviderStreamEvent]:
        body = self._body(model, request, stream=True)
        try:
            resp = await self._post(body, request)
        except Exception as exc:
            raise self._transport_error(exc, model) from _cause(exc)
        done = False
        try:
            if resp.status >= 400:
                raise self._status_error(resp, await resp.read(), model)
            headers = rate_limit_headers(resp.headers.items())
            request_id = _request_id(resp)
            if resp.content_type == "application/json":
                # Some servers ignore ``stream`` (or answer errors) with a plain JSON body.
                whole = self._parse_completion(await resp.read(), model, request_id, headers)
                done = True
                if whole.text:
                    yield TextDelta(whole.text)
                end = ProviderStreamEnd(whole.finish_reason, whole.usage, request_id, headers)
            else:
                finish: str | None = None
                usage = Usage()
                decoder = SSEDecoder()
                async for chunk in resp.content.iter_any():
                    for event in decoder.feed(chunk):
                        data = event.data
                        if data == "[DONE]":
                            done = True
                            break
                        parsed = self._parse_chunk(data, model, headers)
                        if parsed is None:
                            continue
                        text, reason, chunk_usage = parsed
                        if text:
                            yield TextDelta(text)
                        if reason:
                            finish = reason
                        if chunk_usage is not None:
                            usage = chunk_usage
                    if done:
                        break
                if done and not resp.content.at_eof():
                    await _drain(resp)
                if finish is None and not done:
                    raise APIConnectionError(
                        f"stream from {self._host} ended before the answer was complete",
                        request_id=request_id,
                        model=model,
                    )
                done = True
                end = ProviderStreamEnd(finish or "unknown", usage, request_id, headers)
        except ProviderError:
            raise
        except Exception as exc:
            raise self._transport_error(exc, model) from _cause(exc)
        finally:
            # Read to the end: the connection goes back to the pool. Otherwise
            # (early close, cancellation, error) drop it at once.
            if done:
                resp.release()
            else:
                resp.close()
        yield end

    def _parse_completion(
        self, raw: bytes, model: str, request_id: str | None, headers: Mapping[str, str]
    ) -> ProviderResponse:
        try:
            data = json.loads(raw)
            if "error" in data:
                raise self._body_error(data, model, headers)
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
            finish = choice.get("finish_reason") or "unknown"
            usage = _usage(data.get("usage"))
        except ProviderError:
            raise
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise APIConnectionError(
                f"malformed response from {self._host}: {type(exc).__name__}: {exc}"[:300],
                request_id=request_id,
                model=model,
            ) from exc
        return ProviderResponse(text, finish, usage, request_id, headers)

    def _parse_chunk(
        self, data: str, model: str, headers: Mapping[str, str]
    ) -> tuple[str | None, str | None, Usage | None] | None:
        try:
            obj = json.loads(data)
            if "error" in obj:
                raise self._body_error(obj, model, headers)
            choices = obj.get("choices")
            usage = _usage(obj["usage"]) if obj.get("usage") else None
            if not choices:
                return None, None, usage
            choice = choices[0]
            delta = choice.get("delta") or {}
            return delta.get("content"), choice.get("finish_reason"), usage
        except ProviderError:
            raise
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise APIConnectionError(
                f"malformed stream event from {self._host}: {type(exc).__name__}: {exc}"[:300],
                model=model,
            ) from exc

    def _body_error(self, body: Any, model: str, headers: Mapping[str, str]) -> ProviderError:
        """An ``{"error": ...}`` payload inside a 200 answer (or stream)."""
        info = error_from_body(body)
        error = body.get("error") if isinstance(body, dict) else None
        status = error.get("code") if isinstance(error, dict) else None
        text = f"error from {self._host}: {info.message or 'no message'}"
        if isinstance(status, int) and 400 <= status < 600:  # vLLM puts the status in ``code``
            return error_for_status(
                status,
                text,
                headers=headers,
                error_type=info.type,
                model=model,
                api_key=self._api_key,
            )
        return error_for_type(
            info.type,
            text,
            error_code=info.code,
            headers=headers,
            model=model,
            api_key=self._api_key,
        )

    def _status_error(self, resp: aiohttp.ClientResponse, raw: bytes, model: str) -> ProviderError:
        try:
            info = error_from_body(json.loads(raw))
        except ValueError:
            info = BodyError(None, None, raw[:200].decode("utf-8", "replace").strip() or None)
        text = (
            f"HTTP {resp.status} from {self._host}: {info.message or resp.reason or 'no message'}"
        )
        return error_for_status(
            resp.status,
            text,
            headers=resp.headers,
            error_type=info.type,
            error_code=info.code,
            model=model,
            api_key=self._api_key,
        )

    def _transport_error(self, exc: BaseException, model: str) -> ProviderError:
        detail = redact(f"{type(exc).__name__}: {exc}".rstrip(": "), self._api_key)
        if isinstance(exc, TimeoutError):
            return APITimeoutError(f"no answer from {self._host} in time ({detail})", model=model)
        return APIConnectionError(f"connection to {self._host} failed: {detail}", model=model)


async def _drain(resp: aiohttp.ClientResponse) -> None:
    """Read the rest of a finished stream's body, so its connection can be reused.

    Normally already received with ``[DONE]``; a server that holds the body open
    gets :data:`DRAIN_SECONDS`, then the connection is dropped (the answer is complete
    either way, so errors here do not matter).
    """
    with anyio.move_on_after(DRAIN_SECONDS):
        try:
            await resp.content.read()
        except (aiohttp.ClientError, OSError):
            pass


def _cause(exc: BaseException) -> BaseException | None:
    # aiohttp's ClientResponseError keeps the request headers (the Authorization
    # key among them) and shows them in its repr: do not chain it.
    return None if isinstance(exc, aiohttp.ClientResponseError) else exc


def _request_id(resp: aiohttp.ClientResponse) -> str | None:
    headers = resp.headers
    return headers.get("x-request-id") or headers.get("request-id")


def _usage(data: Any) -> Usage:
    if not data:
        return Usage()
    return Usage(int(data.get("prompt_tokens") or 0), int(data.get("completion_tokens") or 0))
