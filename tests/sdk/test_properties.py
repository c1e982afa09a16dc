"""Properties over generated input: the API never raises, and secrets never leave the process."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

import usermon
from usermon.identifiers import (
    _IDENTIFIER,
    SECRET_KEY_FRAGMENTS,
    SECRET_KEYS,
    _classify,
    _normalize_value,
    normalize_identifiers,
    normalize_one,
    normalize_plain,
)
from usermon.testing import capture_events, configured

HASH_KEY = "property-test-hash-key-0123456789"

# The autouse fresh-settings fixture is function scoped; every example sets its own options.
PROPERTY = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(),
    st.binary(max_size=20),
    st.uuids(),
)
anything = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
keys = st.one_of(st.text(max_size=80), st.integers(), st.none(), st.tuples(st.integers()))
identifier_mappings = st.dictionaries(keys, anything, max_size=6)
keyword_identifiers = st.dictionaries(
    st.text(max_size=20).filter(lambda key: key != "context"), anything, max_size=4
)
modes = st.sampled_from(["identification", "anonymization", "disabled"])
signals = st.sampled_from(["span", "logs", "both"])
contexts = st.one_of(
    st.none(),
    st.builds(
        usermon.TrackContext,
        client_ip=st.one_of(st.none(), st.text(max_size=45), st.ip_addresses().map(str)),
        user_agent=st.one_of(st.none(), st.text(max_size=50)),
        exists=st.one_of(st.none(), st.booleans()),
    ),
)


class _ExplodingMapping(Mapping[str, object]):
    """A mapping whose every access fails: an ORM proxy on a broken database connection."""

    def __getitem__(self, key: str) -> object:
        raise RuntimeError("database is gone")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("database is gone")

    def __len__(self) -> int:
        raise RuntimeError("database is gone")


@PROPERTY
@given(
    success=anything,
    mapping=st.one_of(identifier_mappings, anything, st.just(_ExplodingMapping())),
    extra=keyword_identifiers,
    context=contexts,
    mode=modes,
    signal=signals,
    key=st.sampled_from([None, HASH_KEY]),
)
def test_no_input_makes_the_api_raise(
    success: Any,
    mapping: Any,
    extra: dict[str, Any],
    context: usermon.TrackContext | None,
    mode: str,
    signal: str,
    key: str | None,
) -> None:
    with configured(mode=mode, event_signal=signal, hash_key=key), capture_events():
        if context is not None:
            extra = {**extra, "context": context}
        usermon.auth_track(success, mapping, **extra)
        usermon.signup_track(mapping, **extra)


def _secret_key_names() -> st.SearchStrategy[str]:
    base = st.sampled_from(sorted(SECRET_KEYS) + list(SECRET_KEY_FRAGMENTS))
    decorated = st.tuples(
        st.sampled_from(["", "new_", "user ", "OLD-"]),
        base,
        st.sampled_from(["", "_1", " confirm", "-hash"]),
    ).map(lambda parts: "".join(parts))
    return st.tuples(decorated, st.booleans(), st.sampled_from(["", " ", "  "])).map(
        lambda t: (t[0].upper() if t[1] else t[0]) + t[2]
    )


@PROPERTY
@given(
    secret_keys=st.lists(_secret_key_names(), min_size=1, max_size=4, unique=True),
    secret_texts=st.lists(st.text(min_size=0, max_size=10), min_size=4, max_size=4),
    others=st.dictionaries(
        st.sampled_from(["email", "username", "platform_id", "login", "account"]),
        st.text(min_size=1, max_size=30),
        max_size=3,
    ),
    mode=modes,
    use_keywords=st.booleans(),
)
def test_no_secret_keyed_value_reaches_an_exported_span(
    secret_keys: list[str],
    secret_texts: list[str],
    others: dict[str, str],
    mode: str,
    use_keywords: bool,
) -> None:
    # A unique marker in each secret value, so a match in the bytes can only be that secret.
    secrets = {
        name: f"{text}S3CR3T{uuid.uuid4().hex}"
        for name, text in zip(secret_keys, secret_texts, strict=False)
    }
    identifiers: dict[str, object] = {**others, **secrets}
    with configured(mode=mode, hash_key=HASH_KEY), capture_events() as captured:
        if use_keywords:
            usermon.auth_track(False, **identifiers)
            usermon.signup_track(**identifiers)
        else:
            usermon.auth_track(True, identifiers)
            usermon.signup_track(identifiers)
    payload = encode_spans(captured.spans).SerializeToString()
    for value in secrets.values():
        marker = value[value.index("S3CR3T") :]
        assert marker.encode() not in payload
        assert marker.lower().encode() not in payload


@PROPERTY
@given(
    identifiers=st.dictionaries(
        st.text(min_size=1, max_size=15),
        st.uuids().map(lambda u: f"Raw-{u.hex}"),
        min_size=1,
        max_size=5,
    ),
    success=st.booleans(),
)
def test_anonymization_never_exports_a_raw_identifier(
    identifiers: dict[str, str], success: bool
) -> None:
    with configured(mode="anonymization", hash_key=HASH_KEY), capture_events() as captured:
        usermon.auth_track(success, identifiers)
        usermon.signup_track(**{k: v for k, v in identifiers.items() if k != "context"})
    payload = encode_spans(captured.spans).SerializeToString()
    for value in identifiers.values():
        assert value.encode() not in payload
        assert value.lower().encode() not in payload


plain_keys = st.one_of(
    st.sampled_from(["email", "Email ", "E-Mail", "username", "login", "platform_id", "reason"]),
    st.text(max_size=12),
)
plain_values = st.one_of(
    st.text(max_size=300),
    st.sampled_from([" Ada@Example.COM ", "A\u0301da", "\u0130stanbul@x", "", "  "]),
)


@PROPERTY
@given(raw=st.dictionaries(plain_keys, plain_values, max_size=4))
def test_the_plain_fast_path_normalizes_exactly_like_the_general_one(raw: dict[str, str]) -> None:
    # The general path classifies each key first, so the fast path (which only trusts keys
    # already classified) is asked after it, as in a tracking call that misses the memo.
    general = normalize_identifiers(raw)
    fast = normalize_plain(raw)
    assert fast is None or fast == general
    plain_and_clean = all(
        _classify(key).category == _IDENTIFIER
        and _normalize_value(value, _classify(key).is_email) is not None
        for key, value in raw.items()
    ) and len({_classify(key).name for key in raw}) == len(raw)
    if raw and plain_and_clean:
        assert fast == general  # the common case does take the fast path


@PROPERTY
@given(key=plain_keys, value=plain_values)
def test_the_one_identifier_path_normalizes_exactly_like_the_general_one(
    key: str, value: str
) -> None:
    general = normalize_identifiers({key: value})
    one = normalize_one(key, value)
    assert one is None or (general.items, general.primary_key) == ((one,), one[0])
    if general.items and _classify(key).category == _IDENTIFIER:
        assert one is not None  # a usable plain identifier does take the fast path
