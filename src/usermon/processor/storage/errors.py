"""The storage errors: what a store or a state raises when it cannot do what was asked.

Both are what the receivers answer with 503 and Retry-After (the sender retries), and what the
engine lets through while it gives back the dedupe claims of the events it did not process.
Every backend raises these and nothing of its driver's, so callers catch one type.
"""

from __future__ import annotations

__all__ = ["StateUnavailable", "StoreError"]


class StoreError(RuntimeError):
    """The store cannot do what was asked (bad URL, backend down, missing driver)."""


class StateUnavailable(StoreError):
    """The shared state did not answer (Redis down, unreachable, timed out). The client
    reconnects by itself on the next call once it is back."""
