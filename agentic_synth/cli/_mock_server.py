"""``synth mock-server``: the loopback server speaking the Anthropic and OpenAI wire formats."""

from __future__ import annotations

import argparse
import socket
from typing import Any

from .._exceptions import ConfigurationError
from ._args import bind_problem, check_range

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    from ..simulator import add_mock_server_arguments

    p: argparse.ArgumentParser = sub.add_parser(
        "mock-server",
        help="serve simulated Anthropic and OpenAI APIs on loopback",
        description="Serve POST /v1/messages (Anthropic) and POST /v1/chat/completions "
        "(OpenAI) with simulated latency and injected faults, for tests and benchmarks.",
    )
    add_mock_server_arguments(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..simulator import api_key_from_args, config_from_args, serve

    check_range("--port", args.port, low=0, high=65535)
    config, api_key = config_from_args(args), api_key_from_args(args)
    try:
        serve(config, host=args.host, port=args.port, api_key=api_key)
    except socket.gaierror as exc:
        raise ConfigurationError(f"--host {args.host}: {exc.strerror}") from None
    except OSError as exc:
        raise ConfigurationError(bind_problem(exc, args.host, args.port)) from None
    return 0
