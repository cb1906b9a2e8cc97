"""Throughput and client CPU per request of candidate HTTP clients, one harness.

Every client does the same thing: POST a small chat.completions JSON body
(encoded per request) to ``/v1/chat/completions`` with ``Authorization: Bearer
k`` and decode the JSON answer; ``n`` requests at ``concurrency`` in flight over
a keep-alive pool of ``concurrency`` connections, on uvloop by default. The
server (the simulator's mock server, or ``--server minimal``, a bare httptools
one) runs in its own process; each measurement runs in a fresh child process,
kinds interleaved over ``--rounds`` rounds, and the table gives the best and
the median. Ideal throughput is ``concurrency / mean latency``. CPU is the
client process's (all threads, ``time.process_time``) and the event-loop
thread's alone (``time.thread_time``): Rust clients do part of their work on
their own threads. Kinds whose package is missing are skipped; ``httptools``
is a hand-written asyncio Protocol client loaded from ``--proto FILE``.

    python benchmarks/bench_transport_clients.py --latency 0.1 --latency uniform:0.05,0.15
    python benchmarks/bench_transport_clients.py --kinds aiohttp,openai,pyreqwest --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from _report import save, table

PATH = "/v1/chat/completions"
PROMPT = {"role": "user", "content": "Write one line of synthetic data about topic 17."}
HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer k"}
READY = "mock server listening on "


def request_body() -> bytes:
    """The request body, encoded anew for every request as a provider would."""
    return json.dumps({"model": "bench", "messages": [PROMPT], "max_tokens": 16}).encode()


def answer_ok(status: int, raw: bytes | str) -> bool:
    """Status 200 and a chat.completion whose first choice has text."""
    return status == 200 and isinstance(json.loads(raw)["choices"][0]["message"]["content"], str)


# --------------------------------------------------------------------------- clients


@dataclass
class Client:
    call: Callable[[], Awaitable[bool]]
    close: Callable[[], Awaitable[Any]]


Factory = Callable[[str, int, argparse.Namespace], Awaitable[Client]]


async def aiohttp_client(base: str, conc: int, _: argparse.Namespace) -> Client:
    import aiohttp

    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=conc), timeout=aiohttp.ClientTimeout(total=60)
    )
    url = base + PATH

    async def call() -> bool:
        async with session.post(url, data=request_body(), headers=HEADERS) as resp:
            return answer_ok(resp.status, await resp.read())

    return Client(call, session.close)


async def openai_provider(base: str, conc: int, _: argparse.Namespace) -> Client:
    from agentic_synth._types import Request
    from agentic_synth.providers.openai import OpenAIProvider

    provider = OpenAIProvider(base_url=base, api_key="k", timeout=60, max_connections=conc)
    request = Request(messages=[PROMPT], max_tokens=16)  # type: ignore[list-item]

    async def call() -> bool:
        return isinstance((await provider.complete("bench", request)).text, str)

    return Client(call, provider.aclose)


async def engine(base: str, conc: int, _: argparse.Namespace) -> Client:
    from agentic_synth import ModelSpec, Synth

    spec = ModelSpec("openai", "bench", base_url=f"{base}/v1", api_key="k")
    synth = await Synth([spec], max_concurrency=conc).__aenter__()

    async def call() -> bool:
        return isinstance((await synth.generate(PROMPT["content"], max_tokens=16)).text, str)

    return Client(call, lambda: synth.__aexit__(None, None, None))


async def anthropic_provider(base: str, conc: int, _: argparse.Namespace) -> Client:
    from agentic_synth._types import Request
    from agentic_synth.providers.anthropic import AnthropicProvider

    provider = AnthropicProvider(api_key="k", base_url=base, timeout=60, max_connections=conc)
    request = Request(messages=[PROMPT], max_tokens=16)  # type: ignore[list-item]

    async def call() -> bool:
        return isinstance((await provider.complete("bench", request)).text, str)

    return Client(call, provider.aclose)


async def _httpx(base: str, conc: int, transport: Any) -> Client:
    import httpx

    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    client = httpx.AsyncClient(limits=limits, timeout=60, transport=transport)
    url = base + PATH

    async def call() -> bool:
        resp = await client.post(url, content=request_body(), headers=HEADERS)
        return answer_ok(resp.status_code, resp.content)

    return Client(call, client.aclose)


async def httpx_default(base: str, conc: int, _: argparse.Namespace) -> Client:
    return await _httpx(base, conc, None)


async def httpx_aiohttp(base: str, conc: int, _: argparse.Namespace) -> Client:
    import httpx
    from httpx_aiohttp import AiohttpTransport

    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    return await _httpx(base, conc, AiohttpTransport(limits=limits))


async def aiosonic_client(base: str, conc: int, _: argparse.Namespace) -> Client:
    import aiosonic
    from aiosonic.pools import PoolConfig
    from aiosonic.timeout import Timeouts

    connector = aiosonic.TCPConnector(
        pool_configs={":default": PoolConfig(size=conc, max_conn_requests=None)},
        timeouts=Timeouts(request_timeout=60),
    )
    client = aiosonic.HTTPClient(connector=connector)
    url = base + PATH

    async def call() -> bool:
        resp = await client.post(url, data=request_body(), headers=HEADERS)
        return answer_ok(resp.status_code, await resp.content())

    return Client(call, client.aclose)


async def _pyreqwest(base: str, conc: int, multithreaded: bool) -> Client:
    from datetime import timedelta

    from pyreqwest.client import ClientBuilder

    client = (
        ClientBuilder()
        .max_connections(conc)
        .pool_max_idle_per_host(conc)
        .timeout(timedelta(seconds=60))
        .runtime_multithreaded(multithreaded)
        .build()
    )
    url = base + PATH

    async def call() -> bool:
        req = client.post(url).headers(HEADERS).body_bytes(request_body()).build()
        resp = await req.send()
        return answer_ok(resp.status, (await resp.bytes()).to_bytes())

    return Client(call, client.close)


async def pyreqwest_client(base: str, conc: int, _: argparse.Namespace) -> Client:
    return await _pyreqwest(base, conc, multithreaded=False)


async def pyreqwest_mt(base: str, conc: int, _: argparse.Namespace) -> Client:
    return await _pyreqwest(base, conc, multithreaded=True)


async def rnet_client(base: str, conc: int, _: argparse.Namespace) -> Client:
    import rnet

    client = rnet.Client(pool_max_size=conc, pool_max_idle_per_host=conc, timeout=60)
    url = base + PATH

    async def call() -> bool:
        resp = await client.post(url, body=request_body(), headers=HEADERS)
        return answer_ok(resp.status, await resp.bytes())

    async def close() -> None:
        pass  # rnet.Client has no close; dropped with the process

    return Client(call, close)


async def curl_cffi_client(base: str, conc: int, _: argparse.Namespace) -> Client:
    from curl_cffi.requests import AsyncSession

    session: Any = AsyncSession(max_clients=conc, timeout=60)
    url = base + PATH

    async def call() -> bool:
        resp = await session.post(url, data=request_body(), headers=HEADERS)
        return answer_ok(resp.status_code, resp.content)

    return Client(call, session.close)


async def httptools_proto(base: str, conc: int, args: argparse.Namespace) -> Client:
    """The hand-written client in ``--proto FILE``: ``Pool(host, port, limit, timeout)``."""
    spec = importlib.util.spec_from_file_location("proto_client", args.proto)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    host, port = base.removeprefix("http://").rsplit(":", 1)
    pool = module.Pool(host, int(port), limit=conc, timeout=60.0)
    headers = "".join(f"{k}: {v}\r\n" for k, v in HEADERS.items()).encode()
    path = PATH.encode()

    async def call() -> bool:
        status, _, raw = await pool.request(b"POST", path, headers, request_body())
        return answer_ok(status, raw)

    async def close() -> None:
        pool.close()

    return Client(call, close)


# kind: (factory, module it needs)
KINDS: dict[str, tuple[Factory, str]] = {
    "aiohttp": (aiohttp_client, "aiohttp"),
    "openai": (openai_provider, "aiohttp"),
    "engine": (engine, "aiohttp"),
    "anthropic": (anthropic_provider, "anthropic"),
    "httpx-aiohttp": (httpx_aiohttp, "httpx_aiohttp"),
    "httpx": (httpx_default, "httpx"),
    "aiosonic": (aiosonic_client, "aiosonic"),
    "pyreqwest": (pyreqwest_client, "pyreqwest"),
    "pyreqwest-mt": (pyreqwest_mt, "pyreqwest"),
    "rnet": (rnet_client, "rnet"),
    "curl_cffi": (curl_cffi_client, "curl_cffi"),
    "httptools": (httptools_proto, "httptools"),
}
DEFAULT_KINDS = [k for k in KINDS if k != "anthropic"]


def available(kind: str, args: argparse.Namespace) -> bool:
    if kind == "httptools" and not (args.proto and os.path.exists(args.proto)):
        return False
    return importlib.util.find_spec(KINDS[kind][1]) is not None


# --------------------------------------------------------------------------- one measurement


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(kind: str, base: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    """Run ``n`` requests of one kind; rates, CPU per request and correctness."""
    conc = args.concurrency
    client = await KINDS[kind][0](base, conc, args)
    ok = errors = 0
    first_error = ""
    try:
        for _ in range(2):  # open the pool, then warm every connection once more
            await asyncio.gather(*(client.call() for _ in range(conc)))
        remaining = n

        async def worker() -> None:
            nonlocal remaining, ok, errors, first_error
            while remaining > 0:
                remaining -= 1
                try:
                    if await client.call():
                        ok += 1
                        continue
                    first_error = first_error or "bad answer"
                except Exception as exc:
                    first_error = first_error or repr(exc)[:200]
                errors += 1

        gc.collect()
        s0 = proc_cpu(args.server_pid)
        cpu0, th0, wall0 = time.process_time(), time.thread_time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conc)))
        wall = time.perf_counter() - wall0
        cpu, th = time.process_time() - cpu0, time.thread_time() - th0
        server = proc_cpu(args.server_pid) - s0
    finally:
        await client.close()
    return {
        "kind": kind,
        "n": n,
        "ok": ok,
        "errors": errors,
        "first_error": first_error,
        "req_s": n / wall,
        "cpu_us": cpu / n * 1e6,
        "loop_cpu_us": th / n * 1e6,
        "server_cpu_us": server / n * 1e6,
    }


def run_one(args: argparse.Namespace) -> None:
    """Child process: one measurement, printed as one JSON line."""
    if args.loop == "uvloop":
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    else:
        factory = asyncio.new_event_loop
    n = args.httpx_requests if args.one == "httpx" else args.requests
    with asyncio.Runner(loop_factory=factory) as runner:
        row = runner.run(measure(args.one, args.url, n, args))
    print(json.dumps(row), flush=True)


def spawn_one(kind: str, base: str, server_pid: int, args: argparse.Namespace) -> dict[str, Any]:
    # argv[0], not __file__: a wrapper script that adds kinds runs its children too
    command = [sys.executable, os.path.abspath(sys.argv[0]), "--one", kind, "--url", base]
    command += ["--server-pid", str(server_pid), "-n", str(args.requests)]
    command += ["-c", str(args.concurrency), "--loop", args.loop]
    command += ["--httpx-requests", str(args.httpx_requests)]
    if args.proto:
        command += ["--proto", args.proto]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    lines = done.stdout.strip().splitlines()
    stderr = [line for line in done.stderr.splitlines() if line.strip()]
    if not lines:
        tail = stderr[-1] if stderr else f"exit {done.returncode}, no output"
        return {"kind": kind, "n": 0, "ok": 0, "errors": 1, "first_error": tail[:200], "crash": 1}
    row: dict[str, Any] = json.loads(lines[-1])
    # The figures stand, but a client that kills its process on the way out is a finding.
    row["crash"] = int(done.returncode != 0)
    if done.returncode:
        first = stderr[0] if stderr else "no stderr"
        row["first_error"] = f"exit {done.returncode} after the run: {first}"[:200]
    return row


# --------------------------------------------------------------------------- servers


def mean_latency(spec: str) -> float:
    from agentic_synth.simulator import parse_latency

    lat = parse_latency(spec)
    if lat.kind == "fixed":
        return lat.a
    if lat.kind == "uniform":
        return (lat.a + lat.b) / 2
    sigma = (math.log(lat.b) - math.log(lat.a)) / 2.3263478740408408
    return lat.a * math.exp(sigma * sigma / 2)


def serve_minimal(latency: str) -> None:
    """Bare httptools server with a fixed answer; prints the ready line, runs until stdin closes."""
    import httptools

    from agentic_synth.simulator import parse_latency

    lat = parse_latency(latency)
    body = json.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": "bench",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "A short synthetic answer " * 4},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 20, "completion_tokens": 16, "total_tokens": 36},
        }
    ).encode()
    answer = (
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nx-request-id: req_bench\r\n\r\n"
    ).encode() + body
    loop = asyncio.new_event_loop()

    class Conn(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: Any = transport
            self.parser = httptools.HttpRequestParser(self)

        def on_message_complete(self) -> None:
            loop.call_later(lat.sample(random.random(), random.random()), self.send)

        def send(self) -> None:
            if not self.transport.is_closing():
                self.transport.write(answer)

        def data_received(self, data: bytes) -> None:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError:
                self.transport.close()

    server = loop.run_until_complete(
        loop.create_server(Conn, "127.0.0.1", 0, backlog=4096, reuse_address=True)
    )
    print(f"{READY}http://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    loop.run_until_complete(loop.connect_read_pipe(asyncio.Protocol, sys.stdin))
    loop.run_forever()


@contextmanager
def server(kind: str, latency: str) -> Iterator[tuple[str, int]]:
    """(base URL, pid) of a loopback server in a child process, for the block's duration."""
    if kind == "mock":
        command = [sys.executable, "-m", "agentic_synth.simulator", "--port", "0"]
        command += ["--latency", latency]
    else:
        command = [sys.executable, os.path.abspath(__file__), "--serve", "--latency", latency]
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith(READY):
            raise RuntimeError(f"server did not start: {line!r}")
        yield line[len(READY) :].strip(), proc.pid
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.terminate()
        proc.wait(10)


