"""Argument parsing and dispatch; each subcommand lives in its own module.

Every everyday mistake ends as one line on stderr and an exit code: 2 for a
problem to fix (bad flag, model, key, file), 130 for Ctrl-C, 141 when the
reader of stdout went away. A traceback means a bug.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .. import __version__
from .._exceptions import SynthError
from . import (
    _batch_cmd,
    _bench,
    _cache_cmd,
    _config_cmd,
    _dataset,
    _doctor,
    _generate,
    _mock_server,
    _validate,
)
from ._args import OneLineParser
from ._streams import say, silence_stdout

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="synth",
        description="Generate synthetic data with LLMs at high throughput.",
    )
    parser.add_argument("--version", action="version", version=f"synth {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _generate.add_parser(sub)
    _bench.add_parser(sub)
    _mock_server.add_parser(sub)
    _cache_cmd.add_parser(sub)
    _batch_cmd.add_parser(sub)
    _config_cmd.add_parsers(sub)
    _validate.add_parser(sub)
    _doctor.add_parser(sub)
    return parser


def _log_to_stderr() -> None:
    """Engine warnings go to stderr, never stdout (which may carry the results)."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("synth: %(levelname)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.WARNING)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``synth generate structured|timeseries|events ...`` goes to the dataset parser
    of that kind (the first word after ``generate`` decides); anything else, prompt
    mode included, to the main parser."""
    words = list(sys.argv[1:] if argv is None else argv)
    if len(words) >= 2 and words[0] == "generate" and words[1] in _dataset.KINDS:
        return _dataset.build_parser(words[1]).parse_args(words[2:])
    return build_parser().parse_args(words)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    _log_to_stderr()
    try:
        code: int = args.run(args)
    except SynthError as exc:
        say("synth: error: " + " ".join(str(exc).split("\n")))
        return 2
    except KeyboardInterrupt:
        say("synth: interrupted")
        return 130
    except BrokenPipeError:
        silence_stdout()
        return 141
    return code


if __name__ == "__main__":
    sys.exit(main())
