"""Anthropic Messages API through the official SDK (our aiohttp transport, SDK retries off).

The router owns retries, so the SDK's are disabled and every SDK exception is
mapped onto our tree (the SDK's stays as ``__cause__``). The SDK talks HTTP
through :class:`~._sdk_transport.SDKTransport`, which gives it the model's TLS
settings and response limits, the call's deadline over the whole exchange, the
environment's HTTP(S) proxies and no redirects (see that module for why not
``DefaultAioHttpClient``). Non-streaming answers
are read through ``with_raw_response`` (for the rate-limit headers) and decoded
with ``json.loads`` instead of the SDK's models: we need four fields, not a
pydantic tree. Streams iterate the raw SSE events of ``messages.create(stream=True)``.

JSON Schema: by default ``Request.json_schema`` becomes a system instruction
asking for JSON matching the schema (see :func:`schema_instruction`), which any
model follows but nothing enforces: validate the output if it matters. With
``ModelSpec(options={"json_schema_mode": "native"})`` the schema goes in
``output_config.format`` instead (the API's structured outputs, enforced, but
only on models that support them: others answer 400).

Prompt caching is automatic (:mod:`._prompt_cache`): a long system prompt, and
leading turns repeated across requests, are marked with ``cache_control``
(5-minute TTL, or 1-hour for prefixes used less often, with the
``extended-cache-ttl`` beta header), and the first request of each prefix goes
alone until its answer starts (sent as a stream, so that is at its first event),
the others after it, so they read the entry it wrote. ``Usage`` reports the
writes and reads. ``ModelSpec(options={"prompt_cache": False})`` turns it off,
``"5m"`` / ``"1h"`` force a TTL, ``"prompt_cache_min_tokens"`` overrides the
model's minimum. It steps aside when ``Request.extra`` sets ``system``,
``messages`` or ``cache_control`` itself.
"""

from __future__ import annotations

import inspect
import json
import os
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

import anthropic
import anyio
import httpx2
import yarl

from .._exceptions import (
    APIConnectionError,
    APITimeoutError,
    ConfigurationError,
    ProviderError,
    redact,
)
from .._spec import ModelSpec, ResponseLimits
from .._types import ProviderResponse, ProviderStreamEnd, Request, TextDelta, Usage
from ._aiohttp import AiohttpOrigin
from ._base import ProviderStreamEvent
from ._http_errors import error_for_status, error_for_type, rate_limit_headers, redirect_message
from ._net import (
    check_headers,
    connect_timeout_option,
    env_proxy,
    header_option,
    map_transport_error,
    secrets_in,
    warn_plain_http,
)
from ._prompt_cache import (
    EXTENDED_TTL_BETA,
    Plan,
    PlanSalt,
    PromptCache,
    PromptCacheConfig,
    Ticket,
    cache_control,
    gated_stream,
    prompt_cache_config,
)
from ._sdk_transport import DEADLINE, SDKTransport, find_transport_error

if TYPE_CHECKING:
    from ._anthropic_batch import AnthropicBatchBackend

__all__ = ["AnthropicProvider", "create", "schema_instruction", "validate"]

_SCHEMA_MODES = ("instruction", "native")
DEFAULT_BASE_URL = "https://api.anthropic.com"
#: Seconds a finished stream may take to end its HTTP body before the connection is dropped.
DRAIN_SECONDS = 0.5
#: Seconds closing a stream may take in a ``finally`` (shielded from cancellation) before
#: it is abandoned: cleanup must not hold a cancelled task for long.
CLOSE_SECONDS = 1.0
#: ``Request.extra`` keys that lay out the prompt themselves: no automatic caching.
_OWN_LAYOUT = frozenset({"system", "messages", "cache_control"})
#: ``Request.extra`` keys the API's cache key covers besides the prompt.
_CACHE_KEYED = ("tools", "tool_choice", "thinking", "output_config")
_USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "cache_creation",  # the 5-minute / 1-hour split of the writes
)

#: Body fields ``AsyncMessages.create`` takes as keyword arguments in the installed SDK.
_SDK_PARAMS = frozenset(
    inspect.signature(anthropic.resources.messages.AsyncMessages.create).parameters
) - {
    "self",
    "extra_headers",
    "extra_query",
    "extra_body",
    "timeout",
    "stream",
}


