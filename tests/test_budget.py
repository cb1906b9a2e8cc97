"""Budgets: reservations that cannot be overshot, alerts, the shared ledger."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from redis_helpers import RedisServer

from agentic_synth import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ModelSpec,
    OverloadedError,
    PoolTimeoutError,
    RateLimitedError,
    ServerError,
    Synth,
    UnreachableError,
)
from agentic_synth._budget import (
    FAILED_CALL_CHARGE,
    Budget,
    BudgetAccount,
    BudgetAlert,
    failed_call_charge,
)
from agentic_synth._exceptions import BudgetExceededError, ResponseTooLargeError

pytestmark = pytest.mark.anyio


# -- the failure table, row by row ----------------------------------------------------


@pytest.mark.parametrize(
    ("error", "charge"),
    [
        (PoolTimeoutError("no connection free"), "none"),
        (UnreachableError("refused"), "none"),
        (APITimeoutError("timed out"), "unknown"),
        (APIConnectionError("reset"), "unknown"),
        (ResponseTooLargeError("64 MB"), "unknown"),
        (RateLimitedError("429", status=429), "none"),
        (OverloadedError("529", status=529), "none"),
        (ServerError("500", status=500), "none"),
        (BadRequestError("400", status=400), "none"),
        (AuthenticationError("401", status=401), "none"),
        (RuntimeError("a bug"), "unknown"),
    ],
)
def test_a_failed_call_is_settled_by_its_error_class(error: BaseException, charge: str) -> None:
    assert failed_call_charge(error) == charge


def test_the_table_lists_subclasses_before_their_bases() -> None:
    for i, (kind, _) in enumerate(FAILED_CALL_CHARGE):
        for later, _ in FAILED_CALL_CHARGE[i + 1 :]:
            assert not issubclass(later, kind), f"{later.__name__} is shadowed by {kind.__name__}"


# -- the account in memory -------------------------------------------------------------


def test_budget_arguments_are_checked() -> None:
    for bad in (0, -1.0, float("inf"), "10", True):
        with pytest.raises(ConfigurationError, match="limit_usd"):
            Budget(limit_usd=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="fractions"):
        Budget(limit_usd=1.0, alerts=(0.5, 1.5))
    with pytest.raises(ConfigurationError, match="period"):
        Budget(limit_usd=1.0, period="week")  # type: ignore[arg-type]
    assert Budget.coerce(5) == Budget(limit_usd=5.0)
    with pytest.raises(ConfigurationError, match="budget must be"):
        Budget.coerce("5 dollars")


async def test_reservations_never_exceed_the_limit_and_settle_to_real_costs() -> None:
    account = BudgetAccount(Budget(limit_usd=1.0, alerts=()))
    a = account.try_reserve(0.6)
    assert a is not None
    assert account.try_reserve(0.5) is None  # 1.1 > 1.0 while a is outstanding
    account.settle(a, 0.1)  # it cost far less than its worst case
    b = account.try_reserve(0.5)
    assert b is not None and account.reserved == pytest.approx(0.5)
    account.settle(b, None)  # outcome unknown: stays charged, as uncertain
    assert account.spent == pytest.approx(0.1)
    assert account.uncertain == pytest.approx(0.5)
    assert account.total_spent == pytest.approx(0.6)
    account.settle(b, 0.0)  # settled once only
    assert account.total_spent == pytest.approx(0.6)


async def test_a_reservation_waits_for_outstanding_ones_then_fits_or_exhausts() -> None:
    account = BudgetAccount(Budget(limit_usd=1.0, alerts=()))
    first = account.try_reserve(0.9)
    assert first is not None
    got: list[object] = []

    async def wanting(amount: float) -> None:
        try:
            got.append(await account.reserve(amount))
        except BudgetExceededError as exc:
            got.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(wanting, 0.5)
        await anyio.sleep(0.01)
        assert got == []  # waiting: the outstanding call may settle low
        account.settle(first, 0.2)
    assert len(got) == 1 and not isinstance(got[0], BudgetExceededError)
    # now 0.2 spent and 0.5 reserved: 0.4 cannot fit until that settles
    async with anyio.create_task_group() as tg:
        tg.start_soon(wanting, 0.4)
        await anyio.sleep(0.01)
        account.settle(got[0], 0.5)  # type: ignore[arg-type]
    error = got[1]
    assert isinstance(error, BudgetExceededError)
    assert error.limit_usd == 1.0 and error.spent_usd == pytest.approx(0.7)
    assert "budget of $1.0000 reached" in str(error) and "--budget" in str(error)
    # exhausted: even a request that would fit is refused, the job sends nothing more
    with pytest.raises(BudgetExceededError):
        await account.reserve(0.01)
    assert account.snapshot()["exhausted"] is True and account.refused == 2


async def test_alerts_fire_once_each_at_their_thresholds() -> None:
    seen: list[BudgetAlert] = []
    account = BudgetAccount(Budget(limit_usd=10.0, alerts=(0.8, 0.5, 0.9), on_alert=seen.append))
    for cost in (4.0, 0.5, 0.5, 2.0, 0.1, 2.0):
        hold = account.try_reserve(cost)
        assert hold is not None
        account.settle(hold, cost)
    assert [a.threshold for a in seen] == [0.5, 0.8, 0.9]
    assert seen[0].spent_usd == pytest.approx(5.0) and seen[0].limit_usd == 10.0
    assert account.snapshot()["alerts_fired"] == [0.5, 0.8, 0.9]


async def test_a_failing_alert_callback_does_not_fail_the_request() -> None:
    def broken(alert: BudgetAlert) -> None:
        raise RuntimeError("pager down")

    account = BudgetAccount(Budget(limit_usd=1.0, alerts=(0.5,), on_alert=broken))
    hold = account.try_reserve(0.6)
    assert hold is not None
    account.settle(hold, 0.6)
    assert account.snapshot()["alerts_fired"] == [0.5]


# -- the engine: 256 requests in flight against a limit ----------------------------------


def _sim(**options: object) -> ModelSpec:
    return ModelSpec("sim:sim-1", options={"latency": "uniform:0.001,0.02", **options})


async def test_256_concurrent_requests_never_spend_more_than_the_limit() -> None:
    limit = 0.05
    seen_total: list[float] = []
    async with Synth(
        [_sim(output_tokens=200)],
        max_concurrency=256,
        max_tokens=400,
        budget=Budget(limit_usd=limit, alerts=()),
    ) as synth:
        account = synth._budget
        assert account is not None
        real = account.settle

        def watched(hold: object, cost: float | None) -> None:
            real(hold, cost)  # type: ignore[arg-type]
            seen_total.append(account.spent + account.uncertain + account.reserved)

        account.settle = watched  # type: ignore[method-assign]
        prompts = [f"Write a long story number {i} about the sea." for i in range(2000)]
        results = await synth.generate_batch(prompts)
        snapshot = synth.metrics()
    assert len(results) == 2000
    done = [r for r in results if r.ok]
    refused = [r for r in results if not r.ok]
    assert done and refused  # the limit was reached mid-job
    assert all(isinstance(r.error, BudgetExceededError) for r in refused)  # type: ignore[union-attr]
    paid = sum(r.cost or 0.0 for r in done)  # type: ignore[union-attr]
    assert paid <= limit
    assert max(seen_total) <= limit + 1e-12  # at no moment: spent + reserved > limit
    assert snapshot.cost_usd == pytest.approx(paid)
    assert snapshot.budget is not None and snapshot.budget["exhausted"] is True
    # it used the budget: the unused part is below one request's worst case
    worst = (64 + 8 + 60) * 1e-6 + 400 * 5e-6
    assert limit - paid < worst
    # and nothing was sent once it was exhausted: every success came before
    assert sum(1 for r in results if r.ok) == snapshot.succeeded


async def test_calls_lost_in_flight_stay_charged_as_uncertain() -> None:
    async with Synth(
        [_sim(fault_reset=0.3, seed=3)],
        max_concurrency=32,
        max_tokens=200,
        budget=Budget(limit_usd=0.02, alerts=()),
    ) as synth:
        results = await synth.generate_batch([f"p{i}" for i in range(400)])
        account = synth._budget
        assert account is not None
        uncertain, spent = account.uncertain, account.spent
    paid = sum(r.cost or 0.0 for r in results if r.ok)  # type: ignore[union-attr]
    assert uncertain > 0  # resets may have been billed
    assert spent == pytest.approx(paid)
    assert spent + uncertain <= 0.02 + 1e-12


async def test_a_budget_needs_prices_for_every_model() -> None:
    with pytest.raises(ConfigurationError, match="a budget needs a price"):
        Synth([ModelSpec("openai:my-llama", base_url="http://127.0.0.1:9/v1")], budget=1.0)


async def test_single_generate_raises_the_budget_error() -> None:
    async with Synth([_sim()], max_tokens=4000, budget=0.001) as synth:
        with pytest.raises(BudgetExceededError, match="does not fit"):
            await synth.generate("hi")  # worst case 4000 * $5/M = $0.02


# -- the shared ledger ----------------------------------------------------------------------


async def test_two_accounts_on_one_ledger_share_the_limit(tmp_path: Path) -> None:
    ledger = tmp_path / "budget.sqlite"
    a = BudgetAccount(Budget(limit_usd=1.0, path=ledger, alerts=()))
    b = BudgetAccount(Budget(limit_usd=1.0, path=ledger, alerts=()))
    paid = {id(a): 0.0, id(b): 0.0}
    refused = set()
    for _ in range(100):
        for account in (a, b):
            if id(account) in refused:
                continue
            try:
                hold = await account.reserve(0.03)  # worst case 0.03, it costs 0.01
            except BudgetExceededError:
                refused.add(id(account))
                continue
            account.settle(hold, 0.01)
            await account.flush()  # a Synth writes back every second
            paid[id(account)] += 0.01
    assert refused == {id(a), id(b)}  # both reached the shared limit
    total = sum(paid.values())
    assert total <= 1.0 + 1e-9
    # not overly conservative: at most each one's last worst case and chunk unused
    assert total >= 0.9
    assert min(paid.values()) > 0.3  # shared, not taken by one
    a.close()
    b.close()
    with sqlite3.connect(ledger) as db:
        committed = db.execute("SELECT committed FROM budget_spent").fetchone()[0]
        claims = db.execute("SELECT COUNT(*) FROM budget_claims").fetchone()[0]
    assert committed == pytest.approx(total)
    assert claims == 0  # both gave their unused allowance back
    # a later run sees the spending
    c = BudgetAccount(Budget(limit_usd=1.0, path=ledger, alerts=()))
    assert c.total_spent == pytest.approx(total)
    c.close()


async def test_period_budgets_reset_each_day_and_alerts_fire_once_per_period(
    tmp_path: Path,
) -> None:
    now = [1_790_000_000.0]  # 2026-09-21 UTC
    fired: list[BudgetAlert] = []
    budget = Budget(
        limit_usd=1.0,
        period="day",
        path=tmp_path / "b.sqlite",
        alerts=(0.5,),
        on_alert=fired.append,
        now=lambda: now[0],
    )
    first = BudgetAccount(budget)
    hold = await first.reserve(0.6)
    first.settle(hold, 0.6)
    first.close()
    assert len(fired) == 1
    again = BudgetAccount(budget)  # a second run the same day: spent 0.6 already
    assert again.total_spent == pytest.approx(0.6)
    hold = await again.reserve(0.3)
    again.settle(hold, 0.3)
    assert len(fired) == 1  # 0.5 already fired today, by the first run
    with pytest.raises(BudgetExceededError, match="for 2026-09-21"):
        await again.reserve(0.2)  # 0.9 spent today
    again.close()
    now[0] += 86_400  # the next day
    tomorrow = BudgetAccount(budget)
    assert tomorrow.total_spent == 0.0
    hold = await tomorrow.reserve(0.9)
    tomorrow.settle(hold, 0.55)
    assert len(fired) == 2 and fired[1].period == "day"
    tomorrow.close()


def test_the_claim_of_a_dead_process_counts_as_spent(tmp_path: Path) -> None:
    ledger = tmp_path / "b.sqlite"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(dead.stdout)
    BudgetAccount(Budget(limit_usd=1.0, path=ledger)).close()  # creates the tables
    import socket

    with sqlite3.connect(ledger) as db:
        db.execute(
            "INSERT INTO budget_claims VALUES ('default', 'all', 'gone', ?, ?, 0.25, 0)",
            (socket.gethostname(), pid),
        )
    account = BudgetAccount(Budget(limit_usd=1.0, path=ledger))
    assert account.total_spent == pytest.approx(0.25)  # unknown spending: all of it
    account.close()


_WORKER = textwrap.dedent(
    """
    import sys, anyio
    from agentic_synth import ModelSpec, Synth
    from agentic_synth._budget import Budget

    async def main() -> None:
        spec = ModelSpec("sim:sim-1", options={"latency": "uniform:0.001,0.01",
                                               "output_tokens": 200, "seed": int(sys.argv[2])})
        async with Synth([spec], max_concurrency=64, max_tokens=400,
                         budget=Budget(limit_usd=0.03, path=sys.argv[1], alerts=())) as synth:
            results = await synth.generate_batch([f"story {i}" for i in range(600)])
        paid = sum(r.cost or 0.0 for r in results if r.ok)
        print(repr(paid))

    anyio.run(main)
    """
)


def test_processes_sharing_a_ledger_never_spend_more_than_the_limit(tmp_path: Path) -> None:
    ledger = str(tmp_path / "shared.sqlite")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, ledger, str(i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(3)
    ]
    paid = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        paid.append(float(out.strip().splitlines()[-1]))
    assert sum(paid) <= 0.03 + 1e-9
    assert sum(paid) >= 0.03 * 0.8  # and together they used most of it
    with sqlite3.connect(ledger) as db:
        committed = db.execute("SELECT committed FROM budget_spent").fetchone()[0]
    assert committed == pytest.approx(sum(paid))


# -- the ledger in Redis: every machine ------------------------------------------------------


async def test_a_redis_ledger_shares_the_limit_across_accounts(redis_server: RedisServer) -> None:
    import uuid

    budget = Budget(limit_usd=1.0, path=redis_server.url, alerts=(), name=uuid.uuid4().hex)
    a, b = BudgetAccount(budget), BudgetAccount(budget)
    paid = 0.0
    refused: set[int] = set()
    for _ in range(100):
        for account in (a, b):
            if id(account) in refused:
                continue
            try:
                hold = await account.reserve(0.03)
            except BudgetExceededError:
                refused.add(id(account))
                continue
            account.settle(hold, 0.01)
            await account.flush()
            paid += 0.01
    assert len(refused) == 2 and 0.9 <= paid <= 1.0 + 1e-9
    a.close()
    b.close()
    later = BudgetAccount(budget)
    assert later.total_spent == pytest.approx(paid)
    assert later.snapshot()["ledger"] == redis_server.url
    later.close()


async def test_a_stale_claim_in_redis_counts_as_spent(redis_server: RedisServer) -> None:
    import uuid

    import redis

    budget = Budget(limit_usd=1.0, path=redis_server.url, alerts=(), name=uuid.uuid4().hex)
    account = BudgetAccount(budget)
    claims_key = account._ledger._keys("all")[1]  # type: ignore[union-attr]
    client = redis.Redis.from_url(redis_server.url)
    client.hset(claims_key, "a-machine-that-died", "0.25|0")  # never refreshed since 1970
    await account.flush()
    assert account.total_spent == pytest.approx(0.25)
    client.close()
    account.close()


def test_a_redis_ledger_that_cannot_be_reached_refuses_the_job(tmp_path: Path) -> None:
    from redis_helpers import free_port

    from agentic_synth._budget_redis import BudgetLedgerUnavailableError

    url = f"redis://:hunter2-pw@127.0.0.1:{free_port()}/0"
    with pytest.raises(BudgetLedgerUnavailableError, match="cannot be used") as caught:
        BudgetAccount(Budget(limit_usd=1.0, path=url))
    assert isinstance(caught.value, ConfigurationError)
    assert "hunter2" not in str(caught.value) and ":***@" in str(caught.value)


# -- regressions found in review --------------------------------------------------------------


def test_the_worst_case_follows_output_caps_and_choices_in_extra() -> None:
    from agentic_synth._pricing import worst_case_output_tokens
    from agentic_synth._request import GenerationParams, build_request

    def request(**extra: object) -> object:
        return build_request({"prompt": "hi", "extra": extra}, GenerationParams(max_tokens=16))

    assert worst_case_output_tokens(request()) == 16  # type: ignore[arg-type]
    assert worst_case_output_tokens(request(max_completion_tokens=4000)) == 4000  # type: ignore[arg-type]
    assert worst_case_output_tokens(request(max_tokens=8, n=3)) == 48  # type: ignore[arg-type]


async def test_a_stream_that_fails_after_text_stays_charged() -> None:
    from agentic_synth import OverloadedError

    spec = ModelSpec("sim:sim-1", options={"fault_stream_error": 1.0, "tokens_per_s": 100000})
    async with Synth([spec], max_tokens=64, budget=1.0) as synth:
        with pytest.raises(OverloadedError):
            async for _ in synth.generate_stream("tell me a long story"):
                pass
        account = synth._budget
        assert account is not None
        assert account.uncertain > 0 and account.spent == 0 and account.reserved == 0


async def test_a_process_gives_back_what_it_does_not_need(tmp_path: Path) -> None:
    ledger = tmp_path / "b.sqlite"
    a = BudgetAccount(Budget(limit_usd=100.0, path=ledger, alerts=()))
    b = BudgetAccount(Budget(limit_usd=100.0, path=ledger, alerts=()))
    holds = [await a.reserve(0.5) for _ in range(100)]  # $50 reserved by a
    assert a.snapshot()["reserved_usd"] == pytest.approx(50.0)
    for hold in holds:
        a.settle(hold, 0.01)
    got: list[object] = []

    async def wanting() -> None:
        got.append(await b.reserve(60.0))  # fits once a gives its unused claim back

    async with anyio.create_task_group() as tg:
        tg.start_soon(wanting)
        await a.flush()  # the write-back: a keeps what is reserved plus one chunk
    assert len(got) == 1 and not b.exhausted
    a.close()
    b.close()


def test_a_stale_claim_is_reclaimed_even_when_its_pid_is_alive(tmp_path: Path) -> None:
    import socket

    ledger = tmp_path / "b.sqlite"
    BudgetAccount(Budget(limit_usd=10.0, path=ledger)).close()
    with sqlite3.connect(ledger) as db:  # our own pid: a restarted container's pid 1
        db.execute(
            "INSERT INTO budget_claims VALUES ('default', 'all', 'old', ?, ?, 9.5, 0)",
            (socket.gethostname(), os.getpid()),
        )
    account = BudgetAccount(Budget(limit_usd=10.0, path=ledger))
    assert account.total_spent == pytest.approx(9.5)
    account.close()


async def test_a_redis_ledger_lost_mid_job_fails_no_request(
    new_redis_server: Callable[..., RedisServer],
) -> None:
    server = new_redis_server()
    budget = Budget(limit_usd=2.0, path=server.url, alerts=(0.0001,))
    async with Synth([ModelSpec("sim:sim-1")], max_tokens=32, budget=budget) as synth:
        server.kill()  # the alert cannot be recorded, the close cannot write back
        results = await synth.generate_batch([f"p{i}" for i in range(5)])
        snapshot = synth.metrics()
    assert all(r.ok for r in results)  # the claimed allowance is used, nothing fails
    assert snapshot.budget is not None and snapshot.budget["alerts_fired"] == [0.0001]


def test_the_budget_repr_never_shows_a_redis_password() -> None:
    budget = Budget(limit_usd=5.0, path="redis://:hunter2pw@10.0.0.1:6379/0")
    assert "hunter2" not in repr(budget)
