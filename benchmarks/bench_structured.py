"""Structured records through the engine on the simulator, against plain generation.

Work measured: ``Synth.generate_structured`` of ``--n`` records of the built-in
``users`` schema (attributes filling the instructions) on the in-process simulator
(zero latency): every answer extracted, parsed and validated (jsonschema-rs),
rows built, stats computed; with ``per_call=1``, ``per_call=5`` and
``dedup_outputs=0.8``. Baseline in the same run: ``Synth.generate_batch`` of
``--n`` prompts of the same text with ``json_schema=`` the same schema (the
simulator answers the same schema-valid JSON, nothing parses or validates it),
same simulator, same ``--concurrency``. ``per_call=5`` also gets a baseline of its
own shape (``--n``/5 requests for an array of 5 records), and the bare validation
step (``SchemaSpec.parse`` of the baseline's answers) is timed alone. Figures:
records/s (wall) and CPU us per record, best of ``--repeat`` interleaved runs
(a fresh Synth each), and their ratios to the baseline.

Quality (the README's targets: >= 99.9% of emitted records valid, <= 0.5%
near-duplicates at Jaccard >= 0.8 with ``dedup_outputs=0.8``), ``--n`` records
each (``--n``/5 for ``narrow``): the share of emitted records valid by an
independent validator (the ``jsonschema`` package, Draft 2020-12, with its format
checker), and the
near-duplicate rate (word 3-gram Jaccard >= 0.8 on the record's sorted-key JSON)
both as the job's stats report it and by an exact all-pairs join written here
(prefix filtering, every candidate confirmed with exact set Jaccard), with output
dedup off and on, for ``users``, ``products``, ``transactions`` and ``narrow``,
a schema made here to produce near-duplicates (five enum fields of five-word
phrases and one integer: 7,776 clusters of records within Jaccard 0.8).
Then the same three built-in schemas with the simulator's ``invalid_output``
fault at 30%: valid share of emitted records, corrected slots against the
injected rate, failures, correction turns and the CPU cost against the clean run.

    python benchmarks/bench_structured.py                    # 10k records a row, ~55 s
    python benchmarks/bench_structured.py --n 2000 --repeat 1
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from fractions import Fraction
from typing import Any

import anyio
import jsonschema
from _report import Timing, save, table, timed

from agentic_synth import ModelSpec, Synth
from agentic_synth.datasets import Dataset, builtin_schema
from agentic_synth.datasets._schema import SchemaSpec

DEFAULT_INSTRUCTIONS = "Generate realistic, varied synthetic data."
INJECTED = 0.3
THRESHOLD = 0.8

#: per schema: instructions and attributes, so prompts (and the simulator's answers) vary
SETUPS: dict[str, tuple[str, dict[str, Any]]] = {
    "users": (
        "A user who is a {persona} from {region}.",
        {
            "persona": ["student", "retiree", "engineer", "artist", "nurse"],
            "region": ["Europe", "North America", "Asia", "Africa"],
        },
    ),
    "products": (
        "A {topic} product for a {buyer}.",
        {
            "topic": ["kitchen", "outdoor", "gaming", "office", "garden"],
            "buyer": {"student": 0.6, "chef": 0.3, "parent": 0.1},
        },
    ),
    "transactions": (
        "A transaction by a {persona}, paid {channel}.",
        {
            "persona": ["commuter", "traveller", "family", "freelancer"],
            "channel": ["online", "in store", "by phone"],
        },
    ),
}


def narrow_schema() -> dict[str, Any]:
    """Five enum fields of six five-word phrases (no word shared between phrases) and
    an integer 1..1000: two records with the same five phrases are at Jaccard ~0.94,
    one phrase apart at ~0.62. 7,776 clusters: ~12% near-duplicates in 2,000 draws."""
    fields: dict[str, Any] = {
        f"f{f}": {"enum": [" ".join(f"f{f}o{o}w{w}" for w in range(5)) for o in range(6)]}
        for f in range(5)
    }
    fields["score"] = {"type": "integer", "minimum": 1, "maximum": 1000}
    return {
        "title": "Narrow",
        "type": "object",
        "properties": fields,
        "required": list(fields),
        "additionalProperties": False,
    }


SETUPS["narrow"] = SETUPS["users"]


def schema_of(name: str) -> dict[str, Any]:
    return narrow_schema() if name == "narrow" else builtin_schema(name)


def sim(**options: Any) -> ModelSpec:
    return ModelSpec("sim", "s", options=options)


def prompts(n: int, name: str, per_call: int = 1) -> list[str]:
    """The text a structured job renders for its groups, attribute values cycled."""
    template, attributes = SETUPS[name]
    names = list(attributes)
    values = [list(attributes[a]) for a in names]
    if per_call == 1:
        ask = "Reply with one record as a JSON object and nothing else."
    else:
        ask = (
            f"Reply with {per_call} distinct records as a JSON array of {per_call} "
            "objects and nothing else."
        )
    out = []
    for i in range(n):
        filled = template.format_map({a: v[i % len(v)] for a, v in zip(names, values, strict=True)})
        out.append(f"{filled}\n\n{ask}")
    return out


# -- an independent judge of the records ------------------------------------------------


def independent_validator(schema: dict[str, Any]) -> Any:
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def record_text(record: Any) -> str:
    """What the job's dedup and stats compare: the record's JSON, keys sorted."""
    return json.dumps(record, sort_keys=True, ensure_ascii=False, default=str)


def shingle_set(text: str) -> frozenset[str]:
    """Word 3-grams of the NFKC, case-folded, whitespace-collapsed text (fewer than
    three words: one shingle, the whole text; the empty text: the empty shingle)."""
    words = unicodedata.normalize("NFKC", text).casefold().split()
    if len(words) < 3:
        return frozenset([" ".join(words)])
    return frozenset(" ".join(words[i : i + 3]) for i in range(len(words) - 2))


def exact_near_duplicate_rate(texts: Sequence[str], threshold: float = THRESHOLD) -> float:
    """Share of texts with an earlier text at Jaccard >= ``threshold``: an exact
    similarity join (prefix filtering over tokens ordered rarest first, size filter,
    then exact set Jaccard), no sketches, so it checks the job's MinHash figure."""
    if not texts:
        return 0.0
    t = Fraction(str(threshold))
    sets = [shingle_set(x) for x in texts]
    freq = Counter(tok for s in sets for tok in s)
    rank = {tok: i for i, tok in enumerate(sorted(freq, key=lambda k: (freq[k], k)))}
    index: defaultdict[int, list[int]] = defaultdict(list)
    near = 0
    for i, s in enumerate(sets):
        size = len(s)
        ordered = sorted(rank[tok] for tok in s)
        # a set at Jaccard >= t shares one of its first size - ceil(t * size) + 1 tokens
        prefix = ordered[: size - math.ceil(t * size) + 1]
        checked: set[int] = set()
        found = False
        for tok in prefix:
            for j in index[tok]:
                if j in checked:
                    continue
                checked.add(j)
                other = sets[j]
                if not (t * size <= len(other) <= size / t):
                    continue
                inter = len(s & other)
                if inter >= t * (size + len(other) - inter):
                    found = True
                    break
            if found:
                break
        near += found
        for tok in prefix:
            index[tok].append(i)
    return near / len(sets)