def validate(spec: ModelSpec) -> str:
    """Check the spec's options; return the JSON Schema mode it asks for."""
    mode = spec.options.get("json_schema_mode", "instruction")
    if mode not in _SCHEMA_MODES:
        raise ConfigurationError(
            f"options['json_schema_mode'] for {spec.name} must be one of "
            f"{', '.join(_SCHEMA_MODES)}, got {mode!r}"
        )
    header_option(spec.options, spec.name)
    prompt_cache_config(spec.options, spec.name)
    connect_timeout_option(spec.options, spec.name)
    return str(mode)


def create(spec: ModelSpec, *, max_connections: int) -> AnthropicProvider:
    """Build the provider for a resolved ``anthropic:`` spec."""
    mode = validate(spec)
    if not spec.api_key:
        raise ConfigurationError(f"no API key for {spec.name}: set ANTHROPIC_API_KEY")
    base_url = _base_url(spec.base_url)
    https = yarl.URL(base_url).scheme == "https"
    return AnthropicProvider(
        api_key=spec.api_key,
        base_url=base_url,
        timeout=spec.timeout,
        max_connections=max_connections,
        json_schema_mode=mode,
        ssl_context=spec.ssl_context() if https else None,
        limits=spec.response_limits,
        headers=header_option(spec.options, spec.name),
        prompt_cache=prompt_cache_config(spec.options, spec.name),
        connect_timeout=connect_timeout_option(spec.options, spec.name),
    )


def _base_url(base_url: str | None) -> str:
    """The base URL the SDK would pick (argument, ``ANTHROPIC_BASE_URL``, the API's)."""
    url = (base_url or os.environ.get("ANTHROPIC_BASE_URL") or DEFAULT_BASE_URL).strip()
    parsed = yarl.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigurationError(
            f"base_url must be an http(s) URL such as {DEFAULT_BASE_URL}, got {url!r}"
        )
    return url


def schema_instruction(schema: Mapping[str, Any]) -> str:
    """The system-prompt text that stands in for a native JSON Schema mode."""
    return (
        "Respond with a single JSON value that conforms to the following JSON Schema. "
        "Output only the JSON: no prose, no explanations, no Markdown code fences.\n"
        f"JSON Schema:\n{json.dumps(schema, ensure_ascii=False)}"
    )


def _usage(data: Any) -> Usage:
    """Input counts cache writes and reads too, so it is the whole prompt, as OpenAI's
    is (the API's ``input_tokens`` is the uncached rest); the two are kept apart too.

    ``data`` is the JSON ``usage`` object or the SDK's model of it (in streams).
    """
    if not data:
        return Usage()
    if not isinstance(data, dict):
        data = data.__dict__
    written = int(data.get("cache_creation_input_tokens") or 0)
    read = int(data.get("cache_read_input_tokens") or 0)
    return Usage(
        int(data.get("input_tokens") or 0) + written + read,
        int(data.get("output_tokens") or 0),
        written,
        read,
        _written_1h(data.get("cache_creation")),
    )


def _written_1h(breakdown: Any) -> int:
    """``cache_creation.ephemeral_1h_input_tokens`` (a dict, or the SDK's model)."""
    if not breakdown:
        return 0
    if not isinstance(breakdown, dict):
        breakdown = getattr(breakdown, "__dict__", {})
    return int(breakdown.get("ephemeral_1h_input_tokens") or 0)


def _raw_usage(data: Any) -> dict[str, Any]:
    """The usage fields of a stream event's usage (an SDK model), ``None`` when absent."""
    return {name: getattr(data, name, None) for name in _USAGE_FIELDS}


