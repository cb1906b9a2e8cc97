"""Model routing: choice of model, fallback, breakers, retries, client-side limits."""

from ._router import Routed, Router

__all__ = ["Routed", "Router"]
