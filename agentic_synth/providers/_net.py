"""Connection concerns shared by the HTTP providers, settled once when a provider is built.

Proxies from the environment, header values checked before they can split a
request, the warning for a key sent in clear, and one mapping from transport
failures (lean client, aiohttp, the Anthropic SDK's transport) to the
:mod:`agentic_synth._exceptions` classes with one clear message each.
Nothing here runs per request except on the failure path.
"""

from __future__ import annotations

import errno
import ipaddress
import math
import re
import socket
import ssl
import urllib.request
from collections.abc import Iterable, Mapping
from typing import Any, Literal, NamedTuple

import yarl

from .._exceptions import (
    APIConnectionError,
    APITimeoutError,
    ConfigurationError,
    PoolTimeoutError,
    ProviderError,
    ResponseTooLargeError,
    UnreachableError,
    redact,
)
from .._log import get_logger
from ..streaming import SSELimitError
from ._lean_http import LeanHTTPError

__all__ = [
    "CONNECT_TIMEOUT",
    "Proxy",
    "TransportError",
    "check_headers",
    "connect_timeout_option",
    "env_proxy",
    "header_option",
    "is_loopback",
    "map_transport_error",
    "secrets_in",
    "warn_plain_http",
    "warn_proxy_ignored",
]

_log = get_logger(__name__)

#: Seconds every transport gives opening a connection (DNS, TCP, proxy, TLS) when the
#: call's deadline is further away. Without it a host that drops our packets holds
#: each attempt for the model's whole ``timeout`` (600 s by default) and then reads as
#: a slow answer; with it, it reads as :class:`UnreachableError` after this long.
CONNECT_TIMEOUT = 30.0

Reason = Literal[
    "connect",
    "reset",
    "malformed",
    "truncated",
    "timeout",
    "idle_timeout",
    "pool_timeout",
    "too_large",
    "closed",
]


