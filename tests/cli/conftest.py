"""The ``synth`` fixture: the command line in a subprocess, in the test's tmp_path."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cli_helpers import SYNTH, Runner


@pytest.fixture
def synth(tmp_path: Path) -> Runner:
    def run(
        *args: str, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*SYNTH, *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=tmp_path,
            check=False,
        )

    return run