# -- timing --------------------------------------------------------------------------


async def plain(
    inputs: list[str], json_schema: dict[str, Any], concurrency: int
) -> tuple[Timing, list[str]]:
    async with Synth([sim()], max_concurrency=concurrency) as synth:
        with timed() as t:
            results = await synth.generate_batch(inputs, json_schema=json_schema)
    texts = [r.text for r in results if r.ok]
    assert len(texts) == len(inputs)
    return t, texts


async def structured(
    schema: dict[str, Any], n: int, concurrency: int, model: ModelSpec | None = None, **options: Any
) -> tuple[Timing, Dataset]:
    async with Synth([model or sim()], max_concurrency=concurrency) as synth:
        with timed() as t:
            data = await synth.generate_structured(schema, count=n, **options)
    return t, data


def rate_row(
    name: str, n: int, best: Timing, base: Timing, cpu_only: bool = False
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "path": name,
        "cpu us/rec": best.cpu / n * 1e6,
        "x cpu": best.cpu / base.cpu,
        "+us/rec": (best.cpu - base.cpu) / n * 1e6,
    }
    if not cpu_only:
        row["records/s"] = n / best.wall
        row["x wall"] = best.wall / base.wall
    return row


async def speed(n: int, repeat: int, concurrency: int) -> tuple[list[dict[str, Any]], Any]:
    schema = builtin_schema("users")
    template, attributes = SETUPS["users"]
    spec = SchemaSpec.of(schema)
    common: dict[str, Any] = {"instructions": template, "attributes": attributes, "seed": 1}
    groups = n // 5
    runs: dict[str, Callable[[], Awaitable[tuple[Timing, Any]]]] = {
        "baseline": lambda: plain(prompts(n, "users"), schema, concurrency),
        "per_call=1": lambda: structured(schema, n, concurrency, **common),
        "baseline5": lambda: plain(prompts(groups, "users", 5), spec.array_schema(5), concurrency),
        "per_call=5": lambda: structured(schema, groups * 5, concurrency, per_call=5, **common),
        "dedup": lambda: structured(schema, n, concurrency, dedup_outputs=THRESHOLD, **common),
    }
    best: dict[str, Timing] = {}
    texts: list[str] = []
    checks: dict[str, Any] = {}
    for _ in range(repeat):  # interleaved, so drift in machine load hits every row alike
        for name, run in runs.items():
            gc.collect()
            t, out = await run()
            if name == "baseline":
                texts = out
            elif name != "baseline5":
                assert out.stats.valid == len(out), (name, out.stats)
                checks[name] = out.stats.to_dict()
            b = best.setdefault(name, Timing(t.wall, t.cpu))
            b.wall, b.cpu = min(b.wall, t.wall), min(b.cpu, t.cpu)
    # the validation step alone, on the baseline's own answers
    parse = Timing(math.inf, math.inf)
    for _ in range(repeat):
        with timed() as t:
            verdicts = [spec.parse(x) for x in texts]
        parse.cpu, parse.wall = min(parse.cpu, t.cpu), min(parse.wall, t.wall)
    assert all(v.error is None for v in verdicts)
    base, base5 = best["baseline"], best["baseline5"]
    rows = [
        rate_row(f"baseline: generate_batch, json_schema=users, {n:,} requests", n, base, base),
        rate_row("generate_structured per_call=1", n, best["per_call=1"], base),
        rate_row("generate_structured per_call=1, dedup_outputs=0.8", n, best["dedup"], base),
        rate_row("generate_structured per_call=5", groups * 5, best["per_call=5"], base),
        rate_row("  ...against baseline5 (below)", groups * 5, best["per_call=5"], base5),
        rate_row(
            f"baseline5: generate_batch, array of 5, {groups:,} requests", groups * 5, base5, base
        ),
        rate_row(
            "validation alone: SchemaSpec.parse of the baseline's answers", n, parse, base, True
        ),
    ]
    return rows, checks


