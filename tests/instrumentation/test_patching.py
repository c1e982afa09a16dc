"""Patching through wrapt: once, and undone exactly (instrumentation/_common.py)."""

from __future__ import annotations

from typing import Any

from usermon.instrumentation._common import unwrap, wrap


def _shout(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return wrapped(*args, **kwargs).upper()


class Base:
    def greet(self, name: str) -> str:
        return f"hello {name}"


class Child(Base):
    pass


def test_a_second_wrap_does_not_wrap_again() -> None:
    original = Base.__dict__["greet"]
    wrap(Base, "greet", _shout)
    wrap(Base, "greet", _shout)
    try:
        assert Base().greet("ada") == "HELLO ADA"
        assert Base.__dict__["greet"].__wrapped__ is original  # one layer, not two
    finally:
        unwrap(Base, "greet")
    assert Base.__dict__["greet"] is original
    assert Base().greet("ada") == "hello ada"


def test_unwrapping_an_inherited_method_leaves_the_subclass_as_it_was() -> None:
    assert "greet" not in Child.__dict__
    wrap(Child, "greet", _shout)
    assert Child().greet("ada") == "HELLO ADA"
    assert Base().greet("ada") == "hello ada"
    unwrap(Child, "greet")
    assert "greet" not in Child.__dict__  # not a copy of Base.greet


def test_unwrap_without_wrap_does_nothing() -> None:
    original = Base.__dict__["greet"]
    unwrap(Base, "greet")
    assert Base.__dict__["greet"] is original