class AnthropicProvider:
    """``anthropic:`` models through one ``AsyncAnthropic`` client (one connection pool)."""

    name = "anthropic"

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None,
        timeout: float | None,
        max_connections: int,
        json_schema_mode: str = "instruction",
        ssl_context: ssl.SSLContext | None = None,
        limits: ResponseLimits | None = None,
        headers: Mapping[str, str] | None = None,
        prompt_cache: PromptCacheConfig | None = None,
        connect_timeout: float | None = None,
    ) -> None:
        if max_connections < 1:
            raise ConfigurationError(f"max_connections must be >= 1, got {max_connections!r}")
        url = yarl.URL(_base_url(base_url))
        extra = dict(headers or {})
        cache_config = prompt_cache or PromptCacheConfig()
        self._prompt_cache = PromptCache(cache_config) if cache_config.enabled else None
        #: A beta header of the caller's own, kept when a 1-hour breakpoint adds ours.
        self._beta = next((v for k, v in extra.items() if k.lower() == "anthropic-beta"), None)
        self._salt = PlanSalt(_OWN_LAYOUT, _CACHE_KEYED)
        # The SDK sends the key as a header: refuse one that would split it.
        check_headers({"x-api-key": api_key, **extra}, "anthropic provider")
        self._native_schema = json_schema_mode == "native"
        self._api_key = api_key
        self._secrets: tuple[str | None, ...] = (api_key, *secrets_in(extra))
        self._timeout = timeout
        self._max_connections = max_connections
        self._host = url.host or ""
        self._port = url.port or (443 if url.scheme == "https" else 80)
        proxy = env_proxy(url)
        self._proxy = proxy
        self._ssl_context = ssl_context
        self._limits = limits or ResponseLimits()
        self._connect_timeout = connect_timeout
        self._batches: AnthropicBatchBackend | None = None
        self._origin = AiohttpOrigin(
            max_connections=max_connections,
            ssl_context=ssl_context,
            limits=limits or ResponseLimits(),
            proxy=proxy,
            sse_guard=True,
            connect_timeout=connect_timeout,
        )
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=str(url),
            max_retries=0,
            timeout=timeout,
            default_headers=extra or None,
            http_client=httpx2.AsyncClient(
                transport=SDKTransport(self._origin),
                timeout=httpx2.Timeout(timeout),
                # A redirect would take the key to another URL: report it instead.
                follow_redirects=False,
                trust_env=False,
            ),
        )
        # Shown in repr and messages: without any user:password in the URL.
        self._base_url = str(url.with_user(None))
        warn_plain_http("anthropic", url, api_key)

    def __repr__(self) -> str:
        return (
            f"AnthropicProvider(base_url={self._base_url!r}, "
            f"max_connections={self._max_connections})"
        )

    async def aclose(self) -> None:
        batches, self._batches = self._batches, None
        if batches is not None:
            await batches.aclose()
        await self._client.close()

    def batch_backend(self) -> AnthropicBatchBackend:
        """Message Batches for this deployment (one per provider, its own small pool)."""
        from ._anthropic_batch import AnthropicBatchBackend

        backend = self._batches
        if backend is None:
            backend = self._batches = AnthropicBatchBackend(
                self,
                limits=self._limits,
                ssl_context=self._ssl_context,
                proxy=self._proxy,
                connect_timeout=self._connect_timeout,
            )
        return backend

    def _system(self, request: Request) -> str | None:
        """The system prompt sent: the request's, plus the schema instruction if any."""
        system = request.system
        schema = request.json_schema
        if schema is not None and not self._native_schema:
            instruction = schema_instruction(schema)
            system = f"{system}\n\n{instruction}" if system else instruction
        return system

    def _plan(self, model: str, request: Request, system: str | None) -> Plan | None:
        """What to mark for prompt caching (``None``: nothing, the common case)."""
        cache = self._prompt_cache
        if cache is None:
            return None
        # natively enforced, the API compiles the schema into the prompt: another prefix
        salt = self._salt(request.extra, request.json_schema if self._native_schema else None)
        if salt is None:
            return None
        return cache.plan(model, system, request.messages, salt)

    def _params(
        self, model: str, request: Request, system: str | None, plan: Plan | None = None
    ) -> dict[str, Any]:
        """Keyword arguments for ``messages.create``.

        Body fields the installed SDK has no keyword for (``temperature`` and
        ``top_p`` in SDK 2.x, unknown keys of ``Request.extra``) go in ``extra_body``.
        """
        body: dict[str, Any] = {
            "model": model,
            "messages": request.messages,
            "max_tokens": request.max_tokens,
        }
        schema = request.json_schema
        if system:
            body["system"] = system
        if plan is not None:
            self._mark(body, request, plan)
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop_sequences"] = list(request.stop)
        if request.extra:
            body.update(request.extra)
        if schema is not None and self._native_schema:
            # Keep other output_config settings (``effort``) given in ``extra``.
            config = dict(body.get("output_config") or {})
            config.setdefault("format", {"type": "json_schema", "schema": dict(schema)})
            body["output_config"] = config
        extra = {k: body.pop(k) for k in [k for k in body if k not in _SDK_PARAMS]}
        if extra:
            body["extra_body"] = extra
        if request.timeout is not None:
            body["timeout"] = request.timeout
        if plan is not None and plan.one_hour:
            beta = self._beta
            body["extra_headers"] = {
                "anthropic-beta": f"{beta},{EXTENDED_TTL_BETA}" if beta else EXTENDED_TTL_BETA
            }
        return body

    def _mark(self, body: dict[str, Any], request: Request, plan: Plan) -> None:
        """Put ``plan``'s breakpoints on the system prompt and messages of ``body``."""
        messages: list[Any] | None = None
        for point in plan.breakpoints:
            mark = cache_control(point.ttl)
            if point.at < 0:
                body["system"] = [{"type": "text", "text": body["system"], "cache_control": mark}]
                continue
            if messages is None:
                messages = body["messages"] = list(request.messages)
            message = messages[point.at]
            messages[point.at] = {
                "role": message["role"],
                "content": [{"type": "text", "text": message["content"], "cache_control": mark}],
            }

    def _deadline(self, request: Request) -> float | None:
        timeout = self._timeout if request.timeout is None else request.timeout
        return None if timeout is None else time.monotonic() + timeout

    async def _wait(self, ticket: Ticket, request: Request) -> Request:
        """Pass the warm-up gate; the time waited comes off the call's timeout."""
        timeout = self._timeout if request.timeout is None else request.timeout
        waited = await ticket.wait(timeout)
        if waited > 0.0 and timeout is not None:
            return request.with_timeout(max(timeout - waited, 0.001))
        return request

    async def complete(self, model: str, request: Request) -> ProviderResponse:
        system = self._system(request)
        plan = self._plan(model, request, system)
        if plan is None:
            return await self._complete(model, request, system, None, None)
        ticket = plan.ticket()
        try:
            request = await self._wait(ticket, request)
            if ticket.leader:
                # Streamed, so the group waiting on it goes at its first event, not
                # after the whole answer.
                return await self._collect(model, request, system, plan, ticket)
            return await self._complete(model, request, system, plan, ticket)
        finally:
            ticket.close()

    async def _complete(
        self,
        model: str,
        request: Request,
        system: str | None,
        plan: Plan | None,
        ticket: Ticket | None,
    ) -> ProviderResponse:
        params = self._params(model, request, system, plan)
        # The transport bounds the whole exchange, body included, by this deadline.
        token = DEADLINE.set(self._deadline(request))
        try:
            raw = await self._client.messages.with_raw_response.create(**params)
            if ticket is not None:
                ticket.opened()
            body = await raw.read()
        except Exception as exc:
            error, cause = self._map_error(exc, model)
            raise error from cause
        finally:
            DEADLINE.reset(token)
        headers = raw.headers
        request_id = headers.get("request-id")
        try:
            data = json.loads(body)
            text = "".join(
                block["text"] for block in data["content"] if block.get("type") == "text"
            )
            finish = data.get("stop_reason") or "unknown"
            usage = _usage(data.get("usage"))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise APIConnectionError(
                f"malformed response from {self._base_url}: {type(exc).__name__}",
                request_id=request_id,
                model=model,
            ) from exc
        return ProviderResponse(
            text, finish, usage, request_id, rate_limit_headers(headers.items())
        )

    async def _collect(
        self, model: str, request: Request, system: str | None, plan: Plan, ticket: Ticket
    ) -> ProviderResponse:
        """A whole answer, read as a stream."""
        parts: list[str] = []
        end: ProviderStreamEnd | None = None
        async with aclosing(self._stream(model, request, system, plan, ticket)) as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    parts.append(event.text)
                else:
                    end = event
        if end is None:  # pragma: no cover - _stream always ends with one
            raise APIConnectionError(f"stream from {self._base_url} had no end", model=model)
        return ProviderResponse(
            "".join(parts), end.finish_reason, end.usage, end.request_id, end.headers
        )

    def stream(self, model: str, request: Request) -> AsyncIterator[ProviderStreamEvent]:
        system = self._system(request)
        plan = self._plan(model, request, system)
        if plan is None:
            return self._stream(model, request, system, None, None)
        ticket = plan.ticket()
        return gated_stream(
            ticket,
            lambda: self._wait(ticket, request),
            lambda ready: self._stream(model, ready, system, plan, ticket),
        )

    async def _stream(
        self,
        model: str,
        request: Request,
        system: str | None,
        plan: Plan | None,
        ticket: Ticket | None,
    ) -> AsyncGenerator[ProviderStreamEvent, None]:
        params = self._params(model, request, system, plan)
        deadline = self._deadline(request)
        # The transport holds the whole stream to this deadline, silent servers included.
        token = DEADLINE.set(deadline)
        try:
            stream = await self._client.messages.create(**params, stream=True)
        except Exception as exc:
            error, cause = self._map_error(exc, model)
            raise error from cause
        finally:
            DEADLINE.reset(token)
        headers = stream.response.headers
        request_id = headers.get("request-id")
        finish: str | None = None
        usage = Usage()
        raw_usage: dict[str, Any] = {}
        stopped = False
        events = stream.__aiter__()
        try:
            async for event in events:
                kind = event.type
                if kind == "content_block_delta":
                    delta = event.delta
                    if delta.type == "text_delta" and delta.text:
                        yield TextDelta(delta.text)
                elif kind == "message_start":
                    raw_usage = _raw_usage(event.message.usage)
                    usage = _usage(raw_usage)
                    if ticket is not None:
                        ticket.opened()
                elif kind == "message_delta":
                    finish = event.delta.stop_reason or finish
                    # Output tokens here are cumulative; the others only sometimes present.
                    for name, value in _raw_usage(event.usage).items():
                        if value is not None:
                            raw_usage[name] = value
                    usage = _usage(raw_usage)
                elif kind == "message_stop":
                    stopped = True
                    break
                if deadline is not None and time.monotonic() > deadline:
                    raise APITimeoutError(
                        f"stream from {self._base_url} outlived its timeout",
                        request_id=request_id,
                        model=model,
                    )
            if not stopped:
                raise APIConnectionError(
                    f"stream from {self._base_url} ended before message_stop",
                    request_id=request_id,
                    model=model,
                )
            # Read on to the end of the body (normally in the same packet) so the
            # connection goes back to the pool; a server holding it open gets a grace.
            with anyio.move_on_after(DRAIN_SECONDS):
                async for _ in events:
                    pass
        except ProviderError:
            raise
        except Exception as exc:
            if not stopped:
                error, cause = self._map_error(exc, model, request_id)
                raise error from cause
            # The answer was complete; a failure while draining the body changes nothing.
        finally:
            # Closes the HTTP response at once, also on early exit and cancellation;
            # shielded, but bounded: a cancelled task is not held by a stuck close.
            with anyio.move_on_after(CLOSE_SECONDS, shield=True):
                aclose = getattr(events, "aclose", None)
                if aclose is not None:
                    await aclose()
                await stream.close()
        yield ProviderStreamEnd(
            finish or "unknown", usage, request_id, rate_limit_headers(headers.items())
        )

    def _map_error(
        self, exc: BaseException, model: str, request_id: str | None = None
    ) -> tuple[ProviderError, BaseException | None]:
        """Our error for an SDK (or transport) failure, and the exception to chain it to."""
        found = find_transport_error(exc)
        if found is not None:
            # Our transport failed: its error says exactly what, and its cause why.
            error = map_transport_error(
                found,
                host=self._host,
                port=self._port,
                model=model,
                secrets=self._secrets,
                proxy=self._proxy,
                request_id=request_id,
            )
            return error, found.__cause__ or found
        return self._map_sdk_error(exc, model, request_id), exc

    def _map_sdk_error(
        self, exc: BaseException, model: str, request_id: str | None = None
    ) -> ProviderError:
        secrets = self._secrets
        key = self._api_key
        if isinstance(exc, anthropic.APIError):
            # It stays our ``__cause__``: scrub a key a server may have echoed back.
            exc.message = redact(exc.message, *secrets)
            exc.args = tuple(redact(a, *secrets) if isinstance(a, str) else a for a in exc.args)
        if isinstance(exc, anthropic.APIStatusError):
            status = exc.status_code
            detail = exc.api_message or exc.message
            if 300 <= status < 400:
                location = exc.response.headers.get("location")
                return error_for_status(
                    status,
                    redirect_message(status, self._base_url, location, "/v1/messages"),
                    headers=exc.response.headers,
                    model=model,
                    api_key=key,
                    secrets=secrets,
                )
            if status < 400:
                # An ``error`` event inside a 200 stream: only its type says what failed.
                return error_for_type(
                    exc.type,
                    f"{exc.type or 'error'} event in stream from {self._base_url}: {detail}",
                    error_code=exc.error_code,
                    headers=exc.response.headers,
                    model=model,
                    api_key=key,
                    secrets=secrets,
                )
            return error_for_status(
                status,
                f"HTTP {status} from {self._base_url}: {detail}",
                headers=exc.response.headers,
                error_type=exc.type,
                error_code=exc.error_code,
                model=model,
                api_key=key,
                secrets=secrets,
            )
        text = redact(f"{type(exc).__name__}: {exc}", *secrets)
        if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException | TimeoutError):
            return APITimeoutError(
                f"no answer from {self._base_url} in time ({text})",
                request_id=request_id,
                model=model,
            )
        if isinstance(exc, ValueError):  # json.JSONDecodeError from a broken SSE event
            return APIConnectionError(
                f"malformed stream event from {self._base_url}: {text}",
                request_id=request_id,
                model=model,
            )
        return APIConnectionError(
            f"connection to {self._base_url} failed: {text}", request_id=request_id, model=model
        )
