"""Running the mock server outside tests: command-line options, a blocking
``serve`` and a child-process context manager for benchmarks.

``synth mock-server`` and ``python -m agentic_synth.simulator`` share
:func:`add_mock_server_arguments` and :func:`config_from_args`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import selectors
import signal
import subprocess
import sys
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .._exceptions import ConfigurationError
from ._config import FAULT_KINDS, SimConfig
from ._server import MockServer

__all__ = [
    "add_mock_server_arguments",
    "api_key_from_args",
    "config_from_args",
    "main",
    "serve",
    "spawn_mock_server",
]

#: The first line ``serve`` prints; ``spawn_mock_server`` waits for it.
READY_PREFIX = "mock server listening on "
#: Environment variable holding the key the server requires (keeps it out of ``ps``).
API_KEY_ENV = "SYNTH_MOCK_API_KEY"

# (flag, SimConfig field, type, help); defaults stay None so only given flags override.
_OPTIONS: list[tuple[str, str, Callable[[str], Any], str]] = [
    ("--latency", "latency", str, "time to first token: 0.1, uniform:LO,HI or lognormal:P50,P99"),
    ("--tokens-per-s", "tokens_per_s", float, "streaming speed (default: instant)"),
    ("--output-tokens", "output_tokens", int, "typical output length in words (default 64)"),
    ("--seed", "seed", int, "seed for deterministic outcomes (default 0)"),
    *[
        (
            f"--fault-{kind.replace('_', '-')}",
            f"fault_{kind}",
            float,
            f"probability of the {kind} fault per request (0..1)",
        )
        for kind in FAULT_KINDS
    ],
    ("--forbidden", "forbidden", float, "share of prompts answered 403 (by prompt text)"),
    ("--unauthorized", "unauthorized", bool, "answer 401 to every request"),
    ("--retry-after", "retry_after", float, "seconds sent in retry-after (default 1)"),
    (
        "--long-retry-after",
        "long_retry_after",
        float,
        "retry-after seconds of the long_retry_after fault (default 60)",
    ),
    ("--hang", "hang", float, "seconds a timeout-fault request is held (default 30)"),
    ("--redirect-status", "redirect_status", int, "status of the redirect fault (default 307)"),
    (
        "--redirect-location",
        "redirect_location",
        str,
        "location of the redirect fault (default: the same URL over https)",
    ),
    ("--huge-header-bytes", "huge_header_bytes", int, "size of the huge_headers header"),
    ("--huge-body-bytes", "huge_body_bytes", int, "size of the huge_body body (0: endless)"),
    ("--trickle-interval", "trickle_interval", float, "seconds between trickled bytes"),
    ("--fail-first-n", "fail_first_n", int, "fail the first N requests (alias --fail-first)"),
    ("--fail-first-kind", "fail_first_kind", str, "fault used by --fail-first-n (default 500)"),
    ("--stream-chunk-tokens", "stream_chunk_tokens", int, "words per stream delta (default 4)"),
    ("--requests-per-minute", "requests_per_minute", int, "limit in rate-limit headers"),
    ("--input-tokens-per-minute", "input_tokens_per_minute", int, "limit in headers"),
    ("--output-tokens-per-minute", "output_tokens_per_minute", int, "limit in headers"),
    (
        "--prompt-cache",
        "prompt_cache",
        lambda text: _on_off(text, "--prompt-cache"),
        "on (default): cache prompts as the APIs do; off: a server without prompt caching",
    ),
    (
        "--prompt-cache-min-tokens",
        "prompt_cache_min_tokens",
        int,
        "minimum cacheable prefix (default: the model's; 1024 on the OpenAI wire)",
    ),
    (
        "--batch-processing-time",
        "batch_processing_time",
        float,
        "batch APIs: seconds a whole batch takes, items finishing evenly over it (default 0)",
    ),
    (
        "--batch-error-rate",
        "batch_error_rate",
        float,
        "batch APIs: share of items that end errored (0..1, default 0)",
    ),
    (
        "--batch-expire-after",
        "batch_expire_after",
        float,
        "batch APIs: seconds until a batch expires (default 86400)",
    ),
    (
        "--batch-cancel-time",
        "batch_cancel_time",
        float,
        "batch APIs: seconds a canceled batch stays canceling (default 0)",
    ),
]


def _on_off(text: str, flag: str) -> bool:
    value = text.strip().lower()
    if value in ("on", "true", "1", "yes"):
        return True
    if value in ("off", "false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"{flag} takes on or off, got {text!r}")


_ALIASES = {"--fail-first-n": ("--fail-first",)}


def add_mock_server_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the mock server's options (host, port, key, every :class:`SimConfig` knob)."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port; 0 picks a free one")
    parser.add_argument(
        "--require-api-key",
        action="store_true",
        help=f"answer 401 unless requests carry the key in ${API_KEY_ENV}",
    )
    parser.add_argument(
        "--config-json",
        default=None,
        help="a JSON object of SimConfig fields; the other flags override it",
    )
    for flag, dest, kind, text in _OPTIONS:
        flags = [flag, *_ALIASES.get(flag, ())]
        if kind is bool:
            # Absent: None, so only a given flag overrides --config-json.
            parser.add_argument(
                *flags, dest=f"sim_{dest}", action="store_true", default=None, help=text
            )
        else:
            parser.add_argument(
                *flags, dest=f"sim_{dest}", metavar=dest.upper(), type=kind, default=None, help=text
            )


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """The :class:`SimConfig` the parsed options describe."""
    values: dict[str, Any] = {}
    raw = getattr(args, "config_json", None)
    if raw:
        try:
            loaded = json.loads(raw)
        except ValueError as exc:
            raise ConfigurationError(f"--config-json is not valid JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigurationError("--config-json must be a JSON object of SimConfig fields")
        values.update(loaded)
    for _, dest, _, _ in _OPTIONS:
        value = getattr(args, f"sim_{dest}", None)
        if value is not None:
            values[dest] = value
    return SimConfig.from_mapping(values)


def api_key_from_args(args: argparse.Namespace) -> str | None:
    """The key to require, from the environment, when ``--require-api-key`` is given."""
    if not getattr(args, "require_api_key", False):
        return None
    key = os.environ.get(API_KEY_ENV)
    if not key:
        raise ConfigurationError(f"--require-api-key needs the key in ${API_KEY_ENV}")
    return key


def serve(
    config: SimConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    api_key: str | None = None,
) -> None:
    """Run the mock server until SIGINT/SIGTERM (uses uvloop when installed).

    Prints one line, ``mock server listening on http://HOST:PORT``, once ready.
    """
    _run(_serve(config, host, port, api_key))


async def _serve(config: SimConfig | None, host: str, port: int, api_key: str | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with MockServer(config, host=host, port=port, api_key=api_key) as server:
        print(f"{READY_PREFIX}{server.url}", flush=True)
        await stop.wait()


def _run(coro: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m agentic_synth.simulator``: serve until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m agentic_synth.simulator",
        description="Loopback server speaking the Anthropic and OpenAI APIs, simulated.",
    )
    add_mock_server_arguments(parser)
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
        api_key = api_key_from_args(args)
    except ConfigurationError as exc:
        parser.error(str(exc))
    serve(config, args.host, args.port, api_key=api_key)
    return 0


@contextmanager
def spawn_mock_server(
    config: SimConfig | None = None,
    port: int = 0,
    *,
    host: str = "127.0.0.1",
    api_key: str | None = None,
    startup_timeout: float = 30.0,
) -> Iterator[str]:
    """Run the mock server in a child process; yield its base URL; stop it on exit."""
    command = [
        sys.executable,
        "-m",
        "agentic_synth.simulator",
        "--host",
        host,
        "--port",
        str(port),
        "--config-json",
        json.dumps((config or SimConfig()).to_mapping()),
    ]
    env = dict(os.environ)
    if api_key is not None:
        command.append("--require-api-key")
        env[API_KEY_ENV] = api_key
    process = subprocess.Popen(command, stdout=subprocess.PIPE, env=env, text=True)
    try:
        yield _wait_ready(process, startup_timeout)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()


def _wait_ready(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise ConfigurationError(f"mock server did not start within {timeout:g}s")
    line = process.stdout.readline()
    if not line.startswith(READY_PREFIX):
        process.wait(timeout=10)
        raise ConfigurationError(
            f"mock server failed to start (exit code {process.returncode}); see its stderr"
        )
    return line[len(READY_PREFIX) :].strip()
