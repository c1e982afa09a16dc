"""auth_track / signup_track emit exactly the event contract of docs/schema.md."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

import usermon
from usermon import attributes as attrs
from usermon.pseudonymize import identity_hash, keyed_hash_object
from usermon.request_context import RequestInfo, use_request
from usermon.testing import CapturedEvents
from usermon.tracking import record_login, record_signup

pytestmark = pytest.mark.usefixtures("fresh_settings")


def test_login_event_on_the_current_span(events: CapturedEvents, tracer: trace.Tracer) -> None:
    with tracer.start_as_current_span("POST /login") as span:
        span.set_attribute(attrs.CLIENT_ADDRESS, "192.0.2.10")
        span.set_attribute(attrs.USER_AGENT, "Mozilla/5.0")
        usermon.auth_track(True, {"email": " Ada@Example.com "})
    [event] = events.logins
    assert event.span_name == "POST /login"
    assert event.attributes == {
        attrs.SOURCE: "sdk",
        attrs.LOGIN_SUCCESS: True,
        attrs.PRIMARY_KEY: "email",
        attrs.IDENTIFIER_PREFIX + "email": "ada@example.com",
        attrs.USER_ID: "ada@example.com",
        attrs.USER_HASH: identity_hash((("email", "ada@example.com"),)),
        attrs.CLIENT_ADDRESS: "192.0.2.10",
        attrs.USER_AGENT: "Mozilla/5.0",
    }


def test_successful_login_attributes_the_span_to_the_user(
    events: CapturedEvents, tracer: trace.Tracer
) -> None:
    with tracer.start_as_current_span("POST /login"):
        usermon.auth_track(True, {"username": "ada"})
    [event] = events.logins
    assert event.span_attributes[attrs.TRACKED] is True
    assert event.span_attributes[attrs.USER_ID] == "ada"
    assert event.span_attributes[attrs.USER_HASH] == event.attributes[attrs.USER_HASH]


def test_failed_login_marks_the_span_but_does_not_attribute_it(
    events: CapturedEvents, tracer: trace.Tracer
) -> None:
    with tracer.start_as_current_span("POST /login"):
        usermon.auth_track(False, {"username": "ada"})
    [event] = events.logins
    assert event.attributes[attrs.LOGIN_SUCCESS] is False
    assert event.span_attributes[attrs.TRACKED] is True
    assert attrs.USER_ID not in event.span_attributes
    assert attrs.USER_HASH not in event.span_attributes


def test_signup_event_and_span_attribution(events: CapturedEvents, tracer: trace.Tracer) -> None:
    with tracer.start_as_current_span("POST /signup"):
        usermon.signup_track({"email": "ada@example.com", "platform_id": 7})
    [event] = events.signups
    assert event.name == attrs.SIGNUP_EVENT
    assert attrs.LOGIN_SUCCESS not in event.attributes
    assert event.attributes[attrs.IDENTIFIER_PREFIX + "platform_id"] == "7"
    assert event.span_attributes[attrs.USER_ID] == "ada@example.com"
    assert event.span_attributes[attrs.TRACKED] is True


def test_without_a_recording_span_a_short_internal_span_carries_the_event(
    events: CapturedEvents,
) -> None:
    usermon.auth_track(True, {"email": "ada@example.com"})
    [event] = events.logins
    [span] = events.spans
    assert span.name == attrs.LOGIN_SPAN_NAME
    assert span.kind is SpanKind.INTERNAL
    assert span.attributes is not None
    assert span.attributes[attrs.TRACKED] is True
    assert span.start_time is not None
    assert span.end_time is not None
    assert span.start_time <= event.timestamp <= span.end_time


def test_signup_without_a_span_gets_a_signup_span(events: CapturedEvents) -> None:
    usermon.signup_track(email="ada@example.com")
    assert [span.name for span in events.spans] == [attrs.SIGNUP_SPAN_NAME]


def test_sampled_out_parent_does_not_lose_the_event(events: CapturedEvents) -> None:
    parent = SpanContext(trace_id=0x1234, span_id=0x5678, is_remote=True, trace_flags=TraceFlags(0))
    with trace.use_span(NonRecordingSpan(parent)):
        usermon.auth_track(False, {"email": "ada@example.com"})
    [span] = events.spans
    assert span.parent is None  # a root, so a ParentBased sampler does not drop it
    assert [link.context.span_id for link in span.links] == [0x5678]


def test_mapping_and_keyword_styles_record_the_same_event(
    events: CapturedEvents, tracer: trace.Tracer
) -> None:
    with tracer.start_as_current_span("a"):
        usermon.auth_track(True, {"email": "ada@example.com", "platform_id": "7"})
    with tracer.start_as_current_span("b"):
        usermon.auth_track(True, email="ada@example.com", platform_id="7")
    with tracer.start_as_current_span("c"):
        usermon.auth_track(True, {"email": "ada@example.com"}, platform_id="7")
    first, second, third = (event.attributes for event in events.logins)
    assert first == second == third


def test_track_context_is_never_an_identifier(events: CapturedEvents) -> None:
    usermon.auth_track(
        False,
        email="ada@example.com",
        context=usermon.TrackContext(client_ip="192.0.2.1", user_agent="curl/8", exists=False),
    )
    [event] = events.logins
    assert event.attributes[attrs.CLIENT_ADDRESS] == "192.0.2.1"
    assert event.attributes[attrs.USER_AGENT] == "curl/8"
    assert event.attributes[attrs.USER_EXISTS] is False
    assert not any(name.endswith("context") for name in event.attributes)


def test_a_plain_context_keyword_is_an_identifier(events: CapturedEvents) -> None:
    usermon.auth_track(True, email="ada@example.com", context="tenant-9")
    [event] = events.logins
    assert event.attributes[attrs.IDENTIFIER_PREFIX + "context"] == "tenant-9"


def test_exists_is_only_recorded_on_failures(events: CapturedEvents) -> None:
    usermon.auth_track(True, email="ada@example.com", context=usermon.TrackContext(exists=True))
    [event] = events.logins
    assert attrs.USER_EXISTS not in event.attributes


def test_a_refused_attempt_is_a_failure_marked_blocked_with_its_decision(
    events: CapturedEvents,
) -> None:
    refused = usermon.TrackContext(blocked=True, decision_id="d-81")
    usermon.auth_track(False, {"email": "ada@example.com"}, context=refused)
    record_login(False, {"email": "ada@example.com"}, blocked_by="d-82")
    usermon.auth_track(False, {"email": "ada@example.com"})

    first, second, plain = events.logins
    assert first.success is False
    assert first.attributes[attrs.LOGIN_BLOCKED] is True
    assert first.attributes[attrs.DECISION_ID] == "d-81"
    assert second.attributes[attrs.DECISION_ID] == "d-82"
    assert attrs.LOGIN_BLOCKED not in plain.attributes
    assert attrs.DECISION_ID not in plain.attributes


def test_blocked_is_only_recorded_on_failures(events: CapturedEvents) -> None:
    usermon.auth_track(
        True, {"email": "ada@example.com"}, context=usermon.TrackContext(blocked=True)
    )
    [event] = events.logins
    assert attrs.LOGIN_BLOCKED not in event.attributes


def test_secrets_are_never_recorded(events: CapturedEvents) -> None:
    usermon.auth_track(False, email="ada@example.com", password="hunter2", api_token="t0k3n")
    [event] = events.logins
    values = set(event.attributes.values()) | set(event.span_attributes.values())
    assert "hunter2" not in values
    assert "t0k3n" not in values
    assert set(event.attributes) >= {attrs.IDENTIFIER_PREFIX + "email"}
    assert not any("password" in name or "token" in name for name in event.attributes)


def test_call_without_identifier_is_still_recorded_and_logged_once(
    events: CapturedEvents, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="usermon"):
        for _ in range(3):
            usermon.auth_track(
                False, {"password": "x"}, context=usermon.TrackContext(client_ip="192.0.2.5")
            )
    assert len(events.logins) == 3
    for event in events.logins:
        assert event.attributes == {
            attrs.SOURCE: "sdk",
            attrs.LOGIN_SUCCESS: False,
            attrs.CLIENT_ADDRESS: "192.0.2.5",
        }
    assert len([r for r in caplog.records if "no usable identifier" in r.getMessage()]) == 1


def test_user_hash_is_the_canonical_identity(events: CapturedEvents) -> None:
    usermon.auth_track(True, {"platform_id": 7, "Email": "ADA@example.com"})
    usermon.auth_track(True, {"email": "ada@example.com", "platform_id": "7"})
    usermon.auth_track(True, {"email": "ada@example.com"})
    first, second, single = (event.attributes[attrs.USER_HASH] for event in events.logins)
    assert first == second
    assert first != single  # the identity is all identifiers together


def test_identification_user_hash_is_keyed_when_a_key_is_set(
    events: CapturedEvents, hash_key: str
) -> None:
    usermon.configure(hash_key=hash_key)
    usermon.auth_track(True, email="ada@example.com")
    usermon.configure(mode="anonymization")
    usermon.auth_track(True, email="ada@example.com")
    identified, anonymized = (event.attributes[attrs.USER_HASH] for event in events.logins)
    expected = identity_hash((("email", "ada@example.com"),), keyed_hash_object(hash_key.encode()))
    assert identified == anonymized == expected  # switching modes keeps the aggregation key


def test_anonymization_hashes_every_value(events: CapturedEvents, hash_key: str) -> None:
    usermon.configure(mode="anonymization", hash_key=hash_key)
    usermon.auth_track(True, {"email": "ada@example.com", "platform_id": "7"})
    [event] = events.logins
    assert attrs.USER_ID not in event.attributes
    assert attrs.USER_ID not in event.span_attributes
    for key in ("email", "platform_id"):
        value = event.attributes[attrs.IDENTIFIER_PREFIX + key]
        assert len(value) == 64
        assert value not in ("ada@example.com", "7")
    assert event.span_attributes[attrs.USER_HASH] == event.attributes[attrs.USER_HASH]


def test_anonymization_without_key_emits_nothing_identifying(events: CapturedEvents) -> None:
    usermon.configure(mode="anonymization")
    usermon.auth_track(True, {"email": "ada@example.com"})
    [event] = events.logins
    assert event.attributes == {
        attrs.SOURCE: "sdk",
        attrs.LOGIN_SUCCESS: True,
        attrs.PRIMARY_KEY: "email",
    }
    assert event.span_attributes == {attrs.TRACKED: True}


def test_bad_environment_emits_nothing_identifying(
    events: CapturedEvents, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USERMON_MODE", "loud")
    usermon.auth_track(True, {"email": "ada@example.com"})
    [event] = events.logins
    assert "ada@example.com" not in event.attributes.values()
    assert attrs.USER_HASH not in event.attributes


def test_disabled_mode_emits_nothing(events: CapturedEvents, tracer: trace.Tracer) -> None:
    usermon.configure(mode="disabled")
    with tracer.start_as_current_span("POST /login"):
        usermon.auth_track(True, email="ada@example.com")
        usermon.signup_track(email="ada@example.com")
    assert len(events) == 0


def test_instrumentors_pass_their_own_mode_and_source(events: CapturedEvents) -> None:
    usermon.configure(mode="disabled", auto_mode="identification")
    record_login(
        False,
        {"username": "ada"},
        client_ip="192.0.2.3",
        exists=True,
        source=attrs.SOURCE_DJANGO,
        mode=usermon.settings.get_settings().auto_mode,
    )
    record_signup({"username": "bob"}, source=attrs.SOURCE_DJANGO, mode=usermon.Mode.DISABLED)
    [event] = events
    assert event.attributes[attrs.SOURCE] == "django"
    assert event.attributes[attrs.USER_EXISTS] is True


def test_client_from_the_declared_request_with_trusted_proxies(events: CapturedEvents) -> None:
    usermon.configure(trusted_proxies="10.0.0.0/8")
    info = RequestInfo(
        "10.0.0.1",
        {"x-forwarded-for": "198.51.100.66, 203.0.113.7", "user-agent": "Firefox"},
    )
    with use_request(info):
        usermon.auth_track(False, email="ada@example.com")
    [event] = events.logins
    assert event.attributes[attrs.CLIENT_ADDRESS] == "203.0.113.7"
    assert event.attributes[attrs.USER_AGENT] == "Firefox"


def test_explicit_client_ip_wins_over_the_request(events: CapturedEvents) -> None:
    with use_request(RequestInfo("192.0.2.1", {"user-agent": "Firefox"})):
        usermon.auth_track(
            False, email="a@b.c", context=usermon.TrackContext(client_ip="192.0.2.99")
        )
    [event] = events.logins
    assert event.attributes[attrs.CLIENT_ADDRESS] == "192.0.2.99"
    assert event.attributes[attrs.USER_AGENT] == "Firefox"


def test_client_from_legacy_span_attribute(events: CapturedEvents, tracer: trace.Tracer) -> None:
    with tracer.start_as_current_span("POST /login") as span:
        span.set_attribute("net.peer.ip", "192.0.2.44")
        usermon.auth_track(False, email="a@b.c")
    assert events.logins[0].attributes[attrs.CLIENT_ADDRESS] == "192.0.2.44"


def test_client_inside_a_flask_request(events: CapturedEvents) -> None:
    import flask

    app = flask.Flask(__name__)

    @app.post("/login")
    def login() -> str:
        usermon.auth_track(False, {"email": flask.request.form["email"]})
        return "no"

    app.test_client().post(
        "/login",
        data={"email": "ada@example.com"},
        headers={"User-Agent": "flask-test"},
        environ_base={"REMOTE_ADDR": "192.0.2.77"},
    )
    [event] = events.logins
    assert event.attributes[attrs.CLIENT_ADDRESS] == "192.0.2.77"
    assert event.attributes[attrs.USER_AGENT] == "flask-test"


def test_over_long_user_agent_is_cut(events: CapturedEvents) -> None:
    usermon.auth_track(False, email="a@b.c", context=usermon.TrackContext(user_agent="A" * 5000))
    assert len(events.logins[0].attributes[attrs.USER_AGENT]) == 1024


def test_log_signal_emits_a_log_record_and_no_span_event(
    events: CapturedEvents, log_records, tracer: trace.Tracer
) -> None:
    usermon.configure(event_signal="logs")
    with tracer.start_as_current_span("POST /login") as span:
        usermon.auth_track(True, email="ada@example.com")
        span_context = span.get_span_context()
    assert len(events) == 0
    [record] = [r.log_record for r in log_records.get_finished_logs()]
    assert record.event_name == attrs.LOGIN_EVENT
    assert record.attributes is not None
    assert record.attributes[attrs.USER_ID] == "ada@example.com"
    assert record.trace_id == span_context.trace_id
    assert record.span_id == span_context.span_id


def test_both_signals_share_timestamp_and_ids_for_deduplication(
    events: CapturedEvents, log_records
) -> None:
    usermon.configure(event_signal="both")
    usermon.auth_track(False, email="ada@example.com")  # on a span of its own
    [event] = events.logins
    [record] = [r.log_record for r in log_records.get_finished_logs()]
    assert record.event_name == event.name
    assert record.timestamp == event.timestamp
    assert (record.trace_id, record.span_id) == (event.trace_id, event.span_id)
    assert dict(record.attributes or {}) == dict(event.attributes)


def test_an_exporter_pipeline_that_raises_never_reaches_the_caller(
    faulty_pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="usermon"):
        usermon.auth_track(True, email="ada@example.com")  # starts and ends a span of its own
        usermon.signup_track(email="ada@example.com")
    assert "failed to record" in caplog.text


def test_host_exceptions_pass_through_untouched(tracer: trace.Tracer) -> None:
    class LoginFailed(Exception):
        pass

    error = LoginFailed("wrong password")

    def login_view() -> None:
        with tracer.start_as_current_span("POST /login"):
            usermon.auth_track(False, email="ada@example.com")
            raise error

    with pytest.raises(LoginFailed) as raised:
        login_view()
    assert raised.value is error


@pytest.mark.parametrize(
    "call",
    [
        lambda: usermon.auth_track("yes", {"email": "a@b.c"}),  # type: ignore[arg-type]
        lambda: usermon.auth_track(True, ["email", "a@b.c"]),  # type: ignore[arg-type]
        lambda: usermon.auth_track(True, None),
        lambda: usermon.auth_track(True, "ada@example.com"),  # type: ignore[arg-type]
        lambda: usermon.signup_track(42),  # type: ignore[arg-type]
        lambda: usermon.auth_track(True, context=usermon.TrackContext(client_ip="nope")),
        lambda: record_login(True, {"email": "a@b.c"}, mode="loud"),  # type: ignore[arg-type]
    ],
)
def test_garbage_arguments_never_raise(call, events: CapturedEvents) -> None:
    call()


def test_non_bool_success_counts_as_failure_unless_an_int(events: CapturedEvents) -> None:
    usermon.auth_track("yes", email="a@b.c")  # type: ignore[arg-type]
    usermon.auth_track(1, email="a@b.c")  # type: ignore[arg-type]
    assert [event.success for event in events.logins] == [False, True]


def test_strict_mode_raises_on_misuse() -> None:
    usermon.configure(strict=True)
    with pytest.raises(ValueError, match="password"):
        usermon.auth_track(True, email="a@b.c", password="x")
    with pytest.raises(TypeError):
        usermon.auth_track("yes", email="a@b.c")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no usable identifier"):
        usermon.signup_track()


def test_calls_from_many_threads(events: CapturedEvents, tracer: trace.Tracer) -> None:
    def worker(number: int) -> None:
        for attempt in range(20):
            with tracer.start_as_current_span(f"login-{number}"):
                usermon.auth_track(attempt % 2 == 0, {"username": f"user{number}"})

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(events.logins) == 160
    for event in events.logins:
        number = event.span_name.split("-")[1]
        assert event.attributes[attrs.USER_ID] == f"user{number}"


def test_calls_from_asyncio_tasks_keep_their_own_request(events: CapturedEvents) -> None:
    async def login(number: int) -> None:
        with use_request(RequestInfo(f"192.0.2.{number}", {})):
            await asyncio.sleep(0)
            usermon.auth_track(False, {"username": f"user{number}"})

    async def main() -> None:
        await asyncio.gather(*(login(n) for n in range(1, 30)))

    asyncio.run(main())
    assert len(events.logins) == 29
    for event in events.logins:
        number = event.attributes[attrs.USER_ID].removeprefix("user")
        assert event.attributes[attrs.CLIENT_ADDRESS] == f"192.0.2.{number}"


def test_repeated_calls_on_one_span_attribute_it_to_the_latest_successful_user(
    events: CapturedEvents, tracer: trace.Tracer
) -> None:
    with tracer.start_as_current_span("batch") as span:
        usermon.signup_track(username="ada")
        usermon.signup_track(username="bob")
        usermon.auth_track(False, username="eve")  # a failure never re-attributes
        span_attributes = dict(span.attributes or {})
    assert span_attributes[attrs.USER_ID] == "bob"
    assert span_attributes[attrs.TRACKED] is True
    assert [e.attributes[attrs.USER_ID] for e in events] == ["ada", "bob", "eve"]


def test_memoized_identities_follow_the_settings(events: CapturedEvents, hash_key: str) -> None:
    """The identity memo never serves a result computed under other settings or other types."""
    usermon.auth_track(True, {"username": "ada"})
    usermon.configure(mode="anonymization", hash_key=hash_key)
    usermon.auth_track(True, {"username": "ada"})
    usermon.configure(mode=None, hash_key=None)
    usermon.auth_track(True, {"username": "ada"})
    usermon.auth_track(True, {"username": ["ada"]})  # unhashable: not memoizable, dropped
    usermon.auth_track(True, {"user_id": "1"})
    usermon.auth_track(True, {"user_id": True})  # True == 1 must not alias a memoized "1"
    first, anonymized, again, unhashable, as_text, as_bool = (e.attributes for e in events)
    assert first == again
    assert anonymized[attrs.IDENTIFIER_PREFIX + "username"] != "ada"
    assert attrs.PRIMARY_KEY not in unhashable
    assert as_text[attrs.USER_ID] == "1"
    assert attrs.PRIMARY_KEY not in as_bool


def test_instrumentor_request_is_resolved_with_trusted_proxies(events: CapturedEvents) -> None:
    usermon.configure(trusted_proxies="1")
    environ = {
        "REMOTE_ADDR": "10.0.0.1",
        "HTTP_X_FORWARDED_FOR": "198.51.100.66, 203.0.113.9",
        "HTTP_USER_AGENT": "Safari",
    }
    record_signup(
        {"username": "ada"},
        request=RequestInfo.from_wsgi_environ(environ),
        source=attrs.SOURCE_FLASK_LOGIN,
    )
    [event] = events.signups
    assert event.attributes[attrs.CLIENT_ADDRESS] == "203.0.113.9"
    assert event.attributes[attrs.USER_AGENT] == "Safari"
    assert event.attributes[attrs.SOURCE] == "flask_login"


def _identifiers(event: object) -> dict[str, object]:
    prefix = attrs.IDENTIFIER_PREFIX
    attributes = event.attributes  # type: ignore[attr-defined]
    return {k[len(prefix) :]: v for k, v in attributes.items() if k.startswith(prefix)}


def test_a_lone_surrogate_drops_only_its_identifier(
    events: CapturedEvents, tracer: trace.Tracer
) -> None:
    # A lone surrogate cannot be encoded in UTF-8: the identifier is unusable, not the event.
    with tracer.start_as_current_span("POST /login") as span:
        span.set_attribute(attrs.CLIENT_ADDRESS, "192.0.2.10")
        usermon.auth_track(True, {"email": "ada@example.com", "nickname": "ada\ud800"})
        usermon.signup_track({"email": "bob@example.com", "nick\udfffname": "bob"})
    login, signup = events.events
    assert _identifiers(login) == {"email": "ada@example.com"}
    assert login.attributes[attrs.CLIENT_ADDRESS] == "192.0.2.10"
    assert _identifiers(signup) == {"email": "bob@example.com"}
    assert signup.attributes[attrs.CLIENT_ADDRESS] == "192.0.2.10"


def test_a_lone_surrogate_is_dropped_in_anonymization_mode_too(
    events: CapturedEvents, hash_key: str
) -> None:
    usermon.configure(mode="anonymization", hash_key=hash_key)
    usermon.auth_track(False, {"username": "ada", "team": "\ud83d"})
    [event] = events.logins
    assert set(_identifiers(event)) == {"username"}


class _SecretBearingMapping(dict[str, str]):
    """A host mapping whose iteration fails with a message that carries a secret."""

    def items(self):  # type: ignore[override]
        raise RuntimeError("db password=hunter2")


def test_the_failure_log_names_the_exception_type_but_not_its_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="usermon"):
        usermon.auth_track(True, _SecretBearingMapping(email="ada@example.com"))
    assert "failed to record" in caplog.text
    assert "RuntimeError" in caplog.text
    assert "hunter2" not in caplog.text


class _NamelessMeta(type):
    @property
    def __name__(cls) -> str:  # type: ignore[override]
        raise AttributeError("no name")


class _NamelessError(Exception, metaclass=_NamelessMeta):
    pass


class _NamelessFailingMapping(dict[str, str]):
    def items(self):  # type: ignore[override]
        raise _NamelessError("boom")


def test_an_exception_whose_type_has_no_readable_name_does_not_escape(
    caplog: pytest.LogCaptureFixture,
) -> None:
    escaped = False
    with caplog.at_level(logging.WARNING, logger="usermon"):
        for call in (usermon.auth_track, usermon.signup_track):
            try:
                if call is usermon.auth_track:
                    call(True, _NamelessFailingMapping(email="ada@example.com"))
                else:
                    call(_NamelessFailingMapping(email="ada@example.com"))
            except Exception:  # not re-raised: pytest's report would read the type's name
                escaped = True
    assert not escaped
    assert "failed to record" in caplog.text
