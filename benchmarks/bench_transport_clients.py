"""Client CPU per request of HTTP transports against one loopback server.

Compares raw aiohttp, the ``openai`` provider's ``complete`` (aiohttp), the
``anthropic`` provider's ``complete`` (SDK over httpx2 + aiohttp), httpx with
its default transport and httpx over httpx-aiohttp. The server runs in a
child process (a bare asyncio + httptools server, or ``--server mock`` for the
simulator's mock server) and answers every request after a fixed latency, so
the ideal throughput is ``concurrency / latency`` and the client process's CPU
time (``time.process_time``) is all client work. On a shared machine req/s is
noisy; CPU per request is the steadier figure.

    python benchmarks/bench_transport_clients.py                # 5000 req, 256 conc, 100 ms
    python benchmarks/bench_transport_clients.py --kinds aiohttp,openai -n 20000
    python benchmarks/bench_transport_clients.py --server mock
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

OPENAI_BODY = json.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "bench",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "A short synthetic answer " * 8},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": 40, "total_tokens": 60},
    }
).encode()
ANTHROPIC_BODY = json.dumps(
    {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "bench",
        "content": [{"type": "text", "text": "A short synthetic answer " * 8}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 20, "output_tokens": 40},
    }
).encode()
PROMPT = {"role": "user", "content": "Write one line of synthetic data about topic 17."}


# --------------------------------------------------------------------------- server


def serve(latency: float) -> None:
    """Run the loopback server until stdin closes; print the port first."""
    import httptools

    loop = asyncio.new_event_loop()

    def response(body: bytes) -> bytes:
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nx-request-id: req_bench\r\n"
            "x-ratelimit-remaining-requests: 9999\r\nrequest-id: req_bench\r\n"
            "anthropic-ratelimit-requests-remaining: 9999\r\n\r\n"
        )
        return head.encode() + body

    answers = {
        b"/v1/chat/completions": response(OPENAI_BODY),
        b"/v1/messages": response(ANTHROPIC_BODY),
    }

    class Conn(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: Any = transport
            self.parser = httptools.HttpRequestParser(self)
            self.url = b""

        def on_url(self, url: bytes) -> None:
            self.url = url

        def on_message_complete(self) -> None:
            answer = answers.get(self.url, answers[b"/v1/chat/completions"])
            loop.call_later(latency, self.send, answer)

        def send(self, data: bytes) -> None:
            if not self.transport.is_closing():
                self.transport.write(data)

        def data_received(self, data: bytes) -> None:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError:
                self.transport.close()

    server = loop.run_until_complete(
        loop.create_server(Conn, "127.0.0.1", 0, backlog=4096, reuse_address=True)
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    loop.run_until_complete(loop.connect_read_pipe(asyncio.Protocol, sys.stdin))
    loop.run_forever()


# --------------------------------------------------------------------------- clients

Call = Callable[[], Awaitable[Any]]


@dataclass
class Client:
    call: Call
    close: Callable[[], Awaitable[Any]]


async def raw_aiohttp(base: str, conc: int) -> Client:
    import aiohttp

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc))
    body = json.dumps({"model": "bench", "messages": [PROMPT], "max_tokens": 64}).encode()
    headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench"}
    url = f"{base}/v1/chat/completions"

    async def call() -> Any:
        async with session.post(url, data=body, headers=headers) as resp:
            return json.loads(await resp.read())["choices"][0]["message"]["content"]

    return Client(call, session.close)


async def openai_provider(base: str, conc: int) -> Client:
    from agentic_synth._types import Request
    from agentic_synth.providers.openai import OpenAIProvider

    provider = OpenAIProvider(base_url=base, api_key="sk-bench", timeout=60, max_connections=conc)
    request = Request(messages=[PROMPT], max_tokens=64)  # type: ignore[list-item]
    return Client(lambda: provider.complete("bench", request), provider.aclose)


async def anthropic_provider(base: str, conc: int) -> Client:
    from agentic_synth._types import Request
    from agentic_synth.providers.anthropic import AnthropicProvider

    provider = AnthropicProvider(
        api_key="sk-ant-bench", base_url=base, timeout=60, max_connections=conc
    )
    request = Request(messages=[PROMPT], max_tokens=64)  # type: ignore[list-item]
    return Client(lambda: provider.complete("bench", request), provider.aclose)


async def _httpx(base: str, conc: int, transport: Any) -> Client:
    import httpx

    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    client = httpx.AsyncClient(limits=limits, timeout=60, transport=transport)
    body = json.dumps({"model": "bench", "messages": [PROMPT], "max_tokens": 64}).encode()
    headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench"}
    url = f"{base}/v1/chat/completions"

    async def call() -> Any:
        resp = await client.post(url, content=body, headers=headers)
        return json.loads(resp.content)["choices"][0]["message"]["content"]

    return Client(call, client.aclose)


async def httpx_default(base: str, conc: int) -> Client:
    return await _httpx(base, conc, None)


async def httpx_aiohttp(base: str, conc: int) -> Client:
    import httpx
    from httpx_aiohttp import AiohttpTransport

    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    return await _httpx(base, conc, AiohttpTransport(limits=limits))


KINDS: dict[str, Callable[[str, int], Awaitable[Client]]] = {
    "aiohttp": raw_aiohttp,
    "openai": openai_provider,
    "anthropic": anthropic_provider,
    "httpx-aiohttp": httpx_aiohttp,
    "httpx": httpx_default,
}


async def run_kind(name: str, base: str, n: int, conc: int) -> tuple[float, float]:
    """(requests per second, client CPU microseconds per request) for ``n`` requests."""
    client = await KINDS[name](base, conc)
    try:
        await asyncio.gather(*(client.call() for _ in range(conc)))  # open the pool
        remaining = n

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await client.call()

        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conc)))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    finally:
        await client.close()
    return n / wall, cpu / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--requests", type=int, default=5000)
    parser.add_argument("-c", "--concurrency", type=int, default=256)
    parser.add_argument("--latency", type=float, default=0.1, help="server latency, seconds")
    parser.add_argument(
        "--kinds", default=",".join(KINDS), help="comma-separated, from: " + ",".join(KINDS)
    )
    parser.add_argument(
        "--httpx-requests",
        type=int,
        default=1000,
        help="requests for plain httpx, which is ~30x slower at high concurrency",
    )
    parser.add_argument(
        "--server",
        choices=("minimal", "mock"),
        default="minimal",
        help="minimal: fixed answers from a bare httptools server (default); "
        "mock: agentic_synth.simulator's mock server (generated text, rate-limit headers)",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.latency)
        return
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    for kind in kinds:
        if kind not in KINDS:
            parser.error(f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")
    with _server(args.server, args.latency) as base:
        ideal = args.concurrency / args.latency
        print(
            f"{args.requests} requests, concurrency {args.concurrency}, latency "
            f"{args.latency * 1000:g} ms ({args.server} server): ideal {ideal:.0f} req/s"
        )
        header = ("client", "requests", "req/s", "% ideal", "CPU us/req", "x aiohttp")
        print(f"{header[0]:<15}" + "".join(f"{h:>11}" for h in header[1:]))
        base_cpu = None
        for kind in kinds:
            n = args.httpx_requests if kind == "httpx" else args.requests
            rate, cpu = asyncio.run(run_kind(kind, base, n, args.concurrency))
            if kind == "aiohttp":
                base_cpu = cpu
            ratio = f"{cpu / base_cpu:.2f}" if base_cpu else "-"
            print(
                f"{kind:<15}{n:>11}{rate:>11.0f}{rate / ideal * 100:>10.1f}%{cpu:>11.0f}{ratio:>11}"
            )


@contextlib.contextmanager
def _server(kind: str, latency: float) -> Iterator[str]:
    """Base URL of a loopback server in a child process, for the run's duration."""
    if kind == "mock":
        from agentic_synth.simulator import SimConfig, fixed, spawn_mock_server

        with spawn_mock_server(SimConfig(latency=fixed(latency), output_tokens=40)) as url:
            yield url
        return
    server = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--serve", "--latency", str(latency)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        yield f"http://127.0.0.1:{int(server.stdout.readline())}"
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
