"""The connect timeout on every provider path: a host (or proxy) that never answers a
connect is :class:`UnreachableError` after ``_net.CONNECT_TIMEOUT``, not a timeout after
the model's whole ``timeout``. The hanging address is a loopback port whose accept queue
is full (see ``test_lean_http_connect.blackhole``)."""

from __future__ import annotations

import anyio
import pytest
from scripted_server import KINDS, build, call
from test_lean_http_connect import blackhole, linux_only

from agentic_synth._exceptions import APITimeoutError, ConfigurationError, UnreachableError
from agentic_synth._spec import ResponseLimits
from agentic_synth.providers import _net
from agentic_synth.providers._aiohttp import AiohttpOrigin
from agentic_synth.providers._net import CONNECT_TIMEOUT, connect_timeout_option

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.lower(), raising=False)


@pytest.fixture
def short_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every transport built from now on gives a connect 0.3 s."""
    monkeypatch.setattr(_net, "CONNECT_TIMEOUT", 0.3)


@linux_only
@pytest.mark.usefixtures("short_connect")
@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize("kind", KINDS)
async def test_a_blackholed_host_is_unreachable_after_the_connect_timeout(
    kind: str, streamed: bool
) -> None:
    """The call's timeout (5 s here; Anthropic's SDK passes it down as its own connect
    timeout) is not what ends the attempt: the connect timeout is, naming host and port."""
    with blackhole() as dead:
        p = build(kind, f"http://127.0.0.1:{dead}", timeout=5.0)
        try:
            with anyio.fail_after(20), pytest.raises(UnreachableError) as info:
                await call(p, streamed=streamed)
        finally:
            await p.aclose()
    assert info.value.host == "127.0.0.1"
    assert info.value.message.startswith(
        f"cannot connect to 127.0.0.1:{dead}: did not answer in 0.3 s; "
    ), info.value.message
    assert "firewall" in info.value.message


@linux_only
@pytest.mark.usefixtures("short_connect")
@pytest.mark.parametrize("kind", ["openai-auto", "anthropic"])
async def test_a_blackholed_proxy_is_named_as_the_proxy(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with blackhole() as dead:
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{dead}")
        p = build(kind, "https://api.example.test", timeout=5.0)
        try:
            with anyio.fail_after(20), pytest.raises(UnreachableError) as info:
                await call(p, streamed=False)
        finally:
            await p.aclose()
    assert info.value.host == "127.0.0.1"
    assert info.value.message.startswith(
        f"cannot connect to proxy 127.0.0.1 (HTTPS_PROXY=http://127.0.0.1:{dead}): "
        "no connection through it in 0.3 s (no answer); "
    ), info.value.message


@linux_only
@pytest.mark.parametrize("kind", KINDS)
async def test_a_deadline_before_the_connect_timeout_stays_a_timeout(kind: str) -> None:
    """With less time left than the connect timeout nothing says the host would not have
    answered: the call timed out, as before."""
    with blackhole() as dead:
        p = build(kind, f"http://127.0.0.1:{dead}", timeout=0.3)
        try:
            with anyio.fail_after(20), pytest.raises(APITimeoutError) as info:
                await call(p, streamed=False)
        finally:
            await p.aclose()
    assert not isinstance(info.value, UnreachableError)


@linux_only
@pytest.mark.parametrize(("own", "per_call", "waited"), [(0.3, 30.0, "0.3"), (30.0, 0.2, "0.2")])
async def test_the_shorter_of_the_origins_and_the_calls_connect_timeout_wins(
    own: float, per_call: float, waited: str
) -> None:
    """The Anthropic SDK passes its own connect timeout (the model's ``timeout``) per
    call; it can shorten the origin's, never lengthen it."""
    origin = AiohttpOrigin(
        max_connections=1,
        ssl_context=None,
        limits=ResponseLimits(),
        proxy=None,
        connect_timeout=own,
    )
    with blackhole() as dead:
        try:
            with anyio.fail_after(20), pytest.raises(_net.TransportError) as info:
                await origin.request(
                    "POST",
                    f"http://127.0.0.1:{dead}/",
                    {},
                    b"{}",
                    deadline=None,
                    connect_timeout=per_call,
                )
        finally:
            await origin.aclose()
    assert (info.value.reason, info.value.kind) == ("connect", "timeout")
    assert info.value.detail == f"did not answer in {waited} s"
    assert not origin.slots.locked()


def test_the_origin_reads_the_shared_constant_when_built(monkeypatch: pytest.MonkeyPatch) -> None:
    def origin(**kw: float) -> AiohttpOrigin:
        return AiohttpOrigin(
            max_connections=1, ssl_context=None, limits=ResponseLimits(), proxy=None, **kw
        )

    assert CONNECT_TIMEOUT == 30.0
    assert origin().connect_timeout == 30.0
    monkeypatch.setattr(_net, "CONNECT_TIMEOUT", 2.5)
    assert origin().connect_timeout == 2.5
    assert origin(connect_timeout=7).connect_timeout == 7
    with pytest.raises(ValueError, match="connect_timeout"):
        origin(connect_timeout=-1)


def test_connect_timeout_option() -> None:
    assert connect_timeout_option({}, "m") == CONNECT_TIMEOUT
    assert connect_timeout_option({"connect_timeout": None}, "m") == CONNECT_TIMEOUT
    assert connect_timeout_option({"connect_timeout": 5}, "m") == 5.0
    assert connect_timeout_option({"connect_timeout": 0.5}, "m") == 0.5
    for bad in (0, -1, float("inf"), float("nan"), True, "10"):
        with pytest.raises(ConfigurationError, match=r"options\['connect_timeout'\] for m"):
            connect_timeout_option({"connect_timeout": bad}, "m")


@linux_only
@pytest.mark.parametrize("kind", KINDS)
async def test_the_connect_timeout_is_set_per_model(kind: str) -> None:
    with blackhole() as dead:
        p = build(kind, f"http://127.0.0.1:{dead}", timeout=5.0, options={"connect_timeout": 0.3})
        try:
            with anyio.fail_after(20), pytest.raises(UnreachableError) as info:
                await call(p, streamed=False)
        finally:
            await p.aclose()
    assert "did not answer in 0.3 s" in info.value.message


@pytest.mark.parametrize("kind", KINDS)
def test_a_bad_connect_timeout_option_is_refused_when_built(kind: str) -> None:
    with pytest.raises(ConfigurationError, match=r"options\['connect_timeout'\]"):
        build(kind, "http://127.0.0.1:1", options={"connect_timeout": 0})
