"""A seeded mutation fuzzer for the processor's ingest path: OTLP bodies in, through decode and
the engine, with the default detectors.

Two targets share one corpus and one set of mutations:

* **app**: ``POST /v1/traces`` and ``/v1/logs`` on the real Starlette app
  (:func:`usermon.processor.server.create_app`) over a ``memory://`` processor, protobuf and
  OTLP/JSON, some bodies gzipped (some of those damaged), some with the other format's
  ``Content-Type``. Every answer must be 200, 400, 413 or 429, within :data:`DEADLINE`; and
  every few requests, ``/api/users``, ``/api/findings`` and ``/healthz`` must answer 200.
* **decode**: :func:`usermon.processor.otlp.decode` called directly, then
  :meth:`Engine.process` on what it returned. Decoding may raise only
  :class:`MalformedRequest`; every event must hold what the decoder promises (capped, valid
  Unicode text, a boolean login outcome, a timestamp); the engine must not raise and no
  detector may fail.

The corpus: the payloads the processor tests send, hand-made wire encodings, and every
reproduction of issue 12. Mutations are structural (protobuf fields set to edge values through
reflection, repeated fields duplicated or dropped, contract attributes added with any value
type; JSON nodes replaced, ``1e400`` and ``NaN`` tokens, lone surrogates) and byte-level
(truncation, flips, insertions, splices with another corpus entry).

Run longer by hand (docs/security.md, "What is fuzzed")::

    python -m tests.processor.fuzz_ingest --seconds 600 --seed 1
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import random
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from usermon import attributes as A
from usermon.processor.detectors import default_detectors
from usermon.processor.engine import Engine
from usermon.processor.otlp import (
    MAX_IDENTIFIER_KEY_LENGTH,
    MAX_IDENTIFIERS,
    MAX_USER_AGENT_LENGTH,
    MAX_VALUE_LENGTH,
    MalformedRequest,
    decode,
)
from usermon.processor.storage.state.memory import MemoryState

from . import payloads as P
from . import wire as W

DEADLINE = 10.0
"""Seconds one request (or one decode and engine step) may take before it counts as a hang."""

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
ALLOWED = {200, 400, 413, 429}  # 415 cannot happen: only the two OTLP types are sent

CONTRACT_KEYS = [
    A.LOGIN_SUCCESS,
    A.PRIMARY_KEY,
    A.USER_ID,
    A.USER_HASH,
    A.CLIENT_ADDRESS,
    A.USER_AGENT,
    A.USER_EXISTS,
    A.SOURCE,
    A.SCHEMA,
    A.IDENTIFIER_PREFIX + "email",
    A.IDENTIFIER_PREFIX + "platform_id",
    A.IDENTIFIER_PREFIX + "k" * 70,
    *A.LEGACY_CLIENT_ADDRESSES,
    A.SERVICE_NAME,
    A.TRACKED,
    "event.name",
]
STRINGS = [
    "",
    "true",
    "FALSE",
    "1",
    "-1",
    "NaN",
    "1e400",
    A.LOGIN_EVENT,
    A.SIGNUP_EVENT,
    "203.0.113.7",
    "::1",
    "not an address",
    "élève \U0001f600",
    "\x00",
    "a" * (MAX_VALUE_LENGTH + 1),
    "u" * (MAX_USER_AGENT_LENGTH + 5),
    "x" * 70_000,
]
INTS = [0, 1, -1, 2, 2**31, 2**53 + 1, 2**63 - 1, -(2**63), W.NANOS, W.NANOS + 1, W.NANOS + 2]
DOUBLES = [0.0, -0.0, 1.0, -1.0, 0.5, float("nan"), float("inf"), float("-inf"), 1e308]


# -- the corpus ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seed:
    signal: str  # "traces" or "logs"
    json_format: bool
    body: bytes


def _json_login(attrs: dict[str, Any], **event: Any) -> bytes:
    data = json.loads(P.json_traces(7, P.login_attributes()))
    ev = data["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["events"][0]
    ev["attributes"] = [kv for kv in ev["attributes"] if kv["key"] not in attrs] + [
        {"key": k, "value": v} for k, v in attrs.items()
    ]
    ev.update(event)
    return json.dumps(data).encode()


def _three_in_one_span() -> bytes:
    request = trace_service_pb2.ExportTraceServiceRequest()
    request.ParseFromString(P.traces_request([P.span(7, P.login_attributes())]))
    events = request.resource_spans[0].scope_spans[0].spans[0].events
    for i in (1, 2):
        events.add().CopyFrom(events[0])
        events[i].time_unix_nano += i
    for ev, user in zip(events, "abc", strict=True):
        for kv in ev.attributes:
            if kv.key == A.USER_HASH:
                kv.value.string_value = f"h-{user}"
    return request.SerializeToString()


def _json_logs() -> bytes:
    record = {
        "eventName": A.LOGIN_EVENT,
        "timeUnixNano": str(W.NANOS),
        "traceId": "01" * 16,
        "spanId": "02" * 8,
        "attributes": [
            {"key": k, "value": P.json_value(v)} for k, v in P.login_attributes().items()
        ],
    }
    resource = {"attributes": [{"key": A.SERVICE_NAME, "value": {"stringValue": "shop"}}]}
    return json.dumps(
        {"resourceLogs": [{"resource": resource, "scopeLogs": [{"logRecords": [record]}]}]}
    ).encode()


ISSUE_12 = bytes.fromhex(
    "0a4a124812460a1001010101010101010101010101010101120801010101010101014a170a0e636c69656e742e"
    "6164647265737312050a017818015a0f120d757365726d6f6e2e6c6f67696e"
)


def corpus() -> list[Seed]:
    """The test suite's payloads, the hand-made encodings, and issue 12's reproductions."""
    seeds = [
        Seed("traces", False, ISSUE_12),
        Seed("traces", False, P.traces_request([P.span(7, P.login_attributes(success=True))])),
        Seed("traces", False, P.logins(5, ip="192.0.2.44")),
        Seed("traces", False, P.traces_request([P.span(7, {A.USER_HASH: "h"}, name="x")])),
        Seed(
            "traces",
            False,
            P.traces_request([P.span(7, {A.USER_HASH: "h"}, name=A.SIGNUP_EVENT)]),
        ),
        Seed("traces", False, _three_in_one_span()),
        Seed("logs", False, P.logs_request([P.log_record(9, P.login_attributes())])),
        Seed(
            "traces",
            False,
            P.traces_request([P.span(7, P.login_attributes(user_agent="u" * (1 << 16)))]),
        ),
        Seed("traces", True, P.json_traces(7, P.login_attributes())),
        Seed("logs", True, _json_logs()),
    ]
    seeds += [Seed("traces", False, body) for body in W.WIRE_CASES.values()]
    seeds += [Seed("logs", False, W.log_request(record)) for record in W.LOG_WIRE.values()]
    for key in (A.USER_ID, A.USER_HASH, A.USER_AGENT):  # issue 12, item 3
        seeds.append(Seed("traces", True, _json_login({key: {"stringValue": "\ud800"}})))
    cesu = _json_login({A.USER_ID: {"stringValue": "@@"}}).replace(b"@@", b"\xed\xa0\x80")
    seeds.append(Seed("traces", True, cesu))  # a surrogate encoded, not escaped
    seeds.append(
        Seed("traces", True, P.json_traces(7, P.login_attributes()).decode().encode("utf-16"))
    )
    for number in ("1e400", "-1e400"):  # item 6
        for key in ("timeUnixNano",):
            raw = _json_login({}, **{key: "@@"}).replace(b'"@@"', number.encode())
            seeds.append(Seed("traces", True, raw))
        raw = _json_login({A.USER_ID: {"intValue": "@@"}}).replace(b'"@@"', number.encode())
        seeds.append(Seed("traces", True, raw))
    for value in ({"doubleValue": 1.0}, {"doubleValue": "NaN"}, {"intValue": "-1"}):  # item 8
        seeds.append(Seed("traces", True, _json_login({A.LOGIN_SUCCESS: value})))
    return seeds


# -- mutations -------------------------------------------------------------------------------------


def _scalars(message: Message, out: list[tuple[Message, FieldDescriptor]]) -> None:
    """Every (message, field) in ``message``, recursively: where a mutation can land."""
    for fd in message.DESCRIPTOR.fields:
        out.append((message, fd))
        if fd.message_type is None:
            continue
        if fd.is_repeated:
            for sub in getattr(message, fd.name):
                _scalars(sub, out)
        elif message.HasField(fd.name):
            _scalars(getattr(message, fd.name), out)


def _any_value(rng: random.Random, value: Message) -> None:
    how = rng.randrange(6)
    if how == 0:
        value.string_value = rng.choice(STRINGS)
    elif how == 1:
        value.bool_value = rng.random() < 0.5
    elif how == 2:
        value.int_value = rng.choice([i for i in INTS if -(2**63) <= i < 2**63])
    elif how == 3:
        value.double_value = rng.choice(DOUBLES)
    elif how == 4:
        value.bytes_value = rng.randbytes(rng.randrange(4))
    else:
        value.array_value.values.add().string_value = rng.choice(STRINGS)


def _set_scalar(rng: random.Random, message: Message, fd: FieldDescriptor) -> None:
    t = fd.type
    if t == FieldDescriptor.TYPE_STRING:
        value: Any = rng.choice(STRINGS + CONTRACT_KEYS)
    elif t == FieldDescriptor.TYPE_BYTES:
        value = rng.choice([b"", bytes(16), bytes(8), rng.randbytes(rng.choice([3, 8, 16, 17]))])
    elif t == FieldDescriptor.TYPE_BOOL:
        value = rng.random() < 0.5
    elif t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        value = rng.choice(DOUBLES)
    elif t == FieldDescriptor.TYPE_ENUM:
        value = rng.randrange(30)
    else:
        current = getattr(message, fd.name) if not fd.is_repeated else 0
        value = rng.choice([*INTS, 2**64 - 1, current + 1, current - 1])
    try:
        if fd.is_repeated:
            getattr(message, fd.name).append(value)
        else:
            setattr(message, fd.name, value)
    except (TypeError, ValueError):  # out of the field's range: not a mutation protobuf allows
        pass


def mutate_protobuf(rng: random.Random, body: bytes, signal: str) -> bytes:
    request: Message = (
        trace_service_pb2.ExportTraceServiceRequest()
        if signal == "traces"
        else logs_service_pb2.ExportLogsServiceRequest()
    )
    try:
        request.ParseFromString(body)
    except Exception:
        return mutate_bytes(rng, body, [])
    for _ in range(rng.randint(1, 4)):
        targets: list[tuple[Message, FieldDescriptor]] = []
        _scalars(request, targets)
        message, fd = rng.choice(targets)
        if fd.message_type is None:
            _set_scalar(rng, message, fd)
            continue
        if not fd.is_repeated:
            getattr(message, fd.name).SetInParent()
            continue
        items = getattr(message, fd.name)
        how = rng.randrange(4)
        if how == 0 and len(items):
            items.add().CopyFrom(items[rng.randrange(len(items))])
        elif how == 1 and len(items):
            del items[rng.randrange(len(items))]
        elif fd.message_type.name == "KeyValue":
            kv = items.add()
            kv.key = rng.choice(CONTRACT_KEYS)
            _any_value(rng, kv.value)
        else:
            items.add()
    return request.SerializeToString()


_RAW = ["1e400", "-1e400", "NaN", "Infinity", "-0", "18446744073709551616", "1.5", "[]", "{}"]


def _json_nodes(node: Any, out: list[tuple[Any, Any]]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            out.append((node, key))
            _json_nodes(value, out)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out.append((node, i))
            _json_nodes(value, out)


def _json_value(rng: random.Random) -> Any:
    return rng.choice(
        [
            "\ud800",
            "x\udfff",
            "\ud83d\ude00",
            None,
            True,
            0,
            -1,
            2**64,
            0.5,
            [],
            {},
            [[[[]]]],
            {"stringValue": rng.choice(STRINGS)},
            {"intValue": rng.choice(["1", "-1", "x", 2**70])},
            {"doubleValue": rng.choice([1.0, "NaN", "Infinity", "z"])},
            {"boolValue": rng.choice([True, False, "true", 1])},
            {"key": rng.choice(CONTRACT_KEYS), "value": {"stringValue": "\ud800"}},
            "@@" + rng.choice(_RAW),  # replaced by the raw token after dumping
            rng.choice(STRINGS),
            rng.choice(CONTRACT_KEYS),
        ]
    )


def mutate_json(rng: random.Random, body: bytes) -> bytes:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return mutate_bytes(rng, body, [])
    for _ in range(rng.randint(1, 3)):
        nodes: list[tuple[Any, Any]] = []
        _json_nodes(data, nodes)
        if not nodes:
            return mutate_bytes(rng, body, [])
        container, key = rng.choice(nodes)
        how = rng.randrange(4)
        if how == 0 and isinstance(container, list):
            container.append(container[key])
        elif how == 1:
            del container[key]
        else:
            container[key] = _json_value(rng)
    text = json.dumps(data)
    for raw in _RAW:
        text = text.replace(f'"@@{raw}"', raw)
    return text.encode()


def mutate_bytes(rng: random.Random, body: bytes, others: list[bytes]) -> bytes:
    if not body:
        return rng.randbytes(rng.randrange(16))
    i = rng.randrange(len(body) + 1)
    j = rng.randrange(i, len(body) + 1)
    how = rng.randrange(6)
    if how == 0:
        return body[:i]
    if how == 1 and i < len(body):
        return body[:i] + bytes([body[i] ^ (1 << rng.randrange(8))]) + body[i + 1 :]
    if how == 2:
        return body[:i] + rng.randbytes(rng.randint(1, 8)) + body[i:]
    if how == 3:
        return body[:i] + body[j:]
    if how == 4:
        return body[:j] + body[i:j] + body[j:]
    other = rng.choice(others) if others else body
    k = rng.randrange(len(other) + 1)
    return body[:i] + other[k:]


def mutant(rng: random.Random, seeds: list[Seed]) -> Seed:
    seed = rng.choice(seeds)
    body = seed.body
    for _ in range(rng.choice([0, 1, 1, 2, 3])):
        r = rng.random()
        if r < 0.55:
            body = (
                mutate_json(rng, body)
                if seed.json_format
                else mutate_protobuf(rng, body, seed.signal)
            )
        else:
            body = mutate_bytes(rng, body, [s.body for s in seeds])
    return Seed(seed.signal, seed.json_format, body)


# -- checks ----------------------------------------------------------------------------------------


class Failure(AssertionError):
    """A fuzz input broke a promise; the message says which, with the input."""


def _check_events(events: list[Any]) -> None:
    for e in events:
        texts = [e.user_hash, e.user_id, e.primary_key, e.client_ip, e.source, e.service]
        for text in [*texts, e.user_agent, *[t for pair in e.identifiers for t in pair]]:
            if text is not None:
                text.encode("utf-8")  # UnicodeEncodeError: a lone surrogate got through
        assert all(t is None or len(t) <= MAX_VALUE_LENGTH for t in texts), e
        assert e.user_agent is None or len(e.user_agent) <= MAX_USER_AGENT_LENGTH
        assert len(e.identifiers) <= MAX_IDENTIFIERS
        assert all(len(name) <= MAX_IDENTIFIER_KEY_LENGTH for name, _ in e.identifiers)
        assert e.time_ns > 0
        assert e.time == e.time_ns / 1e9
        assert (e.success is None) if e.kind == "signup" else (e.success in (True, False))


@dataclass
class Stats:
    runs: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    events: int = 0
    malformed: int = 0
    slowest: float = 0.0


def _timed(stats: Stats, what: str, call: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    started = time.monotonic()
    result = call(*args, **kw)
    elapsed = time.monotonic() - started
    stats.slowest = max(stats.slowest, elapsed)
    if elapsed > DEADLINE:
        raise Failure(f"{what} took {elapsed:.1f} s (deadline {DEADLINE:g} s)")
    return result


def fuzz_decode(seconds: float, seed: int) -> Stats:
    """Decode directly, then the engine with the default detectors, on one memory state."""
    rng = random.Random(seed)
    seeds = corpus()
    engine = Engine(MemoryState(), default_detectors())
    stats = Stats()
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        case = mutant(rng, seeds) if stats.runs >= len(seeds) else seeds[stats.runs]
        stats.runs += 1
        try:
            try:
                decoded = _timed(
                    stats,
                    "decode",
                    decode,
                    case.signal,
                    case.body,
                    json_format=case.json_format,
                )
            except MalformedRequest:
                stats.malformed += 1
                continue
            _check_events(decoded.events)
            outcome = _timed(stats, "engine", engine.process, decoded.events)
            for finding in outcome.findings:
                json.dumps(finding.to_json()).encode("utf-8")
            stats.events += len(decoded.events)
            if engine.detector_errors:
                raise Failure("a detector raised (logged above)")
        except Exception as exc:
            raise Failure(_report(case, exc)) from exc
    return stats


def fuzz_app(seconds: float, seed: int) -> Stats:
    """``POST`` mutants to the real app (memory store, default detectors) through httpx's ASGI
    transport, and check that the API still answers."""
    return asyncio.run(_fuzz_app(seconds, seed))


async def _fuzz_app(seconds: float, seed: int) -> Stats:
    import httpx

    from usermon.processor.server import create_app
    from usermon.processor.service import Processor
    from usermon.processor.settings import resolve

    rng = random.Random(seed)
    seeds = corpus()
    settings = resolve({"store": "memory://", "max_body_bytes": 1 << 20}, env={})
    processor = Processor(settings)
    stats = Stats()
    transport = httpx.ASGITransport(app=create_app(processor))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            stop = time.monotonic() + seconds
            while time.monotonic() < stop:
                case = mutant(rng, seeds) if stats.runs >= len(seeds) else seeds[stats.runs]
                stats.runs += 1
                body, headers = case.body, {"Content-Type": JSON if case.json_format else PROTOBUF}
                if rng.random() < 0.05:
                    headers["Content-Type"] = PROTOBUF if case.json_format else JSON
                if rng.random() < 0.2:
                    body = gzip.compress(body)
                    headers["Content-Encoding"] = "gzip"
                    if rng.random() < 0.25:
                        body = mutate_bytes(rng, body, [])
                try:
                    response = await _request(
                        stats, client, "POST", f"/v1/{case.signal}", content=body, headers=headers
                    )
                    if response.status_code not in ALLOWED:
                        raise Failure(f"answered {response.status_code}: {response.text[:300]}")
                    if stats.runs % 25 == 0:
                        await _check_api(client, stats)
                    if processor.engine.detector_errors:
                        raise Failure("a detector raised (logged above)")
                except Exception as exc:
                    raise Failure(_report(Seed(case.signal, case.json_format, body), exc)) from exc
            await _check_api(client, stats)
    finally:
        processor.close()
    return stats


async def _request(stats: Stats, client: Any, method: str, path: str, **kw: Any) -> Any:
    started = time.monotonic()
    try:
        response = await asyncio.wait_for(client.request(method, path, **kw), DEADLINE)
    except TimeoutError:
        raise Failure(f"{method} {path} took more than {DEADLINE:g} s") from None
    stats.slowest = max(stats.slowest, time.monotonic() - started)
    stats.statuses[response.status_code] = stats.statuses.get(response.status_code, 0) + 1
    return response


async def _check_api(client: Any, stats: Stats) -> None:
    users: Any = None
    for path in ("/api/users", "/api/findings", "/healthz"):
        response = await _request(stats, client, "GET", path)
        if response.status_code != 200:
            raise Failure(f"GET {path} answered {response.status_code}: {response.text[:300]}")
        if path == "/api/users":
            users = response.json()
    listed = users.get("users", []) if isinstance(users, dict) else users
    for user in listed[:5] if isinstance(listed, list) else []:
        key = user.get("user_hash") if isinstance(user, dict) else None
        if isinstance(key, str):
            response = await _request(stats, client, "GET", f"/api/users/{quote(key, safe='')}")
            if response.status_code not in (200, 404):
                raise Failure(f"GET /api/users/{key!r} answered {response.status_code}")


def _report(case: Seed, exc: BaseException) -> str:
    detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return (
        f"{detail}\n  input: signal={case.signal} json={case.json_format} "
        f"body (hex, {len(case.body)} bytes)={case.body[:4096].hex()}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="per target")
    parser.add_argument("--seed", type=int, default=None, help="default: a new one, printed")
    parser.add_argument("--target", choices=["app", "decode", "both"], default="both")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    print(f"seed {seed}, {args.seconds:g} s per target", flush=True)
    targets = {"decode": fuzz_decode, "app": fuzz_app}
    for name, run in targets.items():
        if args.target in (name, "both"):
            try:
                stats = run(args.seconds, seed)
            except Failure as failure:
                print(f"{name}: FAILED with seed {seed}\n{failure}", file=sys.stderr)
                return 1
            print(f"{name}: {stats}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
