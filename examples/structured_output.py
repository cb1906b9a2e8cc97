"""Ask for JSON that matches a schema; the simulator answers with schema-valid JSON."""

import json

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
        results = await synth.generate_batch(
            [f"Invent a user profile #{i}." for i in range(5)], json_schema=SCHEMA, max_tokens=200
        )
    for r in results:
        profile = json.loads(r.text)
        print(profile["name"], profile["age"], profile["email"], profile["interests"])


anyio.run(main)
