"""Built-in record schemas for a quick start: ``users``, ``products``, ``transactions``.

The seed package's domain schemas, as JSON Schema (Draft 2020-12), with the
formats and patterns a real table would carry, so a first dataset is one line:
``await synth.generate_structured(builtin_schema("users"), count=100)`` or
``synth generate structured --schema builtin:users --count 100 -o users.csv``.
"""

from __future__ import annotations

import copy
from typing import Any

from .._exceptions import InvalidRequestError

__all__ = ["BUILTIN_SCHEMAS", "builtin_schema"]

BUILTIN_SCHEMAS: dict[str, dict[str, Any]] = {
    "users": {
        "title": "User",
        "type": "object",
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "name": {"type": "string", "minLength": 2, "maxLength": 80},
            "email": {"type": "string", "format": "email"},
            "age": {"type": "integer", "minimum": 13, "maximum": 100},
            "country": {"type": "string", "pattern": "^[A-Z]{2}$"},
            "signup_date": {"type": "string", "format": "date"},
            "plan": {"type": "string", "enum": ["free", "pro", "enterprise"]},
            "interests": {
                "type": "array",
                "items": {"type": "string", "minLength": 1},
                "maxItems": 5,
            },
        },
        "required": ["id", "name", "email", "age", "country", "signup_date", "plan"],
        "additionalProperties": False,
    },
    "products": {
        "title": "Product",
        "type": "object",
        "properties": {
            "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"},
            "name": {"type": "string", "minLength": 2, "maxLength": 120},
            "description": {"type": "string", "minLength": 10, "maxLength": 600},
            "category": {
                "type": "string",
                "enum": ["electronics", "home", "garden", "toys", "clothing", "books"],
            },
            "price": {"type": "number", "exclusiveMinimum": 0, "maximum": 100000},
            "currency": {"type": "string", "enum": ["USD", "EUR", "GBP"]},
            "in_stock": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 8},
        },
        "required": ["sku", "name", "description", "category", "price", "currency", "in_stock"],
        "additionalProperties": False,
    },
    "transactions": {
        "title": "Transaction",
        "type": "object",
        "properties": {
            "transaction_id": {"type": "string", "format": "uuid"},
            "user_id": {"type": "string", "format": "uuid"},
            "timestamp": {"type": "string", "format": "date-time"},
            "amount": {"type": "number", "exclusiveMinimum": 0, "maximum": 1000000},
            "currency": {"type": "string", "enum": ["USD", "EUR", "GBP"]},
            "status": {"type": "string", "enum": ["pending", "completed", "failed", "refunded"]},
            "merchant": {"type": "string", "minLength": 2, "maxLength": 80},
            "category": {
                "type": "string",
                "enum": ["groceries", "travel", "dining", "utilities", "shopping", "other"],
            },
        },
        "required": [
            "transaction_id",
            "user_id",
            "timestamp",
            "amount",
            "currency",
            "status",
            "merchant",
        ],
        "additionalProperties": False,
    },
}


def builtin_schema(name: str) -> dict[str, Any]:
    """A copy of the built-in schema ``name`` (``users``, ``products``, ``transactions``)."""
    schema = BUILTIN_SCHEMAS.get(name)
    if schema is None:
        raise InvalidRequestError(
            f"no built-in schema {name!r}; there are {', '.join(sorted(BUILTIN_SCHEMAS))}"
        )
    return copy.deepcopy(schema)