# -- quality -------------------------------------------------------------------------


def judge(schema: dict[str, Any], data: Dataset) -> tuple[int, float, float]:
    """(records valid by the independent validator, their share, exact near-dup rate)"""
    validator = independent_validator(schema)
    valid = sum(1 for r in data.records if validator.is_valid(r))
    share = valid / len(data) if len(data) else math.nan
    return valid, share, exact_near_duplicate_rate([record_text(r) for r in data.records])


async def quality(n: int, concurrency: int) -> list[dict[str, Any]]:
    rows = []
    for name in ("users", "products", "transactions", "narrow"):
        template, attributes = SETUPS[name]
        schema = schema_of(name)
        count = max(1, n // 5) if name == "narrow" else n  # the exact join is slow on it
        for dedup in (None, THRESHOLD):
            t, data = await structured(
                schema,
                count,
                concurrency,
                instructions=template,
                attributes=attributes,
                dedup_outputs=dedup,
                seed=7,
            )
            valid, share, exact = judge(schema, data)
            s = data.stats
            rows.append(
                {
                    "schema": name,
                    "dedup": "off" if dedup is None else str(dedup),
                    "requested": count,
                    "emitted": len(data),
                    "invalid": len(data) - valid,
                    "valid % (jsonschema)": 100 * share,
                    "near-dup % (stats)": 100 * s.near_duplicate_rate,
                    "near-dup % (exact)": 100 * exact,
                    "replaced": s.near_duplicates,
                    "failed": s.failed,
                    "distinct_2": s.distinct_2,
                    "cpu us/rec": t.cpu / count * 1e6,
                }
            )
    return rows


async def faults(n: int, concurrency: int, clean: dict[str, float]) -> list[dict[str, Any]]:
    rows = []
    for name in ("users", "products", "transactions"):
        template, attributes = SETUPS[name]
        schema = schema_of(name)
        t, data = await structured(
            schema,
            n,
            concurrency,
            model=sim(invalid_output=INJECTED, seed=21),
            instructions=template,
            attributes=attributes,
            seed=7,
        )
        valid, share, _ = judge(schema, data)
        s = data.stats
        rows.append(
            {
                "schema": name,
                "injected": INJECTED,
                "emitted": len(data),
                "invalid": len(data) - valid,
                "valid % (jsonschema)": 100 * share,
                "first-answer valid": s.valid,
                "corrected": s.corrected,
                "corrected/requested": s.corrected / n,
                "failed": s.failed,
                "correction turns": s.retries,
                "restarts": s.restarts,
                "cpu us/rec": t.cpu / n * 1e6,
                "x cpu clean": t.cpu / n * 1e6 / clean[name],
            }
        )
    return rows


async def main(n: int, repeat: int, concurrency: int) -> None:
    speed_rows, checks = await speed(n, repeat, concurrency)
    print(
        f"{n:,} records a row, built-in users schema, simulator with zero latency, "
        f"concurrency {concurrency}, best of {repeat} interleaved runs\n"
    )
    print(table(speed_rows, ["path", "records/s", "cpu us/rec", "x wall", "x cpu", "+us/rec"]))

    quality_rows = await quality(n, concurrency)
    print(
        f"\nquality, {n:,} records a row ({max(1, n // 5):,} for narrow), attributes in the "
        "instructions; valid/invalid by the jsonschema package (format checker on); "
        f"near-duplicates at Jaccard >= {THRESHOLD}\n"
    )
    columns = [
        "schema",
        "dedup",
        "requested",
        "emitted",
        "invalid",
        "valid % (jsonschema)",
        "near-dup % (stats)",
        "near-dup % (exact)",
        "replaced",
        "failed",
        "distinct_2",
        "cpu us/rec",
    ]
    print(table(quality_rows, columns))

    clean = {r["schema"]: r["cpu us/rec"] for r in quality_rows if r["dedup"] == "off"}
    fault_rows = await faults(n, concurrency, clean)
    print(f"\ninvalid_output fault injected at {INJECTED:.0%}, max_corrections=2, max_restarts=1\n")
    columns = [
        "schema",
        "emitted",
        "invalid",
        "valid % (jsonschema)",
        "first-answer valid",
        "corrected",
        "corrected/requested",
        "failed",
        "correction turns",
        "restarts",
        "x cpu clean",
    ]
    print(table(fault_rows, columns))
    path = save(
        "structured",
        {
            "n": n,
            "repeat": repeat,
            "concurrency": concurrency,
            "speed": speed_rows,
            "speed_stats": checks,
            "quality": quality_rows,
            "faults": fault_rows,
        },
    )
    print(f"\nsaved {path}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=64)
    a = ap.parse_args()
    anyio.run(main, a.n, a.repeat, a.concurrency)
