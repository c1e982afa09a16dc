"""A test rule: the smallest detector that exercises the whole detector interface.

It exists so the engine, the finding fold, the store, the API and the OTLP export can be tested
end to end with a rule whose behaviour is obvious: every failed login of a user whose failures
reach :attr:`ExampleRule.threshold` within one minute signals ``brute_force`` (medium) on that
user. It is not shipped: the real detectors live in ``usermon.processor.detectors``.
"""

from __future__ import annotations

from collections.abc import Iterable

from usermon.processor.model import Event, Signal, Subject
from usermon.processor.storage.state.base import State

__all__ = ["ExampleRule"]


class ExampleRule:
    name = "example_rule"

    def __init__(self, threshold: int = 5, window: float = 60.0) -> None:
        self.threshold = threshold
        self.window = window

    def observe(self, event: Event, state: State) -> Iterable[Signal]:
        if event.kind != "login" or event.success or event.user_hash is None:
            return ()
        failures = state.add(f"example:{event.user_hash}", event.time, self.window)
        if failures < self.threshold:
            return ()
        return (
            Signal(
                kind="brute_force",
                severity="medium",
                subject=Subject("user", event.user_hash, event.label),
                summary=f"{failures} failed logins within {self.window:g} s",
                event=event,
                evidence={"failures": failures},
            ),
        )
