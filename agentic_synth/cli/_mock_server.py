"""``synth mock-server``: the loopback server speaking the Anthropic and OpenAI wire formats."""

from __future__ import annotations

import argparse
from typing import Any

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

    serve(config_from_args(args), host=args.host, port=args.port, api_key=api_key_from_args(args))
    return 0
