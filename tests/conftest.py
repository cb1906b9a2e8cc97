"""Shared fixtures. Tests never touch the network or need a real API key."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_real_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see no provider keys or URLs from the developer's environment."""
    for name in (
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "SYNTH_MODELS",
    ):
        monkeypatch.delenv(name, raising=False)