# --------------------------------------------------------------------------- report


def summarize(kind: str, runs: list[dict[str, Any]], ideal: float) -> dict[str, Any]:
    good = [r for r in runs if r["n"]]
    row: dict[str, Any] = {"kind": kind, "runs": len(good)}
    row["correct"] = f"{sum(r['ok'] for r in runs)}/{sum(r['ok'] + r['errors'] for r in runs)}"
    row["crashed"] = sum(r["crash"] for r in runs)
    if not good:
        row["first_error"] = runs[0]["first_error"]
        return row
    rates = [r["req_s"] for r in good]
    row["best_req_s"], row["med_req_s"] = max(rates), statistics.median(rates)
    row["best_pct"], row["med_pct"] = 100 * max(rates) / ideal, 100 * row["med_req_s"] / ideal
    for key in ("cpu_us", "loop_cpu_us", "server_cpu_us"):
        values = [r[key] for r in good]
        row[f"best_{key}"], row[f"med_{key}"] = min(values), statistics.median(values)
    errors = [r["first_error"] for r in runs if r["first_error"]]
    if errors:
        row["first_error"] = errors[0]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("-n", "--requests", type=int, default=5000)
    parser.add_argument("-c", "--concurrency", type=int, default=256)
    parser.add_argument(
        "--latency",
        action="append",
        help="server latency: 0.1, uniform:LO,HI or lognormal:P50,P99 (repeatable; default 0.1)",
    )
    parser.add_argument(
        "--kinds",
        default=",".join(DEFAULT_KINDS),
        help="comma-separated, from: " + ",".join(KINDS),
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument(
        "--server",
        choices=("mock", "minimal"),
        default="mock",
        help="mock: agentic_synth.simulator's mock server (default); "
        "minimal: a bare httptools server with a fixed answer",
    )
    parser.add_argument("--proto", help="file defining the hand-written Pool for 'httptools'")
    parser.add_argument(
        "--httpx-requests", type=int, default=1000, help="requests for plain httpx (it is slow)"
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    latencies = args.latency or ["0.1"]
    if args.serve:
        serve_minimal(latencies[0])
        return
    if args.one:
        run_one(args)
        return
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    for kind in kinds:
        if kind not in KINDS:
            parser.error(f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")
    skipped = [k for k in kinds if not available(k, args)]
    kinds = [k for k in kinds if k not in skipped]
    if skipped:
        print(f"skipped (package or --proto missing): {', '.join(skipped)}")
    figures: dict[str, Any] = {"requests": args.requests, "concurrency": args.concurrency}
    figures |= {"loop": args.loop, "server": args.server, "rounds": args.rounds, "by_latency": {}}
    for latency in latencies:
        ideal = args.concurrency / mean_latency(latency)
        runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
        with server(args.server, latency) as (base, pid):
            for _ in range(args.rounds):
                for kind in kinds:
                    runs[kind].append(spawn_one(kind, base, pid, args))
        rows = [summarize(k, runs[k], ideal) for k in kinds]
        base_cpu = next((r.get("med_cpu_us") for r in rows if r["kind"] == "aiohttp"), None)
        for row in rows:
            if base_cpu and "med_cpu_us" in row:
                row["cpu_x_aiohttp"] = row["med_cpu_us"] / base_cpu
        print(
            f"\n{args.requests} requests, {args.concurrency} concurrent, latency {latency} "
            f"({args.server} server, {args.loop}): ideal {ideal:,.0f} req/s; "
            f"best and median of {args.rounds} interleaved rounds; CPU in us per request"
        )
        columns = ["kind", "correct", "crashed", "best_req_s", "med_req_s", "best_pct", "med_pct"]
        columns += ["best_cpu_us", "med_cpu_us", "med_loop_cpu_us", "cpu_x_aiohttp"]
        columns += ["med_server_cpu_us"]
        print(table(rows, columns))
        for row in rows:
            if row.get("first_error"):
                print(f"  {row['kind']}: {row['first_error']}")
        figures["by_latency"][latency] = {"ideal": ideal, "rows": rows, "runs": runs}
    print("\nresults:", save("transport_clients", figures))


if __name__ == "__main__":
    main()
