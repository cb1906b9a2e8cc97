"""OpenAI-compatible Chat Completions (OpenAI, vLLM, llama.cpp, Ollama, LM Studio, OpenRouter).

This provider is on the hot path of million-request jobs, so its HTTP client is
chosen for CPU per request (``benchmarks/bench_transport.py`` measures it). Two
transports, picked with ``ModelSpec(..., options={"transport": ...})``:

- ``"lean"`` (the default): :mod:`._lean_http`, asyncio protocols parsed by
  httptools. At 256 concurrent requests a wave of answers is parsed serially on
  the event loop; this client needs about half of aiohttp's CPU per answer,
  which is what keeps the engine near the ideal throughput. It has no proxy
  support.
- ``"aiohttp"``: :class:`~._aiohttp.AiohttpOrigin` over :class:`aiohttp.ClientSession`,
  with the environment's proxy (``HTTPS_PROXY`` / ``HTTP_PROXY``, else
  ``ALL_PROXY``; ``NO_PROXY`` and loopback go direct; HTTP(S) proxies only).
  Used automatically, when no transport is given, if the environment asks for
  a proxy for the base URL.

Either way one connection pool sized by ``max_connections`` per provider,
created lazily inside the running event loop, TLS from the model's ``verify``,
the model's :class:`~agentic_synth.ResponseLimits` on headers, bodies and SSE
lines/events, and no redirects (a 3xx is a :class:`~agentic_synth.RedirectError`
saying which base URL to set); request bodies, JSON and SSE parsing and error
mapping are shared.

Request bodies: ``max_completion_tokens`` instead of ``max_tokens`` for the
models that require it (``o1*``, ``o3*``, ``o4*``, ``gpt-5*``; override with
``options={"max_tokens_field": ...}``), and ``strict: true`` for a JSON Schema
only when it fits the strict subset (:mod:`._openai_strict`). Extra headers for
every request: ``options={"headers": {...}}``.

Prompt caching (:mod:`._prompt_cache`): servers cache long prompt prefixes by
themselves; for a prefix of 1,024+ tokens (a system prompt, or leading turns
repeated across requests) the body carries ``prompt_cache_key``, a hash of that
prefix, so OpenAI routes the requests sharing it to the machines holding it, and
the first request of each prefix goes alone until it has answered, the rest after
it, so they find the prefix cached. ``Usage.cache_read_input_tokens`` reports
``prompt_tokens_details.cached_tokens``. ``options={"prompt_cache": False}`` turns
both off (for a server that rejects unknown fields); ``"prompt_cache_min_tokens"``
changes the 1,024.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol

import anyio
import yarl

from .._exceptions import (
    APIConnectionError,
    ConfigurationError,
    ProviderError,
)
from .._spec import ModelSpec, ResponseLimits
from .._types import ProviderResponse, ProviderStreamEnd, Request, TextDelta, Usage
from ..streaming import SSEDecoder
from ._aiohttp import AiohttpOrigin
from ._base import ProviderStreamEvent
from ._http_errors import (
    BodyError,
    error_for_status,
    error_for_type,
    error_from_body,
    rate_limit_headers,
    redirect_message,
)
from ._lean_http import LeanHTTPClient, LeanHTTPError, LeanStream
from ._net import (
    Proxy,
    TransportError,
    check_headers,
    connect_timeout_option,
    env_proxy,
    header_option,
    map_transport_error,
    secrets_in,
    warn_plain_http,
    warn_proxy_ignored,
)
from ._openai_strict import strict_eligible
from ._prompt_cache import (
    OPENAI_MIN_TOKENS,
    Plan,
    PlanSalt,
    PromptCache,
    PromptCacheConfig,
    Ticket,
    gated_stream,
    prompt_cache_config,
)

if TYPE_CHECKING:
    from ._openai_batch import OpenAIBatchBackend

__all__ = [
    "DEFAULT_BASE_URL",
    "OpenAIProvider",
    "chat_completions_url",
    "create",
    "validate",
]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
_USER_AGENT = "agentic-synth/0.1"
_PATH = "/chat/completions"
MaxTokensField = Literal["max_tokens", "max_completion_tokens"]
MAX_TOKENS_FIELDS: tuple[MaxTokensField, ...] = ("max_tokens", "max_completion_tokens")
#: Model name prefixes whose API rejects ``max_tokens`` (reasoning models and their successors).
COMPLETION_TOKENS_MODELS = ("o1", "o3", "o4", "gpt-5")
Transport = Literal["lean", "aiohttp"]
TRANSPORTS: tuple[Transport, ...] = ("lean", "aiohttp")
#: Transport used when the spec names none and no proxy is asked for.
DEFAULT_TRANSPORT: Transport = "lean"
#: Seconds a finished stream may take to end its HTTP body before the connection is dropped.
DRAIN_SECONDS = 0.5
#: ``Request.extra`` keys that settle the prompt or its key themselves: no automatic key.
_OWN_LAYOUT = frozenset({"messages", "prompt_cache_key"})
#: ``Request.extra`` keys that become part of the prompt the server caches.
_CACHE_KEYED = ("tools", "tool_choice", "functions")


def validate(spec: ModelSpec) -> None:
    """Fail at configuration time on a base URL, transport, option or proxy that cannot work."""
    env_proxy(chat_completions_url(spec.base_url))
    _transport_option(spec)
    _max_tokens_option(spec)
    header_option(spec.options, spec.name)
    connect_timeout_option(spec.options, spec.name)
    prompt_cache_config(spec.options, spec.name, ttls=False)


def _max_tokens_option(spec: ModelSpec) -> MaxTokensField | None:
    value = spec.options.get("max_tokens_field")
    if value is None:
        return None
    for name in MAX_TOKENS_FIELDS:
        if value == name:
            return name
    raise ConfigurationError(
        f"options['max_tokens_field'] for {spec.name} must be one of "
        f"{', '.join(repr(f) for f in MAX_TOKENS_FIELDS)}, got {value!r}"
    )


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
    https = chat_completions_url(spec.base_url).scheme == "https"
    return OpenAIProvider(
        base_url=spec.base_url,
        api_key=spec.api_key,
        timeout=spec.timeout,
        max_connections=max_connections,
        transport=_transport_option(spec),
        ssl_context=spec.ssl_context() if https else None,
        limits=spec.response_limits,
        headers=header_option(spec.options, spec.name),
        max_tokens_field=_max_tokens_option(spec),
        prompt_cache=prompt_cache_config(spec.options, spec.name, ttls=False),
        connect_timeout=connect_timeout_option(spec.options, spec.name),
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
    return url.with_path(url.path.rstrip("/") + _PATH)


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


class OpenAIProvider:
    """Chat Completions over one connection pool; errors mapped to ProviderError."""

    name = "openai"

    def __init__(
        self,
        *,
        base_url: str | None,
        api_key: str | None,
        timeout: float | None,
        max_connections: int,
        transport: Transport | None = None,
        ssl_context: ssl.SSLContext | None = None,
        limits: ResponseLimits | None = None,
        headers: Mapping[str, str] | None = None,
        max_tokens_field: MaxTokensField | None = None,
        prompt_cache: PromptCacheConfig | None = None,
        connect_timeout: float | None = None,
    ) -> None:
        if max_connections < 1:
            raise ConfigurationError(f"max_connections must be >= 1, got {max_connections!r}")
        if max_tokens_field is not None and max_tokens_field not in MAX_TOKENS_FIELDS:
            raise ConfigurationError(
                f"max_tokens_field must be one of {MAX_TOKENS_FIELDS}, got {max_tokens_field!r}"
            )
        self._url = chat_completions_url(base_url)
        # Shown in repr and messages: without any user:password in the URL.
        self._shown = str(self._url.with_user(None))
        self._base = self._shown[: -len(_PATH)]
        self._host = self._url.host or ""
        self._port = self._url.port or (443 if self._url.scheme == "https" else 80)
        self._api_key = api_key
        extra = dict(headers or {})
        self._secrets: tuple[str | None, ...] = (api_key, *secrets_in(extra))
        self._proxy: Proxy | None = env_proxy(self._url)
        if transport is None:
            transport = "aiohttp" if self._proxy is not None else DEFAULT_TRANSPORT
        if transport not in TRANSPORTS:
            raise ConfigurationError(f"transport must be one of {TRANSPORTS}, got {transport!r}")
        self.transport: Transport = transport
        if transport == "lean" and self._proxy is not None:
            warn_proxy_ignored("openai", self._url, self._proxy)
        self._target = self._url.raw_path_qs
        self._headers = {"Content-Type": "application/json", "User-Agent": _USER_AGENT, **extra}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        # Checked once here, so no request can carry a header split by CR/LF.
        check_headers(self._headers, "openai provider")
        self._ssl = ssl_context
        self._limits = limits or ResponseLimits()
        self._total = timeout
        self._max_connections = max_connections
        self._max_tokens_field = max_tokens_field
        self._connect_timeout = connect_timeout
        self._fields: dict[str, MaxTokensField] = {}
        self._schema: Mapping[str, Any] | None = None
        self._schema_strict = False
        self._origin: AiohttpOrigin | None = None
        self._batch: OpenAIBatchBackend | None = None
        self._lean: LeanHTTPClient | None = None
        self._pool_waited = 0.0  # pool waits of lean clients since closed
        self._loop: asyncio.AbstractEventLoop | None = None
        cache = prompt_cache or PromptCacheConfig()
        self._prompt_cache: PromptCache | None = None
        if cache.enabled:
            # Entries last 5-10 idle minutes: the gate takes them for 5-minute ones.
            self._prompt_cache = PromptCache(
                PromptCacheConfig(ttl="5m", min_tokens=cache.min_tokens),
                min_tokens=_openai_minimum,
                max_breakpoints=1,
            )
        self._salt = PlanSalt(_OWN_LAYOUT, _CACHE_KEYED)
        warn_plain_http("openai", self._url, api_key)

    def __repr__(self) -> str:
        return (
            f"OpenAIProvider(url={self._shown!r}, max_connections={self._max_connections}, "
            f"transport={self.transport!r})"
        )

    @property
    def pool_wait_seconds(self) -> float:
        """Seconds requests queued for a pooled connection (lean transport; the aiohttp
        path does not tell), read by the engine's monitoring."""
        live = 0.0 if self._lean is None else self._lean.pool_wait_seconds
        return self._pool_waited + live

    def _lean_client(self) -> LeanHTTPClient:
        loop = asyncio.get_running_loop()
        client = self._lean
        if client is None or self._loop is not loop:
            # Connections belong to the loop they were made in; a new loop gets a new pool.
            client = LeanHTTPClient(
                self._url.scheme,
                self._host,
                self._url.explicit_port,
                max_connections=self._max_connections,
                ssl_context=self._ssl,
                limits=self._limits,
                connect_timeout=self._connect_timeout,
            )
            self._lean, self._loop = client, loop
        return client

    def _aiohttp(self) -> AiohttpOrigin:
        origin = self._origin
        if origin is None:
            origin = self._origin = AiohttpOrigin(
                max_connections=self._max_connections,
                ssl_context=self._ssl,
                limits=self._limits,
                proxy=self._proxy,
                connect_timeout=self._connect_timeout,
            )
        return origin

    def batch_backend(self) -> OpenAIBatchBackend:
        """OpenAI Batch for this deployment (one per provider, its own small pool)."""
        from ._openai_batch import OpenAIBatchBackend

        backend = self._batch
        if backend is None:
            backend = self._batch = OpenAIBatchBackend(self)
        return backend

    async def aclose(self) -> None:
        batch, self._batch = self._batch, None
        if batch is not None:
            await batch.aclose()
        origin, self._origin = self._origin, None
        if origin is not None:
            await origin.aclose()
        lean, self._lean = self._lean, None
        if lean is not None:
            self._pool_waited += lean.pool_wait_seconds
            await lean.aclose()

    def _tokens_field(self, model: str) -> MaxTokensField:
        """``max_tokens`` or ``max_completion_tokens`` for ``model`` (decided once per name)."""
        field = self._fields.get(model)
        if field is None:
            field = self._max_tokens_field or (
                "max_completion_tokens"
                if model.lower().startswith(COMPLETION_TOKENS_MODELS)
                else "max_tokens"
            )
            if len(self._fields) < 256:
                self._fields[model] = field
        return field

    def _strict(self, schema: Mapping[str, Any]) -> bool:
        """Strict mode for ``schema``; a job reuses one schema object, so it is checked once."""
        if schema is not self._schema:
            self._schema_strict = strict_eligible(schema)
            self._schema = schema
        return self._schema_strict

    def _plan(self, model: str, request: Request) -> Plan | None:
        """The shared prefix to key (``None``: none, the common case)."""
        cache = self._prompt_cache
        if cache is None:
            return None
        # a response schema is part of the prompt the server sees
        salt = self._salt(request.extra, request.json_schema)
        if salt is None:
            return None
        return cache.plan(model, request.system, request.messages, salt)

    async def _wait(self, ticket: Ticket, request: Request) -> Request:
        """Pass the warm-up gate; the time waited comes off the call's timeout."""
        timeout = self._total_for(request)
        waited = await ticket.wait(timeout)
        if waited > 0.0 and timeout is not None:
            return request.with_timeout(max(timeout - waited, 0.001))
        return request

    def _body(
        self, model: str, request: Request, *, stream: bool, plan: Plan | None = None
    ) -> bytes:
        messages: list[Any] = request.messages
        if request.system is not None:
            messages = [{"role": "system", "content": request.system}, *messages]
        body: dict[str, Any] = {"model": model, "messages": messages}
        extra = request.extra
        if not extra or ("max_completion_tokens" not in extra and "max_tokens" not in extra):
            body[self._tokens_field(model)] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop"] = list(request.stop)
        schema = request.json_schema
        if schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": schema, "strict": self._strict(schema)},
            }
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        if plan is not None:
            body["prompt_cache_key"] = plan.key
        if extra:
            body.update(extra)
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()

    def _total_for(self, request: Request) -> float | None:
        return self._total if request.timeout is None else request.timeout

    def _deadline(self, request: Request) -> float | None:
        total = self._total_for(request)
        return None if total is None else time.monotonic() + total

    async def complete(self, model: str, request: Request) -> ProviderResponse:
        plan = self._plan(model, request)
        if plan is None:
            return await self._complete(model, request, None, None)
        ticket = plan.ticket()
        try:
            request = await self._wait(ticket, request)
            return await self._complete(model, request, plan, ticket)
        finally:
            ticket.close()

    async def _complete(
        self, model: str, request: Request, plan: Plan | None, ticket: Ticket | None
    ) -> ProviderResponse:
        body = self._body(model, request, stream=False, plan=plan)
        reason: str | None
        all_headers: Mapping[str, str]
        try:
            if self.transport == "lean":
                status, all_headers, raw, reason = await self._lean_client().request(
                    "POST", self._target, self._headers, body, total=self._total_for(request)
                )
            else:
                resp = await self._aiohttp().request(
                    "POST", self._url, self._headers, body, deadline=self._deadline(request)
                )
                try:
                    raw = await resp.read()
                finally:
                    resp.close()
                status, reason, all_headers = resp.status, resp.reason, resp.headers
            if status >= 300:
                raise self._status_error(status, reason, all_headers, raw, model)
            if ticket is not None:
                ticket.opened()
            headers = rate_limit_headers(all_headers.items())
            request_id = _request_id(all_headers)
        except ProviderError:
            raise
        except Exception as exc:
            raise self._transport_error(exc, model) from exc
        return self._parse_completion(raw, model, request_id, headers)

    async def _open_stream(self, body: bytes, request: Request) -> _StreamResponse:
        if self.transport == "lean":
            stream: LeanStream = await self._lean_client().stream(
                "POST", self._target, self._headers, body, total=self._total_for(request)
            )
            return stream
        return await self._aiohttp().request(
            "POST", self._url, self._headers, body, deadline=self._deadline(request)
        )

    def stream(self, model: str, request: Request) -> AsyncIterator[ProviderStreamEvent]:
        plan = self._plan(model, request)
        if plan is None:
            return self._stream(model, request, None, None)
        ticket = plan.ticket()
        return gated_stream(
            ticket,
            lambda: self._wait(ticket, request),
            lambda ready: self._stream(model, ready, plan, ticket),
        )

    async def _stream(
        self, model: str, request: Request, plan: Plan | None, ticket: Ticket | None
    ) -> AsyncGenerator[ProviderStreamEvent, None]:
        body = self._body(model, request, stream=True, plan=plan)
        try:
            resp = await self._open_stream(body, request)
        except Exception as exc:
            raise self._transport_error(exc, model) from exc
        try:
            if resp.status >= 300:
                raw = await resp.read()
                raise self._status_error(resp.status, resp.reason, resp.headers, raw, model)
            if ticket is not None:
                ticket.opened()
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
                limits = self._limits
                decoder = SSEDecoder(limits.max_line_bytes, limits.max_event_bytes)
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
            raise self._transport_error(exc, model) from exc
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
                secrets=self._secrets,
            )
        return error_for_type(
            info.type,
            text,
            error_code=info.code,
            headers=headers,
            model=model,
            secrets=self._secrets,
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
        if status < 400:
            # A redirect: never followed (the key would go along), reported with the fix.
            text = redirect_message(status, self._base, headers.get("location"), _PATH)
            return error_for_status(
                status, text, headers=headers, model=model, secrets=self._secrets
            )
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
            secrets=self._secrets,
        )

    def _transport_error(self, exc: BaseException, model: str) -> ProviderError:
        return map_transport_error(
            exc,
            host=self._host,
            port=self._port,
            model=model,
            secrets=self._secrets,
            proxy=self._proxy,
        )


async def _drain(resp: _StreamResponse) -> None:
    """Read the rest of a finished stream's body, so its connection can be reused.

    Normally already received with ``[DONE]``; a server that holds the body open
    gets :data:`DRAIN_SECONDS`, then the connection is dropped (the answer is complete
    either way, so errors here do not matter).
    """
    with anyio.move_on_after(DRAIN_SECONDS):
        try:
            await resp.read()
        except (OSError, LeanHTTPError, TransportError):
            pass


def _request_id(headers: Mapping[str, str]) -> str | None:
    """``headers`` must be case-insensitive or have lower-cased names."""
    return headers.get("x-request-id") or headers.get("request-id")


def _usage(data: Any) -> Usage:
    """``prompt_tokens`` is the whole prompt; ``cached_tokens`` of it were read from
    the server's prompt cache."""
    if not data:
        return Usage()
    details = data.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return Usage(
        int(data.get("prompt_tokens") or 0),
        int(data.get("completion_tokens") or 0),
        0,
        int(cached or 0),
    )


def _openai_minimum(model: str) -> int:
    return OPENAI_MIN_TOKENS
