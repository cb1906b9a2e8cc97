"""The exception tree's helpers: key redaction and pickling."""

from __future__ import annotations

import json
import pickle
import time

import pytest

from agentic_synth import QuotaExceededError, RedirectError, UnreachableError
from agentic_synth._exceptions import redact

KEY = "sk-proj-Zq8Lw2Rt9Pv4Mn7BxYc3Hd6Kf1Gs5Jt"


@pytest.mark.parametrize(
    "leak",
    [
        KEY,
        json.dumps(KEY + "\n"),  # JSON-escaped, with the mounted secret's newline
        repr(KEY + "\n"),
        KEY[:14] + "...",  # a server quoting the start of it
        "..." + KEY[-9:],  # ...or the end
        "Zq8L*************5Jt",  # masked but for its ends
        KEY.replace("-", "%2D"),  # URL-encoded
    ],
)
def test_a_key_whole_in_part_or_escaped_never_survives(leak: str) -> None:
    text = redact(f"HTTP 401: invalid key {leak} provided", KEY)
    for piece in (KEY, KEY[:10], KEY[-8:], "Zq8Lw2Rt", "Hd6Kf1Gs"):
        assert piece not in text
    assert text.startswith("HTTP 401: invalid key ")


def test_short_secrets_are_masked_only_as_whole_words() -> None:
    assert redact("max_tokens exceeds context", "x") == "max_tokens exceeds context"
    assert redact("the key x was refused", "x") == "the key *** was refused"


def test_ordinary_words_are_not_mistaken_for_keys() -> None:
    text = "task-scheduler failed; see sk-learn docs about the api_key field"
    assert redact(text) == text.replace("sk-learn", "sk-learn")  # too short to be a key
    assert redact("token sk-abcdefghijkl") == "token ***"


def test_redacting_a_huge_or_hostile_message_is_cheap_and_bounded() -> None:
    """A server's 30 KB error of '*' froze the event loop for 3.5 s (a regex that
    backtracked quadratically); a 64 MB message would cost seconds per call."""
    hostile = "*" * 200_000 + "abc"
    started = time.process_time()
    for _ in range(20):
        out = redact(hostile, KEY)
    assert len(out) < 5000 and out.endswith("...[cut]")
    # 20 redactions of 200 KB: linear work on a bounded prefix (quadratic took minutes)
    assert time.process_time() - started < 5.0


def test_errors_pickle_with_their_details() -> None:
    for exc in (
        UnreachableError("cannot connect to h:443", host="h", model="openai:x"),
        RedirectError("moved", status=301, location="https://x/v1"),
        QuotaExceededError("no credit", status=400),
    ):
        exc.code = "some_code"
        exc.should_retry = False
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc) and str(back) == str(exc)
        assert (back.code, back.should_retry) == ("some_code", False)
        assert getattr(back, "host", None) == getattr(exc, "host", None)
        assert getattr(back, "location", None) == getattr(exc, "location", None)