class TransportError(Exception):
    """A failure of the aiohttp-based transports, in the lean client's terms.

    ``reason`` says what failed (as :class:`LeanHTTPError` does), ``kind`` refines
    a ``"connect"`` failure (``"proxy"`` when the proxy, not the origin, failed).
    The original exception is the ``__cause__``.
    """

    def __init__(self, reason: Reason, detail: str, *, kind: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: Reason = reason
        self.detail = detail
        self.kind = kind


# ----------------------------------------------------------------- hosts and proxies

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """``localhost``, ``*.localhost``, 127.0.0.0/8 and ``::1``: never proxied, never sniffed."""
    name = host.strip("[]").rstrip(".").lower()
    if name in _LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class Proxy(NamedTuple):
    """An HTTP(S) proxy to reach an origin through; ``auth`` from the URL's user info."""

    url: str
    auth: tuple[str, str] | None
    #: Where it came from and where it points, credentials left out (for messages).
    shown: str


_SOCKS = ("socks", "socks4", "socks4a", "socks5", "socks5h")


def env_proxy(url: yarl.URL) -> Proxy | None:
    """The proxy ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``ALL_PROXY`` ask for to reach ``url``.

    The scheme's own variable wins over ``ALL_PROXY``; ``NO_PROXY`` and loopback
    hosts go direct. Only ``http://`` and ``https://`` proxies are supported: a
    SOCKS one is a :class:`ConfigurationError` now rather than a silent direct
    connection later.
    """
    host = url.host or ""
    if is_loopback(host):
        return None
    proxies = urllib.request.getproxies_environment()
    port = url.explicit_port
    target = host if port is None else f"{host}:{port}"
    # (proxy_bypass_environment is public in CPython but missing from typeshed.)
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    if proxies.get("no") and bypass(target, proxies):
        return None
    var = f"{url.scheme.upper()}_PROXY"
    raw = proxies.get(url.scheme)
    if not raw:
        var, raw = "ALL_PROXY", proxies.get("all")
    if not raw:
        return None
    raw = raw.strip()
    parsed = yarl.URL(raw if "://" in raw else f"http://{raw}")
    bare = parsed.with_user(None)
    shown = f"{var}={bare}"
    if parsed.scheme.lower() in _SOCKS:
        raise ConfigurationError(
            f"{shown} asks for a SOCKS proxy for {host}; SOCKS is not supported: set "
            f"{var} to an HTTP proxy (http://host:port), or add {host} to NO_PROXY"
        )
    if parsed.scheme.lower() not in ("http", "https") or not parsed.host:
        raise ConfigurationError(
            f"{shown} is not an http:// or https:// proxy URL (needed to reach {host})"
        )
    auth = None
    if parsed.user is not None:
        auth = (parsed.user, parsed.password or "")
    return Proxy(str(bare), auth, shown)


# ----------------------------------------------------------------- headers and secrets

# RFC 9110 token characters: what a header name may be made of.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Headers the transports write themselves; a second copy would corrupt the request.
_RESERVED = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_SECRET_NAME = re.compile(r"auth|key|token|secret|cookie|signature|password", re.IGNORECASE)


def check_headers(headers: Mapping[str, str], where: str) -> None:
    """Refuse, when a provider is built, a header that would break or split a request.

    A value with CR, LF or NUL could smuggle a second header or request, and
    one outside latin-1 cannot be written at all; the error names the header,
    never its value (it may be a key).
    """
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise ConfigurationError(f"{name!r} is not a valid HTTP header name ({where})")
        if not isinstance(value, str):
            raise ConfigurationError(
                f"the value of header {name} must be a string, got {type(value).__name__} ({where})"
            )
        if "\r" in value or "\n" in value or "\x00" in value:
            raise ConfigurationError(
                f"the value of header {name} contains a line break or NUL character ({where}); "
                "check where it comes from (the value is not shown)"
            )
        if not all(ord(c) < 256 for c in value):
            raise ConfigurationError(
                f"the value of header {name} has characters that cannot be sent in an HTTP "
                f"header ({where}; the value is not shown)"
            )


def header_option(options: Mapping[str, Any], where: str) -> dict[str, str]:
    """``options["headers"]``: extra headers sent with every request, checked now."""
    raw = options.get("headers")
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigurationError(
            f"options['headers'] for {where} must be a mapping of header names to values"
        )
    headers = dict(raw)
    check_headers(headers, f"options['headers'] for {where}")
    for name in headers:
        if name.lower() in _RESERVED:
            raise ConfigurationError(
                f"options['headers'] for {where} may not set {name}: the transport writes it"
            )
    return headers


def connect_timeout_option(options: Mapping[str, Any], where: str) -> float:
    """``options["connect_timeout"]``: seconds to open a connection, checked now.

    Default :data:`CONNECT_TIMEOUT`; for the transports' ``connect_timeout``.
    """
    raw = options.get("connect_timeout")
    if raw is None:
        return CONNECT_TIMEOUT
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 < raw < math.inf:
        raise ConfigurationError(
            f"options['connect_timeout'] for {where} must be a number of seconds > 0, got {raw!r}"
        )
    return float(raw)


def secrets_in(headers: Mapping[str, str]) -> tuple[str, ...]:
    """Values of headers that look like credentials, to be masked like the key."""
    found: list[str] = []
    for name, value in headers.items():
        if _SECRET_NAME.search(name) and value.strip():
            found.append(value)
            scheme, _, token = value.partition(" ")
            if token.strip() and scheme.lower() in ("bearer", "basic", "token"):
                found.append(token.strip())
    return tuple(found)


def warn_plain_http(provider: str, url: yarl.URL, api_key: str | None) -> None:
    """Log once, when the provider is built, that its key would travel unencrypted."""
    if api_key and url.scheme == "http" and not is_loopback(url.host or ""):
        _log.warning(
            "API key sent over plain http:// to a non-loopback host; anyone on the path can "
            "read it: use https://",
            provider=provider,
            host=url.host,
        )


def warn_proxy_ignored(provider: str, url: yarl.URL, proxy: Proxy) -> None:
    """Log once, when the provider is built, that an explicit proxy-less transport wins."""
    _log.warning(
        "the environment asks for a proxy but transport='lean' has none: connecting "
        "directly; use transport='aiohttp' (or no transport option) to go through it",
        provider=provider,
        host=url.host,
        proxy=proxy.shown,
    )


# ----------------------------------------------------------------- failures


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _chain(exc: BaseException | None) -> Iterable[BaseException]:
    """What aiohttp's connector errors wrap, ``exc``, then its causes."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen and len(seen) < 16:
        seen.add(id(exc))
        # The wrapped error first: it carries the details (errno, verify_message).
        for name in ("certificate_error", "os_error"):
            inner = getattr(exc, name, None)
            if isinstance(inner, BaseException) and id(inner) not in seen:
                seen.add(id(inner))
                yield inner
        yield exc
        exc = exc.__cause__ or exc.__context__


#: What a connect failure's ``kind`` means, and what to check.
_CAUSES = {
    "dns": ("name not resolved", "check base_url or the network"),
    "refused": ("connection refused", "check base_url (host and port) or that the server runs"),
    "unreachable": ("network unreachable", "check base_url or the network"),
}


def _connect_cause(exc: BaseException) -> tuple[str, str, str]:
    """``(kind, cause, hint)`` of a failed connection, from the exceptions behind it."""
    for item in _chain(exc):
        name = type(item).__name__
        if name == "ClientConnectorDNSError" or isinstance(item, socket.gaierror):
            return "dns", *_CAUSES["dns"]
        if isinstance(item, ssl.SSLCertVerificationError):
            why = (
                getattr(item, "verify_message", None)
                or getattr(item, "reason", None)
                or "verification failed"
            )
            return (
                "tls",
                f"TLS certificate not trusted ({why})",
                "for a private CA pass ModelSpec(verify='/path/to/ca.pem')",
            )
        if isinstance(item, ssl.SSLError):
            return (
                "tls",
                f"TLS handshake failed ({getattr(item, 'reason', None) or item})",
                "check that the server speaks https:// at base_url",
            )
        if isinstance(item, ConnectionRefusedError):
            return "refused", *_CAUSES["refused"]
        if isinstance(item, OSError):
            code = item.errno
            if code == errno.ECONNREFUSED:
                return "refused", *_CAUSES["refused"]
            if code in (errno.ENETUNREACH, errno.EHOSTUNREACH):
                cause = "network unreachable" if code == errno.ENETUNREACH else "host unreachable"
                return "unreachable", cause, _CAUSES["unreachable"][1]
            text = str(item)
            # Several addresses tried (asyncio's "Multiple exceptions: ..."): all refused?
            if text.startswith("Multiple exceptions") and f"[Errno {errno.ECONNREFUSED}]" in text:
                return "refused", *_CAUSES["refused"]
    return "other", "connection failed", "check base_url or the network"


def unreachable(
    exc: BaseException,
    *,
    host: str,
    port: int,
    model: str | None,
    proxy: Proxy | None = None,
    secrets: tuple[str | None, ...] = (),
) -> UnreachableError:
    """One message naming where, why and what to check, for a connection never made."""
    kind = getattr(exc, "kind", None)
    detail = getattr(exc, "detail", "")
    found, cause, hint = _connect_cause(exc)
    if kind in _CAUSES and found != kind:
        cause, hint = _CAUSES[kind]
    if kind == "timeout":
        # No answer at all: packets dropped on the way, or a host that is down. (The
        # lean client's detail starts with the origin, named below anyway.)
        cause = detail.removeprefix(f"{host_port(host, port)}: ") or "no answer in time"
        hint = "check base_url, the network, or a firewall dropping the packets"
    if kind == "proxy" and proxy is not None:
        target = f"proxy {yarl.URL(proxy.url).host} ({proxy.shown})"
        if found == "other" and detail:
            cause = detail
        hint = "check the proxy setting or NO_PROXY"
        where = yarl.URL(proxy.url).host or host
    else:
        target = host_port(host, port)
        where = host
    text = redact(f"cannot connect to {target}: {cause}; {hint}", *secrets)
    return UnreachableError(text, host=where, model=model)


def map_transport_error(
    exc: BaseException,
    *,
    host: str,
    port: int,
    model: str | None,
    secrets: tuple[str | None, ...] = (),
    proxy: Proxy | None = None,
    request_id: str | None = None,
) -> ProviderError:
    """The :class:`ProviderError` for a transport failure of any of the transports."""
    reason = exc.reason if isinstance(exc, LeanHTTPError | TransportError) else None
    detail = redact(f"{type(exc).__name__}: {exc}".rstrip(": "), *secrets)
    where = host_port(host, port)
    if reason == "connect":
        return unreachable(exc, host=host, port=port, model=model, proxy=proxy, secrets=secrets)
    if reason == "pool_timeout":
        return PoolTimeoutError(
            f"no free connection to {where} in time: all max_connections are busy "
            f"(our own backlog, not the server's fault) ({detail})",
            model=model,
        )
    if reason == "too_large" or isinstance(exc, SSELimitError):
        return ResponseTooLargeError(
            f"response from {where} over the configured ResponseLimits ({detail})",
            request_id=request_id,
            model=model,
        )
    if reason == "idle_timeout":
        return APITimeoutError(
            f"{where} went silent mid-answer for longer than ResponseLimits.read_idle_timeout "
            f"({detail})",
            request_id=request_id,
            model=model,
        )
    if reason == "timeout" or isinstance(exc, TimeoutError):
        return APITimeoutError(
            f"no answer from {where} in time ({detail})", request_id=request_id, model=model
        )
    return APIConnectionError(
        f"connection to {where} failed: {detail}", request_id=request_id, model=model
    )
