"""The Ray Data integration on a local Ray cluster, against the mock server in its
own process: every input answered once with its columns passed through, failures
as rows, stable ids, a SIGKILLed driver resumed without paying twice, and one rpm
limit held across 1, 2 and 4 actors through the shared limits.

One cluster for the module, with 8 logical CPUs declared whatever the cores: the
read, the checkpoint filter and the actors each hold some, and a killed driver's
actors hold theirs until Ray has reaped them (see docs/scale-out.md).
Skipped without Ray, unless SYNTH_REQUIRE_RAY is set (CI sets it).
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

try:
    import ray
    import ray.data
except ImportError:
    if os.environ.get("SYNTH_REQUIRE_RAY"):
        pytest.fail("ray is not installed and SYNTH_REQUIRE_RAY is set", pytrace=False)
    pytest.skip("ray is not installed (pip install 'agentic-synth[ray]')", allow_module_level=True)

import pyarrow.parquet as pq
from redis_helpers import RedisServer

from agentic_synth import ConfigurationError, ModelSpec, RetryPolicy, Synth
from agentic_synth._request import GenerationParams, build_request
from agentic_synth.caching import cache_key
from agentic_synth.routing._shared_limits import SharedLimits
from agentic_synth.scaleout import RESULT_COLUMNS, generate_ray, with_ids
from agentic_synth.simulator import ArrivalSampler, SimConfig, spawn_mock_server

from . import _driver

pytestmark = pytest.mark.ray

DRIVER = Path(__file__).with_name("_driver.py")
MESSAGES = "/v1/messages"


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    # test functions (factories) travel to the actors by value: the workers cannot
    # import this module by pytest's name for it
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.cloudpickle.register_pickle_by_value(_driver)
    context = ray.init(
        num_cpus=8, include_dashboard=False, log_to_driver=False, configure_logging=False
    )
    try:
        yield str(context.address_info["gcs_address"])
    finally:
        ray.shutdown()


def model(url: str, **kw: Any) -> ModelSpec:
    return ModelSpec("anthropic", "mock", base_url=url, api_key="sk-ant-test-key", **kw)


def calls(url: str) -> int:
    stats = httpx.get(f"{url}/_sim/stats", timeout=5).json()
    return int(stats["requests"].get(MESSAGES, 0))


# -- every input once, columns through, failures as rows, ids -----------------------


def test_every_row_answered_once_with_its_columns_and_failures_as_rows(cluster: str) -> None:
    inputs = [{"topic": f"topic {i}", "n": i, "ok": i % 2 == 0} for i in range(60)]
    inputs += [{"topic": "topic 1", "n": 100 + k, "ok": False} for k in range(3)]  # repeats
    inputs += [{"topic": None, "n": 200, "ok": True}]  # cannot be sent
    with spawn_mock_server(SimConfig(seed=3, forbidden=0.2)) as url:
        ds = ray.data.from_items(inputs, override_num_blocks=4)
        out = generate_ray(
            ds,
            prompt="Write about {topic}.",
            models=[model(url)],
            synth_options={"retry": RetryPolicy(max_attempts=2, base=0.01, cap=0.02)},
            concurrency=2,
            per_actor_concurrency=8,
            batch_size=10,
            num_cpus=0.5,
            max_tokens=8,
        )
        rows = out.take_all()
        paid = calls(url)
    assert len(rows) == len(inputs)
    by_n = {r["n"]: r for r in rows}
    assert sorted(by_n) == sorted(i["n"] for i in inputs)  # each input exactly once
    for source in inputs:
        row = by_n[source["n"]]
        assert row["topic"] == source["topic"]
        assert row["input_ok"] == source["ok"]  # an input column named like a result
        assert list(row)[-len(RESULT_COLUMNS) :] == list(RESULT_COLUMNS)
    # failures are rows: the forbidden prompts (403) and the row with no topic
    refused = [r for r in rows if r["error_type"] == "PermissionDeniedError"]
    assert refused and all(not r["ok"] and r["status"] == 403 for r in refused)
    empty = by_n[200]
    assert not empty["ok"] and empty["error_type"] == "InvalidRequestError"
    assert "topic" in empty["message"]
    good = [r for r in rows if r["ok"]]
    assert good and all(r["text"] and r["output_tokens"] > 0 for r in good)
    assert len(good) + len(refused) + 1 == len(rows)
    # the id is the cache key of the row's request (sample 0); repeats share it
    synth = Synth([model(url)], max_tokens=8)  # never opened: an id needs no I/O
    request = build_request("Write about topic 1.", GenerationParams.from_kwargs(max_tokens=8))
    expected = cache_key(request, models=synth.models).hex()
    repeats = [r for r in rows if r["topic"] == "topic 1"]
    assert {r["synth_id"] for r in repeats} == {expected}
    assert len({r["synth_id"] for r in rows}) == len(rows) - 3
    # repeats are one call per actor at most (2 actors): never one per row
    unique = len(rows) - 1 - 3  # 60 distinct requests; "topic 1" in a second actor: +1
    assert unique <= paid <= unique + 1  # a 403 is not retried


def test_with_ids_matches_the_job_and_a_sample_column_separates_answers(cluster: str) -> None:
    inputs = [{"topic": "rain", "k": k} for k in range(3)] + [{"topic": "snow", "k": 0}]
    ds = ray.data.from_items(inputs, override_num_blocks=4)
    settings: dict[str, Any] = {
        "prompt": "Write about {topic}.",
        "models": ["sim:sim-1"],
        "sample_column": "k",
        "max_tokens": 8,
    }
    with_id = with_ids(ds, **settings).take_all()
    ids = [r["synth_id"] for r in with_id]
    assert len(set(ids)) == 4  # one prompt, three samples: three ids
    out = generate_ray(ray.data.from_items(with_id), num_cpus=0.5, **settings).take_all()
    assert sorted(r["synth_id"] for r in out) == sorted(ids)  # verified, kept
    assert len({r["text"] for r in out}) == 4  # three samples, three answers
    # ids made with other settings are refused, not silently used as checkpoint ids
    other = generate_ray(
        ray.data.from_items(with_id), num_cpus=0.5, **{**settings, "max_tokens": 9}
    )
    with pytest.raises(Exception, match="ids made with other settings"):
        other.take_all()


def test_settings_are_checked_in_the_driver(cluster: str) -> None:
    ds = ray.data.from_items([{"topic": "x"}])
    with pytest.raises(ConfigurationError, match="plain column names"):
        generate_ray(ds, prompt="About {topic.upper}", models=["sim:sim-1"])
    with pytest.raises(ConfigurationError, match="not both"):
        generate_ray(ds, prompt="topic", models=["sim:sim-1"], make_synth=Synth)
    with pytest.raises(ConfigurationError, match="per_actor_concurrency"):
        generate_ray(ds, prompt="topic", synth_options={"max_concurrency": 3})
    with pytest.raises(Exception, match="no column 'subject'"):
        generate_ray(ds, prompt="{subject}", models=["sim:sim-1"], num_cpus=0.5).take_all()


def test_importing_the_package_does_not_import_ray() -> None:
    code = "import sys, agentic_synth, agentic_synth.scaleout; print('ray' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


# -- SIGKILL of the driver, then resume ----------------------------------------------------


def test_a_killed_driver_resumes_without_paying_twice(
    cluster: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    n = 240
    config = SimConfig(seed=5, latency=0.1)  # ~80 rows/s with 2 actors x 4 in flight
    with spawn_mock_server(config) as url:
        inputs = tmp_path / "inputs"
        ds = ray.data.from_items(
            [{"topic": f"topic {i}", "n": i} for i in range(n)], override_num_blocks=4
        )
        with_ids(
            ds,
            prompt="Write about {topic}.",
            make_synth=functools.partial(_driver.make_synth, url, redis_server.url),
            max_tokens=8,
        ).write_parquet(str(inputs), max_rows_per_file=8)  # blocks of 8 rows: see _driver
        expected = set(pq.read_table(inputs).column("synth_id").to_pylist())
        assert len(expected) == n
        out, ckpt = tmp_path / "out", tmp_path / "checkpoint"
        args = [cluster, url, redis_server.url, str(inputs), str(out), str(ckpt)]
        command = [sys.executable, str(DRIVER), *args]
        first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while not (calls(url) >= n // 3 and _written(out) > 0):
                assert first.poll() is None, "the first run ended before it was killed"
                assert time.monotonic() < deadline, "the job never got going"
                time.sleep(0.05)
            first.kill()  # SIGKILL: no cleanup of any kind
            first.wait()
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
        assert first.stdout is not None and b"done" not in first.stdout.read()
        written_at_kill = _written(out)
        assert 0 < written_at_kill < n
        # the rerun: the same job from this test's driver (a new driver costs Ray
        # seconds of worker start-up; the killed one was the other process)
        _driver.job(url, redis_server.url, str(inputs), str(out), str(ckpt))
        paid = calls(url)
    table = pq.read_table(out)
    ids = table.column("synth_id").to_pylist()
    assert len(ids) == len(set(ids)) == n  # every row once: none lost, none twice
    assert set(ids) == expected
    assert all(table.column("ok").to_pylist())
    # each row paid once, plus at most the calls in flight when the actors died
    in_flight = _driver.ACTORS * _driver.PER_ACTOR
    assert n <= paid <= n + in_flight
    # the resumed run replayed finished-but-unwritten rows from the shared cache
    assert sum(table.column("cached").to_pylist()) > 0


def _written(out: Path) -> int:
    """Rows in the Parquet files committed so far (Ray writes then renames)."""
    if not out.exists():
        return 0
    total = 0
    for path in out.glob("*.parquet"):
        try:
            total += pq.read_metadata(path).num_rows
        except (OSError, ValueError):  # being written (pyarrow: ArrowInvalid)
            continue
    return total


# -- one rpm limit across actors -----------------------------------------------------------


RPM, BURST_SECONDS = 2400, 0.1  # 40 requests/s, bursts of 4


def limited_synth(url: str, redis_url: str, namespace: str) -> Synth:
    limits = SharedLimits(redis_url, namespace=namespace, burst_seconds=BURST_SECONDS)
    return Synth([model(url, rpm=RPM)], max_concurrency=16, shared_limits=limits, monitor=False)


@pytest.mark.parametrize("actors", [1, 2, 4])
def test_one_rpm_limit_holds_across_actors_and_is_reached(
    cluster: str, redis_server: RedisServer, actors: int
) -> None:
    n, rate, burst = 100, RPM / 60, RPM / 60 * BURST_SECONDS
    # the server's advertised limits (headers the router honours) far above ours
    server = SimConfig(seed=7, requests_per_minute=10**6, output_tokens_per_minute=10**9)
    with spawn_mock_server(server) as url:
        ds = ray.data.from_items([{"topic": f"topic {i}"} for i in range(n)], override_num_blocks=4)
        factory = functools.partial(limited_synth, url, redis_server.url, uuid.uuid4().hex)
        out = generate_ray(
            ds,
            prompt="Write about {topic}.",
            make_synth=factory,
            concurrency=actors,
            batch_size=10,
            num_cpus=0.5,
            max_tokens=8,
        )
        with ArrivalSampler(url) as arrivals:
            rows = out.take_all()
            time.sleep(0.05)
    assert len(rows) == n and all(r["ok"] for r in rows)
    samples = arrivals.samples
    assert samples[-1][1] == n
    # never over: any window of the samples saw at most rate x its length + the burst,
    # with 50 ms for the time between a grant and the server counting the request
    for i, (t0, c0) in enumerate(samples):
        for t1, c1 in samples[i + 1 :]:
            assert c1 - c0 <= rate * (t1 - t0 + 0.05) + burst + 1, (actors, t1 - t0, c1 - c0)
    # and reached: the limit is the bottleneck, so the job ran at (nearly) its rate
    start = max(t for t, c in samples if c == 0)
    end = min(t for t, c in samples if c == n)
    achieved = (n - burst) / (end - start)
    assert achieved >= 0.8 * rate, (actors, achieved)
