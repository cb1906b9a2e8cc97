"""The ``synth`` command line: ``generate``, ``bench``, ``mock-server``."""

from ._main import build_parser, main

__all__ = ["build_parser", "main"]
