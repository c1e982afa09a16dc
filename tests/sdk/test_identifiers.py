"""Identifier normalization, the secret / suspicious key rules and the primary key."""

from __future__ import annotations

import logging
import uuid

import pytest

from usermon.identifiers import (
    MAX_VALUE_LENGTH,
    IdentifierError,
    is_secret_key,
    normalize_identifiers,
    primary_key_of,
)

NORMALIZATION_CASES = [
    # (raw identifiers, expected normalized identifiers)
    ({"email": "ada@example.com"}, {"email": "ada@example.com"}),  # the seed's single key
    ({"username": "ada"}, {"username": "ada"}),  # the seed's Node example
    (
        {"email": "ada@example.com", "platform_id": "shop-42"},  # the seed's composite key
        {"email": "ada@example.com", "platform_id": "shop-42"},
    ),
    ({"  Email ": "  Ada@Example.COM "}, {"email": "ada@example.com"}),  # key and e-mail folded
    ({"mail": "ADA@EXAMPLE.COM"}, {"mail": "ada@example.com"}),
    ({"e-mail": "ADA@EXAMPLE.COM"}, {"e-mail": "ada@example.com"}),
    ({"work_email": "ADA@EXAMPLE.COM"}, {"work_email": "ada@example.com"}),
    ({"Email_Address": "ADA@EXAMPLE.COM"}, {"email_address": "ada@example.com"}),
    ({"Username": " Ada "}, {"username": "Ada"}),  # non-e-mail values keep their case
    ({"user_id": 42}, {"user_id": "42"}),  # integers become strings
    ({"user_id": -7}, {"user_id": "-7"}),
    (
        {"uid": uuid.UUID("12345678-1234-5678-1234-567812345678")},
        {"uid": "12345678-1234-5678-1234-567812345678"},
    ),
    ({"username": "Cafe\u0301"}, {"username": "Caf\u00e9"}),  # NFD becomes NFC
    ({"username": "x" * MAX_VALUE_LENGTH}, {"username": "x" * MAX_VALUE_LENGTH}),  # at the cap
    ({"username": "x" * (MAX_VALUE_LENGTH + 1)}, {}),  # over the cap: dropped
    ({"username": True}, {}),  # booleans dropped
    ({"username": None}, {}),
    ({"username": "   "}, {}),  # empty after trimming
    ({"username": ""}, {}),
    ({"username": ["ada"]}, {}),  # containers dropped
    ({"username": {"a": 1}}, {}),
    ({"username": 1.5}, {}),  # floats are not identifiers
    ({"username": b"ada"}, {}),
    ({1: "ada"}, {}),  # non-string keys dropped
    ({"": "ada"}, {}),
    ({"k" * 65: "ada"}, {}),  # over-long keys dropped
    ({"email": "a@b.c", "password": "hunter2"}, {"email": "a@b.c"}),  # secrets never kept
    ({"email": "a@b.c", "reason": "bad password"}, {"email": "a@b.c", "reason": "bad password"}),
    ({"Email": "first@x.y", "email": "second@x.y"}, {"email": "first@x.y"}),  # first wins
]


@pytest.mark.parametrize(("raw", "expected"), NORMALIZATION_CASES)
def test_normalization(raw: dict[object, object], expected: dict[str, str]) -> None:
    assert normalize_identifiers(raw).as_dict() == expected


PRIMARY_KEY_CASES = [
    ({"email": "a@b.c", "username": "a"}, "email"),
    ({"username": "a", "login": "b"}, "username"),
    ({"login": "b", "mail": "a@b.c"}, "mail"),
    ({"e-mail": "a@b.c", "login": "b"}, "e-mail"),
    ({"login": "b", "platform_id": "1"}, "login"),
    ({"platform_id": "1", "account": "x"}, "account"),  # none preferred: alphabetical
    ({"zeta": "1", "alpha": "2", "mid": "3"}, "alpha"),
    ({"email": "a@b.c", "platform_id": "42"}, "email"),  # the seed's composite
    ({"EMAIL": "a@b.c", "id": "1"}, "email"),  # after key normalization
]


@pytest.mark.parametrize(("raw", "expected"), PRIMARY_KEY_CASES)
def test_primary_key(raw: dict[str, str], expected: str) -> None:
    assert normalize_identifiers(raw).primary_key == expected


def test_identity_is_in_canonical_order_whatever_the_call_order() -> None:
    one = normalize_identifiers({"platform_id": "7", "email": "a@b.c"})
    two = normalize_identifiers({"email": "a@b.c", "platform_id": "7"})
    assert one == two
    assert [key for key, _ in one.items] == ["email", "platform_id"]


def test_no_usable_identifier_gives_an_identity_without_primary_key() -> None:
    identity = normalize_identifiers({"password": "x", "username": None})
    assert identity.items == ()
    assert identity.primary_key is None
    assert identity.primary_value is None


def test_primary_key_of_nothing_is_none() -> None:
    assert primary_key_of({}) is None


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "Password",
        "new_password",
        "passwd",
        "pwd",
        "client_secret",
        "token",
        "access-token",
        "api_key",
        "API-Key",
        "apikey",
        "otp",
        "pin",
        "confirm_pin",
        "code_1",
        "otp2",
        "session_id",
        "credentials",
        "private_key",
        "authorization",
    ],
)
def test_secret_keys_are_recognized(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["email", "username", "login", "user_id", "platform_id", "phone"])
def test_identifier_keys_are_not_secrets(key: str) -> None:
    assert not is_secret_key(key)


def test_a_secret_value_is_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="usermon"):
        normalize_identifiers({"email": "a@b.c", "password": "hunter2-do-not-log"})
    assert "password" in caplog.text
    assert "hunter2-do-not-log" not in caplog.text


def test_suspicious_key_warns_once_per_key_name(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="usermon"):
        for _ in range(3):
            normalize_identifiers({"email": "a@b.c", "reason": "locked"})
        normalize_identifiers({"email": "a@b.c", "status": "locked"})
    warnings = [r.getMessage() for r in caplog.records if "does not look like" in r.getMessage()]
    assert len(warnings) == 2
    assert "'reason'" in warnings[0]
    assert "'status'" in warnings[1]


def test_dropped_values_warn_once_per_key(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="usermon"):
        for _ in range(5):
            normalize_identifiers({"username": None})
    dropped = [r for r in caplog.records if "dropped identifier 'username'" in r.getMessage()]
    assert len(dropped) == 1


def test_strict_mode_raises_on_misuse() -> None:
    with pytest.raises(IdentifierError, match="password"):
        normalize_identifiers({"email": "a@b.c", "password": "x"}, strict=True)
    with pytest.raises(IdentifierError, match="username"):
        normalize_identifiers({"username": None}, strict=True)
