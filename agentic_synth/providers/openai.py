"""OpenAI-compatible Chat Completions (OpenAI, vLLM, llama.cpp, Ollama, LM Studio, OpenRouter).

This provider is on the hot path of million-request jobs, so its HTTP client is
chosen for CPU per request (``benchmarks/bench_transport.py`` measures it). Two
transports, picked with ``ModelSpec(..., options={"transport": ...})``:

- ``"lean"`` (the default): :mod:`._lean_http`, asyncio protocols parsed by
  httptools. At 256 concurrent requests a wave of answers is parsed serially on
  the event loop; this client needs about half of aiohttp's CPU per answer,
  which is what keeps the engine near the ideal throughput. It has no proxy
  support.
- ``"aiohttp"``: :class:`aiohttp.ClientSession`, with the environment's proxy
  (``HTTP(S)_PROXY``, honouring ``NO_PROXY``). Used automatically, when no
  transport is given, if the environment asks for a proxy for the base URL
  (``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``ALL_PROXY``).

Either way one connection pool sized by ``max_connections`` per provider,
created lazily inside the running event loop; request bodies, JSON and SSE
parsing and error mapping are shared.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal, Protocol

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
from ._lean_http import LeanHTTPClient, LeanHTTPError, LeanStream

__all__ = [
    "DEFAULT_BASE_URL",
    "OpenAIProvider",
    "chat_completions_url",
    "create",
    "validate",
]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_USER_AGENT = "agentic-synth/0.1"
Transport = Literal["lean", "aiohttp"]
TRANSPORTS: tuple[Transport, ...] = ("lean", "aiohttp")
#: Transport used when the spec names none and no proxy is asked for.
DEFAULT_TRANSPORT: Transport = "lean"
#: Seconds a finished stream may take to end its HTTP body before the connection is dropped.
DRAIN_SECONDS = 0.5


def validate(spec: ModelSpec) -> None:
    """Fail at configuration time on a base URL or transport that cannot work."""
    chat_completions_url(spec.base_url)
    _transport_option(spec)


def _transport_option(spec: ModelSpec) -> Transport | None:
    value = spec.options.get("transport")
    if value is None:
        return None
    for name in TRANSPORTS:
        if value == name:
            return name
    raise ConfigurationError(
        f"options['transport'] for {spec.name} must be one of "
        f"{', '.join(repr(t) for t in TRANSPORTS)}, got {value!r}"
    )


def create(spec: ModelSpec, *, max_connections: int) -> OpenAIProvider:
    """Build the provider for a resolved ``openai:`` spec."""
    return OpenAIProvider(
        base_url=spec.base_url,
        api_key=spec.api_key,
        timeout=spec.timeout,
        max_connections=max_connections,
        transport=_transport_option(spec),
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


def _env_proxy(url: yarl.URL, *, scheme_only: bool = True) -> str | None:
    """The proxy the environment asks for, resolved once instead of on every request.

    ``scheme_only=False`` also counts ``ALL_PROXY``, which aiohttp does not use
    but which still means "this network needs a proxy".
    """
    host = url.host or ""
    if host in _LOOPBACK or urllib.request.proxy_bypass(host):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(url.scheme) or (None if scheme_only else proxies.get("all"))


class _StreamResponse(Protocol):
    """What :meth:`OpenAIProvider.stream` needs of an answer, whichever transport read it."""

    @property
    def status(self) -> int: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    def at_eof(self) -> bool: ...
    def chunks(self) -> AsyncIterator[bytes]: ...
    async def read(self) -> bytes: ...
    def close(self) -> None: ...


class _AiohttpStream:
    """An aiohttp response seen through :class:`_StreamResponse`."""

    __slots__ = ("_resp",)

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp

    @property
    def status(self) -> int:
        return self._resp.status

    @property
    def reason(self) -> str | None:
        return self._resp.reason

    @property
    def headers(self) -> Mapping[str, str]:
        return self._resp.headers

    def at_eof(self) -> bool:
        return self._resp.content.at_eof()

    def chunks(self) -> AsyncIterator[bytes]:
        return self._resp.content.iter_any()

    async def read(self) -> bytes:
        return await self._resp.read()

    def close(self) -> None:
        # Read to the end: the connection goes back to the pool; otherwise drop it.
        if self._resp.content.at_eof():
            self._resp.release()
        else:
            self._resp.close()


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
        transport: Transport | None = None,
    ) -> None:
        if max_connections < 1:
            raise ConfigurationError(f"max_connections must be >= 1, got {max_connections!r}")
        self._url = chat_completions_url(base_url)
        self._host = self._url.host
        self._api_key = api_key
        self._proxy = _env_proxy(self._url)
        if transport is None:
            wants_proxy = _env_proxy(self._url, scheme_only=False) is not None
            transport = "aiohttp" if wants_proxy else DEFAULT_TRANSPORT
        if transport not in TRANSPORTS:
            raise ConfigurationError(f"transport must be one of {TRANSPORTS}, got {transport!r}")
        self.transport: Transport = transport
        self._target = self._url.raw_path_qs
        self._headers = {"Content-Type": "application/json", "User-Agent": _USER_AGENT}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._total = timeout
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._lean: LeanHTTPClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return (
            f"OpenAIProvider(url={str(self._url)!r}, max_connections={self._max_connections}, "
            f"transport={self.transport!r})"
        )

    def _lean_client(self) -> LeanHTTPClient:
        loop = asyncio.get_running_loop()
        client = self._lean
        if client is None or self._loop is not loop:
            # Connections belong to the loop they were made in; a new loop gets a new pool.
            client = LeanHTTPClient(
                self._url.scheme,
                self._host or "",
                self._url.explicit_port,
                max_connections=self._max_connections,
            )
            self._lean, self._loop = client, loop
        return client

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
        lean, self._lean = self._lean, None
        if lean is not None:
            await lean.aclose()

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

    def _total_for(self, request: Request) -> float | None:
        return self._total if request.timeout is None else request.timeout

    async def complete(self, model: str, request: Request) -> ProviderResponse:
        body = self._body(model, request, stream=False)
        reason: str | None
        all_headers: Mapping[str, str]
        try:
            if self.transport == "lean":
                status, all_headers, raw, reason = await self._lean_client().request(
                    "POST", self._target, self._headers, body, total=self._total_for(request)
                )
            else:
                async with await self._post(body, request) as resp:
                    raw = await resp.read()
                    status, reason, all_headers = resp.status, resp.reason, resp.headers
            if status >= 400:
                raise self._status_error(status, reason, all_headers, raw, model)
            headers = rate_limit_headers(all_headers.items())
            request_id = _request_id(all_headers)
        except ProviderError:
            raise
        except Exception as exc:
            raise self._transport_error(exc, model) from _cause(exc)
        return self._parse_completion(raw, model, request_id, headers)

    async def _open_stream(self, body: bytes, request: Request) -> _StreamResponse:
        if self.transport == "lean":
            stream: LeanStream = await self._lean_client().stream(
                "POST", self._target, self._headers, body, total=self._total_for(request)
            )
            return stream
        return _AiohttpStream(await self._post(body, request))

    async def stream(self, model: str, request: Request) -> AsyncIterator[ProviderStreamEvent]:
        body = self._body(model, request, stream=True)
        try:
            resp = await self._open_stream(body, request)
        except Exception as exc:
            raise self._transport_error(exc, model) from _cause(exc)
        try:
            if resp.status >= 400:
                raw = await resp.read()
                raise self._status_error(resp.status, resp.reason, resp.headers, raw, model)
            headers = rate_limit_headers(resp.headers.items())
            request_id = _request_id(resp.headers)
            content_type = resp.headers.get("content-type", "")
            if content_type.partition(";")[0].strip().lower() == "application/json":
                # Some servers ignore ``stream`` (or answer errors) with a plain JSON body.
                whole = self._parse_completion(await resp.read(), model, request_id, headers)
                if whole.text:
                    yield TextDelta(whole.text)
                end = ProviderStreamEnd(whole.finish_reason, whole.usage, request_id, headers)
            else:
                finish: str | None = None
                usage = Usage()
                decoder = SSEDecoder()
                done = False
                async for chunk in resp.chunks():
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
                if done and not resp.at_eof():
                    await _drain(resp)
                if finish is None and not done:
                    raise APIConnectionError(
                        f"stream from {self._host} ended before the answer was complete",
                        request_id=request_id,
                        model=model,
                    )
                end = ProviderStreamEnd(finish or "unknown", usage, request_id, headers)
        except ProviderError:
            raise
        except Exception as exc:
            raise self._transport_error(exc, model) from _cause(exc)
        finally:
            # A body read to its end hands the connection back to the pool; an
            # early close, cancellation or error drops it at once.
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

    def _status_error(
        self,
        status: int,
        reason: str | None,
        headers: Mapping[str, str],
        raw: bytes,
        model: str,
    ) -> ProviderError:
        """``headers`` must be case-insensitive or have lower-cased names."""
        try:
            info = error_from_body(json.loads(raw))
        except ValueError:
            info = BodyError(None, None, raw[:200].decode("utf-8", "replace").strip() or None)
        text = f"HTTP {status} from {self._host}: {info.message or reason or 'no message'}"
        return error_for_status(
            status,
            text,
            headers=headers,
            error_type=info.type,
            error_code=info.code,
            model=model,
            api_key=self._api_key,
        )

    def _transport_error(self, exc: BaseException, model: str) -> ProviderError:
        detail = redact(f"{type(exc).__name__}: {exc}".rstrip(": "), self._api_key)
        if isinstance(exc, TimeoutError) or (
            isinstance(exc, LeanHTTPError) and exc.reason == "timeout"
        ):
            return APITimeoutError(f"no answer from {self._host} in time ({detail})", model=model)
        return APIConnectionError(f"connection to {self._host} failed: {detail}", model=model)


async def _drain(resp: _StreamResponse) -> None:
    """Read the rest of a finished stream's body, so its connection can be reused.

    Normally already received with ``[DONE]``; a server that holds the body open
    gets :data:`DRAIN_SECONDS`, then the connection is dropped (the answer is complete
    either way, so errors here do not matter).
    """
    with anyio.move_on_after(DRAIN_SECONDS):
        try:
            await resp.read()
        except (aiohttp.ClientError, OSError, LeanHTTPError):
            pass


def _cause(exc: BaseException) -> BaseException | None:
    # aiohttp's ClientResponseError keeps the request headers (the Authorization
    # key among them) and shows them in its repr: do not chain it.
    return None if isinstance(exc, aiohttp.ClientResponseError) else exc


def _request_id(headers: Mapping[str, str]) -> str | None:
    """``headers`` must be case-insensitive or have lower-cased names."""
    return headers.get("x-request-id") or headers.get("request-id")


def _usage(data: Any) -> Usage:
    if not data:
        return Usage()
    return Usage(int(data.get("prompt_tokens") or 0), int(data.get("completion_tokens") or 0))
