"""Schema-valid records: validated, corrected when invalid, written to a file.

The simulator answers schema-valid JSON; with a real model, set ``models`` to it.
"""

import anyio

from agentic_synth import Synth

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "age": {"type": "integer", "minimum": 18, "maximum": 90},
        "email": {"type": "string", "format": "email"},
        "interests": {"type": "array", "items": {"type": "string"}, "minItems": 1},
    },
    "required": ["name", "age", "email", "interests"],
    "additionalProperties": False,
}


async def main() -> None:
    async with Synth(models=["sim:sim-1"]) as synth:
        data = await synth.generate_structured(
            SCHEMA,
            count=200,
            instructions="A user profile of a {persona}.",
            attributes={"persona": {"student": 0.5, "engineer": 0.3, "retiree": 0.2}},
            dedup_outputs=0.8,
            seed=1,
            max_tokens=300,
        )
    data.write("profiles.jsonl")  # .csv and .parquet work too
    s = data.stats
    print(f"{s.valid + s.corrected} of {s.requested} records valid ({s.corrected} corrected)")
    print(f"near-duplicate rate {s.near_duplicate_rate:.2%}, distinct-2 {s.distinct_2:.2f}")
    for row in data.rows[:3]:
        print(row["persona"], row["name"], row["age"], row["email"])


anyio.run(main)
