"""Prompt caching, client side: which prefix is marked, with what TTL, and the warm-up gate."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from anyio.abc import TaskStatus

from agentic_synth._exceptions import ConfigurationError
from agentic_synth._types import Message
from agentic_synth.providers import _prompt_cache as pc
from agentic_synth.providers._prompt_cache import (
    DEFAULT_MIN_TOKENS,
    DISTINCT_SYSTEMS,
    MAX_BREAKPOINTS,
    Breakpoint,
    PromptCache,
    PromptCacheConfig,
    Ticket,
    estimate_tokens,
    min_cacheable_tokens,
    prompt_cache_config,
)

LONG = "word " * 1000  # 5,000 ASCII characters: 1,250 estimated tokens
SHORT = "Be brief."


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def turns(*texts: str) -> list[Message]:
    """Alternating user/assistant turns."""
    return [
        {"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(texts)
    ]


def cache(clock: Clock | None = None, **config: Any) -> PromptCache:
    return PromptCache(PromptCacheConfig(**config), clock=clock or Clock())


@pytest.mark.parametrize(
    ("model", "minimum"),
    [
        ("claude-sonnet-4-5", 1024),
        ("claude-sonnet-4-5-20250929", 1024),
        ("claude-sonnet-4-6", 1024),
        ("claude-opus-4-20250514", 1024),
        ("claude-opus-4-1", 1024),
        ("claude-opus-4-1@20250805", 1024),
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", 1024),
        ("claude-3-7-sonnet-latest", 1024),
        ("claude-opus-4-5-20251101", 4096),
        ("claude-opus-4-6", 4096),
        ("claude-haiku-4-5", 4096),
        ("CLAUDE-HAIKU-4-5-20251001", 4096),
        ("claude-3-5-haiku-latest", 2048),
        ("claude-3-haiku-20240307", 2048),
        ("claude-opus-4-7", DEFAULT_MIN_TOKENS),  # not in the table: the conservative default
        ("sim-1", DEFAULT_MIN_TOKENS),
    ],
)
def test_minimum_length_table(model: str, minimum: int) -> None:
    assert min_cacheable_tokens(model) == minimum


def test_estimate_is_utf8_bytes_over_four() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd" * 10) == 10
    assert estimate_tokens("abcde") == 2
    assert estimate_tokens("日本語") == 3  # 9 bytes
    assert estimate_tokens("\ud800") == 1  # a lone surrogate does not raise


def test_options_are_checked() -> None:
    assert prompt_cache_config({}, "m") == PromptCacheConfig()
    assert prompt_cache_config({"prompt_cache": False}, "m").enabled is False
    assert prompt_cache_config({"prompt_cache": "auto"}, "m") == PromptCacheConfig()
    assert prompt_cache_config({"prompt_cache": "1h"}, "m").ttl == "1h"
    assert prompt_cache_config({"prompt_cache_min_tokens": 2000}, "m").min_tokens == 2000
    for bad in ({"prompt_cache": "2h"}, {"prompt_cache": 1}, {"prompt_cache_min_tokens": 0}):
        with pytest.raises(ConfigurationError, match="prompt_cache"):
            prompt_cache_config(bad, "m")
    with pytest.raises(ConfigurationError, match="'auto'"):
        prompt_cache_config({"prompt_cache": "1h"}, "m", ttls=False)


def test_short_prompts_are_not_hashed(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(data: bytes) -> bytes:
        raise AssertionError("hashed a short prompt")

    monkeypatch.setattr(pc, "fingerprint", boom)
    c = cache()
    assert c.plan("claude-sonnet-4-5", SHORT, turns("hi")) is None
    assert c.plan("claude-sonnet-4-5", None, turns("x" * 5000)) is None  # the last turn: per-input
    assert c.plan("claude-sonnet-4-5", SHORT, turns("a" * 500, "b" * 500, "hi")) is None
    assert len(c) == 0


def test_long_system_prompt_is_marked() -> None:
    c = cache()
    plan = c.plan("claude-sonnet-4-5", LONG, turns("item 1"))
    assert plan is not None
    assert plan.breakpoints == (Breakpoint(-1, "5m"),)
    assert plan.tokens == estimate_tokens(LONG)
    again = c.plan("claude-sonnet-4-5", LONG, turns("item 2"))
    assert again is not None and again.key == plan.key and again.group is plan.group
    other_model = c.plan("claude-sonnet-4-6", LONG, turns("item 3"))
    other_salt = c.plan("claude-sonnet-4-5", LONG, turns("item 4"), salt='{"tools": []}')
    assert other_model is not None and other_salt is not None
    assert len({plan.key, other_model.key, other_salt.key}) == 3
    # The one-message shortcut and the general path agree on the group.
    with_turns = c.plan("claude-sonnet-4-5", LONG, turns("new example", "ok", "item 5"))
    assert with_turns is not None and with_turns.breakpoints == plan.breakpoints
    assert with_turns.key == plan.key and with_turns.group is plan.group
    copy = c.plan("claude-sonnet-4-5", "".join([LONG[:1], LONG[1:]]), turns("item 6"))
    assert copy is not None and copy.key == plan.key  # an equal copy: hashed, same group


def test_below_the_model_minimum_nothing_is_marked() -> None:
    c = cache()
    text = "x" * 3000 * 4  # 3,000 tokens: enough for Sonnet 4.5, not for Haiku 4.5
    assert c.plan("claude-sonnet-4-5", text, turns("q")) is not None
    assert c.plan("claude-haiku-4-5", text, turns("q")) is None
    forced = cache(min_tokens=5000)
    assert forced.plan("claude-sonnet-4-5", text, turns("q")) is None


def test_few_shot_turns_are_marked_once_seen_again() -> None:
    c = cache()
    shots = ("example question " * 150, "example answer " * 150)
    first = c.plan("claude-sonnet-4-5", SHORT, turns(*shots, "input 1"))
    assert first is None  # the turns may be this input's own: not marked on first sight
    second = c.plan("claude-sonnet-4-5", SHORT, turns(*shots, "input 2"))
    assert second is not None
    assert second.breakpoints == (Breakpoint(1, "5m"),)  # the last shared turn, not the input
    # A conversation of its own (never repeated) is never marked.
    assert c.plan("claude-sonnet-4-5", SHORT, turns("mine " * 500, "reply " * 500, "q")) is None


def test_branch_points_are_marked() -> None:
    c = cache(min_tokens=100)
    base = ("shared rules " * 100, "ok")
    a = (*base, "variant A " * 50, "fine")
    b = (*base, "variant B " * 50, "fine")
    for i in range(2):
        c.plan("m", None, turns(*a, f"a{i}"))
        c.plan("m", None, turns(*b, f"b{i}"))
    plan = c.plan("m", None, turns(*a, "a9"))
    assert plan is not None
    # The end of the shared block (where A and B branch) and the deepest shared turn.
    assert [p.at for p in plan.breakpoints] == [1, 3]


def test_at_most_four_breakpoints_the_deepest_kept() -> None:
    c = cache(min_tokens=100)
    system = "system rules " * 100
    chain = [f"turn {i} " * 40 for i in range(6)]
    for depth in range(1, 6):  # each depth seen once: sightings fall turn after turn
        c.plan("m", system, turns(*chain[:depth], f"input {depth}"))
    plan = c.plan("m", system, turns(*chain[:5], "input 9"))
    assert plan is not None
    assert len(plan.breakpoints) == MAX_BREAKPOINTS
    ats = [p.at for p in plan.breakpoints]
    assert ats == sorted(ats)
    assert ats[-1] == 4  # the deepest shared turn
    assert -1 in ats  # and the system prompt, shared by every request


def test_a_system_prompt_per_input_stops_being_marked() -> None:
    c = cache()
    plans = [c.plan("claude-sonnet-4-5", f"{i} {LONG}", turns("q")) for i in range(50)]
    assert all(p is not None for p in plans[:DISTINCT_SYSTEMS])
    assert all(p is None for p in plans[DISTINCT_SYSTEMS:])
    # One seen before is marked again, and new ones with it.
    assert c.plan("claude-sonnet-4-5", f"7 {LONG}", turns("q")) is not None
    assert c.plan("claude-sonnet-4-5", f"new {LONG}", turns("q")) is not None


def test_ttl_is_5_minutes_then_1_hour_for_a_sparse_prefix() -> None:
    clock = Clock()
    c = cache(clock)
    model, ask = "claude-sonnet-4-5", turns("q")

    def ttls() -> tuple[str, ...]:
        plan = c.plan(model, LONG, ask)
        assert plan is not None
        return tuple(p.ttl for p in plan.breakpoints)

    assert ttls() == ("5m",)
    clock.now += 299
    assert ttls() == ("5m",)
    clock.now += 301  # longer than a 5-minute entry lives
    assert ttls() == ("1h",)
    clock.now += 10
    assert ttls() == ("1h",)
    clock.now += 3601  # even a 1-hour entry is gone: start over
    assert ttls() == ("5m",)


def test_forced_ttl() -> None:
    c = cache(ttl="1h")
    plan = c.plan("claude-sonnet-4-5", LONG, turns("q"))
    assert plan is not None and plan.breakpoints == (Breakpoint(-1, "1h"),) and plan.one_hour


def test_one_hour_breakpoints_come_first() -> None:
    clock = Clock()
    c = cache(clock)
    model = "claude-sonnet-4-5"
    shots = ("example " * 600, "answer")
    c.plan(model, LONG, turns(*shots, "i0"))
    c.plan(model, LONG, turns(*shots, "i1"))  # the few-shot group is used now...
    for _ in range(4):  # ... the system prompt every 100 s, the few-shot turns not
        clock.now += 100
        c.plan(model, LONG, turns("other input"))
    plan = c.plan(model, LONG, turns(*shots, "i2"))
    assert plan is not None
    # The few-shot group went 400 s unused: 1 hour; the system one before it must follow.
    assert plan.breakpoints == (Breakpoint(-1, "1h"), Breakpoint(1, "1h"))
    clock.now += 100
    dense = c.plan(model, LONG, turns("other input"))
    assert dense is not None and dense.breakpoints == (Breakpoint(-1, "5m"),)


def test_groups_are_forgotten_after_an_hour() -> None:
    clock = Clock()
    c = cache(clock)
    for i in range(1500):
        c.plan("claude-sonnet-4-5", f"{i % 30} {LONG}", turns("q"))  # 30 live groups
    assert len(c) == 30
    clock.now += 3601
    for i in range(100):
        c.plan("claude-sonnet-4-5", f"{i % 20} {LONG} again", turns("q"))
    assert len(c) == 20  # the 30 unused for an hour are gone


# -- the warm-up gate ------------------------------------------------------------------


def ticket_for(c: PromptCache, text: str = LONG) -> Ticket:
    plan = c.plan("claude-sonnet-4-5", text, turns("q"))
    assert plan is not None
    return plan.ticket()


async def test_first_goes_alone_the_rest_after_it_answers() -> None:
    c = cache()
    leader = ticket_for(c)
    assert await leader.wait(60.0) == 0.0 and leader.leader
    went: list[int] = []

    async def follower(i: int) -> None:
        ticket = ticket_for(c)
        await ticket.wait(60.0)
        assert not ticket.leader
        went.append(i)
        ticket.opened()
        ticket.close()

    async with anyio.create_task_group() as tg:
        for i in range(5):
            tg.start_soon(follower, i)
        await anyio.wait_all_tasks_blocked()
        assert went == []  # all waiting for the warm-up
        leader.opened()  # its answer started
        leader.close()
    assert sorted(went) == list(range(5))
    # Warm now: the next request does not wait.
    late = ticket_for(c)
    assert await late.wait(60.0) == 0.0 and not late.leader


async def test_other_prefixes_do_not_wait() -> None:
    c = cache()
    leader = ticket_for(c)
    await leader.wait(60.0)
    other = ticket_for(c, "other " + LONG)
    with anyio.fail_after(5):
        assert await other.wait(60.0) == 0.0
    assert other.leader


async def test_a_failed_warm_up_hands_over_to_one_waiter() -> None:
    c = cache()
    first = ticket_for(c)
    await first.wait(60.0)
    leaders: list[Ticket] = []
    followers: list[Ticket] = []

    async def request() -> None:
        ticket = ticket_for(c)
        await ticket.wait(60.0)
        (leaders if ticket.leader else followers).append(ticket)

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(request)
        await anyio.wait_all_tasks_blocked()
        first.close()  # failed before its answer started
        await anyio.wait_all_tasks_blocked()
        assert len(leaders) == 1 and followers == []  # exactly one took over
        leaders[0].opened()
    assert len(followers) == 3


async def test_a_cancelled_waiter_or_warm_up_never_blocks_the_others() -> None:
    c = cache()
    first = ticket_for(c)

    async def lead(*, task_status: TaskStatus[None]) -> None:
        try:
            await first.wait(60.0)
            task_status.started()
            await anyio.sleep_forever()  # the warm-up request, in flight
        finally:
            first.close()

    went: list[bool] = []

    async def follow() -> None:
        ticket = ticket_for(c)
        try:
            await ticket.wait(60.0)
            went.append(ticket.leader)
            ticket.opened()
        finally:
            ticket.close()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(lead)
            async with anyio.create_task_group() as doomed:
                doomed.start_soon(follow)
                await anyio.wait_all_tasks_blocked()
                doomed.cancel_scope.cancel()  # a waiter cancelled: nothing to release
            for _ in range(3):
                tg.start_soon(follow)
            await anyio.wait_all_tasks_blocked()
            assert went == []
            tg.cancel_scope.cancel()  # the warm-up cancelled: it hands over
    assert went == []  # the followers were cancelled with it, here
    # A fresh request is not stuck behind the cancelled warm-up.
    again = ticket_for(c)
    with anyio.fail_after(5):
        await again.wait(60.0)
    assert again.leader


async def test_cancelled_warm_up_hands_over_to_live_waiters() -> None:
    c = cache()
    first = ticket_for(c)
    went: list[bool] = []

    async def follow() -> None:
        ticket = ticket_for(c)
        await ticket.wait(60.0)
        went.append(ticket.leader)
        ticket.opened()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            async with anyio.create_task_group() as leading:

                async def lead() -> None:
                    try:
                        await first.wait(60.0)
                        await anyio.sleep_forever()
                    finally:
                        first.close()

                leading.start_soon(lead)
                await anyio.wait_all_tasks_blocked()
                for _ in range(3):
                    tg.start_soon(follow)
                await anyio.wait_all_tasks_blocked()
                assert went == []
                leading.cancel_scope.cancel()
    assert went.count(True) == 1 and len(went) == 3


async def test_waiting_respects_the_call_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    limits: list[float] = []
    move_on_after = anyio.move_on_after

    def recorded(delay: float) -> Any:
        limits.append(delay)
        return move_on_after(delay)

    monkeypatch.setattr(pc.anyio, "move_on_after", recorded)
    c = cache()
    leader = ticket_for(c)
    await leader.wait(60.0)  # and never answers
    follower = ticket_for(c)
    with anyio.fail_after(5):
        waited = await follower.wait(0.2)
    # Gave up after half its timeout and goes unwarmed, with the other half to answer in.
    assert limits == [0.1]
    assert waited > 0.0
    assert not follower.leader and leader.leader
    unbounded = ticket_for(c)
    with anyio.move_on_after(0.05):
        await unbounded.wait(None)
    assert limits[-1] == pc.GATE_WAIT_CAP  # no timeout: waits at most the cap


async def test_a_group_cools_down_after_its_ttl() -> None:
    clock = Clock()
    c = cache(clock)
    first = ticket_for(c)
    await first.wait(60.0)
    first.opened()
    clock.now += 250
    warm = ticket_for(c)
    assert await warm.wait(60.0) == 0.0 and not warm.leader
    warm.opened()  # a read refreshes the entry: warm for another 5 minutes from here
    clock.now += 250
    assert not ticket_for(c).leader and await ticket_for(c).wait(60.0) == 0.0
    clock.now += 300
    cold = ticket_for(c)
    await cold.wait(60.0)
    assert cold.leader  # the entry has expired: warm it up again
