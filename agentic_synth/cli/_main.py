"""Argument parsing and dispatch; each subcommand lives in its own module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .._exceptions import SynthError
from . import _bench, _generate, _mock_server

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="synth",
        description="Generate synthetic data with LLMs at high throughput.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _generate.add_parser(sub)
    _bench.add_parser(sub)
    _mock_server.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except SynthError as exc:
        print(f"synth: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("synth: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
