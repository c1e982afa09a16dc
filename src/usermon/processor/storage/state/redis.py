"""The engine's :class:`~usermon.processor.storage.state.base.State` in Redis, shared by
processor replicas. It owns how counters, distinct sets, counting maps, records and subject
aggregates are laid out in Redis and the Lua scripts (``lua/*.lua``) that update them: every write
step is one script call or one MULTI/EXEC, so replicas updating one user or address never lose an
update. Windows are bucketed exactly as the memory state's, so both backends give the same
answers; keys expire by Redis TTL (wall time), windows by event time. docs/deploy.md (*Redis*)
gives the key layout, the bounds and the memory it takes.
"""

from __future__ import annotations

import json
import math
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, TypeVar, cast

import msgpack
import redis
from redis.commands.core import Script

from usermon.processor.storage.redis_common import (
    lua_script,
    redis_client,
    unavailable_as_store_error,
)
from usermon.processor.storage.state.base import (
    ENTRIES_CAP,
    SUBJECT_IDLE_WINDOWS,
    SUBJECT_MAX_SERVICES,
    SUBJECT_MAX_SETS,
    SUBJECT_OUTCOMES,
    State,
    SubjectView,
    entry_json,
)
from usermon.processor.storage.state.memory_entries import BUCKETS, SPARSE_MAX
from usermon.processor.storage.state.steps import (
    CLAIMED,
    AddDistinct,
    AddWindows,
    Append,
    Claim,
    Count,
    DistinctCount,
    Episode,
    Fields,
    Fold,
    Get,
    IncrFields,
    Keep,
    Step,
    record_json,
)

_T = TypeVar("_T")


def _packer() -> Callable[[tuple[Any, ...]], bytes] | None:
    """hiredis' command packer (the ``redis`` extra installs hiredis), or None without it."""
    try:
        from hiredis import pack_command
    except ImportError:  # pragma: no cover - the connection's own packer is used then
        return None
    return pack_command


_pack = _packer()

BUCKETS_PER_WINDOW: Final = BUCKETS
"""Buckets a window is cut into, the same as the memory state's (so findings do not depend on
the backend)."""

EXACT_MEMBERS: Final = 128
"""Distinct sets are exact up to this many members in the window (the protocol asks for 64)."""

DEFAULT_PREFIX: Final = "usermon:"

_PACKAGE = "usermon.processor.storage.state"
_CONSTANTS = (
    ("BUCKETS", BUCKETS_PER_WINDOW),
    ("CAP", EXACT_MEMBERS),
    ("SPARSE_MAX", SPARSE_MAX),
    ("MAX_SERVICES", SUBJECT_MAX_SERVICES),
    ("IDLE", SUBJECT_IDLE_WINDOWS),
)
_COMMON = ("common.lua", "steps.lua")
_APPLY = (*_COMMON, "subject.lua")

DEDUPE_CAP: Final = 100_000
"""Fields one dedupe map (a minute of event time) holds at most on Redis: past it, an event is
claimed without being recorded (:attr:`RedisState.unrecorded_claims` counts them), so the maps'
memory stays bounded whatever the rate (docs/deploy.md, *Redis*)."""


def _script(client: redis.Redis, name: str, helpers: tuple[str, ...] = ()) -> Script:
    """The script ``lua/<name>`` (see :mod:`usermon.processor.storage.redis_common`)."""
    return client.register_script(lua_script(_PACKAGE, name, helpers, _CONSTANTS))


def _tag(value: str | None) -> str:
    """An optional string as a script argument: ``-`` for None, ``=value`` otherwise."""
    return "-" if value is None else "=" + value


def _view(reply: Any, windows: tuple[float, ...], limits: tuple[int, ...]) -> SubjectView | None:
    """The :class:`SubjectView` of one subject read's reply (``view`` in subject.lua)."""
    if not reply:
        return None
    if reply[0] == "r":  # the previous version's record: no counters or sets of this layout
        r = json.loads(reply[1])
        ok_time = r.get("ok_time")
        return SubjectView(
            first_seen=r["first_seen"],
            last_seen=r["last_seen"],
            label=r.get("label"),
            primary_key=r.get("primary_key"),
            services=tuple(r.get("services") or ()),
            last_success=None if ok_time is None else (ok_time, r.get("ok_ip"), r.get("ok_ua")),
            counts=tuple((0,) * len(windows) for _ in SUBJECT_OUTCOMES),
            members=tuple(() for _ in limits),
            distinct=tuple((0,) * len(windows) for _ in limits),
        )
    first, last, label, primary_key, ok_time, ok_ip, ok_ua, now_text, n = reply[1:10]
    i = 10 + n
    services = tuple(reply[10:i])
    nw = len(windows)
    counts = []
    for cur in reply[i : i + 3]:
        if cur is None:
            counts.append((0,) * nw)
        elif cur.__class__ is str:
            # A sparse counter's times, in order (the script keeps them so).
            times = list(map(float, cur.split(",")))
            now = float(now_text)
            upto = bisect_right(times, now)
            counts.append(tuple([upto - bisect_right(times, now - w) for w in windows]))
        else:  # a dense counter's counts (integer replies already)
            counts.append(tuple(cur))
    i += 3
    distinct = []
    for _ in limits:
        j = i + nw
        distinct.append(tuple(reply[i:j]))
        i = j
    members = []
    for _ in limits:
        j = i + 1 + reply[i]
        members.append(tuple(reply[i + 1 : j]))
        i = j
    return SubjectView(
        float(first),
        float(last),
        label,
        primary_key,
        services,
        None if ok_time is None else (float(ok_time), ok_ip, ok_ua),
        tuple(counts),
        tuple(members),
        tuple(distinct),
    )


def _count_from_fields(fields: Mapping[str, str], t: float, window: float) -> int:
    """A counter's total over the window ending at ``t``, from its hash (see the module doc)."""
    if not fields:
        return 0
    # The series for this window, else the shortest kept one that spans it, else the longest
    # one kept (the same choice as the memory state's).
    series = sorted({float(f.split(":", 1)[0]) for f in fields})
    longer = [w for w in series if w >= window]
    chosen = longer[0] if longer else series[-1]
    name = repr(chosen)
    res = chosen / BUCKETS_PER_WINDOW
    span = math.ceil(window / res) if longer else BUCKETS_PER_WINDOW
    head = int(fields.get(f"{name}:n", 0))
    idx = math.floor(t / res)
    lo = max(idx - span, head - BUCKETS_PER_WINDOW)
    hi = min(idx, head)
    return sum(int(fields.get(f"{name}:{b}", 0)) for b in range(lo, hi + 1))


_MERGED_PLANS: Final = 32
"""At most this many plans go to Redis as one script (:func:`_merged`)."""


def _merged(plans: Sequence[Sequence[Step]]) -> list[tuple[int, int]]:
    """The slices of ``plans`` that ``apply_many`` sends as one ``apply.lua`` call each: runs of
    consecutive plans without a claim (a segment's risk-profile learnings, its finding episodes
    and appends: one reply per step, whatever the replies), at most :data:`_MERGED_PLANS` of
    them, each other plan alone (a claim may end its plan early). Calling a script costs Redis
    more than the few increments of a success's learning do, so the learnings of a segment go
    as one call rather than one per success; they run in the same order, one after another."""
    groups: list[tuple[int, int]] = []
    start = -1
    for k, steps in enumerate(plans):
        if any(step.__class__ is Claim for step in steps):
            if start >= 0:
                groups.append((start, k))
                start = -1
            groups.append((k, k + 1))
        elif start < 0:
            start = k
        elif k - start == _MERGED_PLANS:
            groups.append((start, k))
            start = k
    if start >= 0:
        groups.append((start, len(plans)))
    return groups


def _raise_first(replies: Sequence[Any]) -> None:
    """Raise the first error among a pipeline's ``replies`` (what ``execute()`` would have)."""
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply


def _fold_args(
    ts: str,
    windows: tuple[float, ...],
    ttl: float,
    outcome: int,
    members: tuple[str | None, ...],
    label: str | None,
    primary_key: str | None,
    service: str | None,
    success: tuple[str | None, str | None] | None,
) -> list[Any]:
    """The fold's arguments up to its windows (subject.lua's ``fold``; ``ts`` the event's time as
    Python spells it), the fold checked first; the caller adds each set's member."""
    if not windows:
        raise ValueError("a subject needs at least one window")
    if outcome not in (0, 1, 2):
        raise ValueError(f"outcome must be 0, 1 or 2, not {outcome!r}")
    if len(members) > SUBJECT_MAX_SETS:
        raise ValueError(f"a subject keeps at most {SUBJECT_MAX_SETS} distinct sets")
    names = _window_names(windows)
    longest = max(windows)
    # Numbers as strings: the script passes them on to Redis, and a Lua number passed to a
    # command costs the server a %.17g formatting.
    return [
        ts,
        str(_ttl(max(ttl, longest + 2 * longest / BUCKETS_PER_WINDOW))),
        _OUTCOMES[outcome],
        _tag(label),
        _tag(primary_key),
        _tag(service or None),
        "-" if success is None else "+",
        _tag(None if success is None else success[0]),
        _tag(None if success is None else success[1]),
        len(names),
        *names,
    ]


def _episode_args(opening: Mapping[str, Any], t: float, gap: float, ttl: float) -> list[str]:
    """episode.lua's arguments after its key: the record to open with, t, the gap, the TTL."""
    return [record_json({**opening, "last": t}), json.dumps(t), repr(gap), str(_ttl(ttl))]


def _episode(reply: list[Any]) -> tuple[dict[str, Any], bool]:
    """An episode step's result from episode.lua's reply."""
    raw, opened = reply
    return cast("dict[str, Any]", json.loads(raw)), bool(int(opened))


def _window_name(window: float) -> str:
    """One spelling per window length, so that a series is found again by any caller."""
    if window <= 0 or not math.isfinite(window):
        raise ValueError(f"window must be a positive number of seconds, not {window!r}")
    return repr(float(window))


_NAMES: dict[tuple[float, ...], list[str]] = {}


def _window_names(windows: tuple[float, ...]) -> list[str]:
    """``_window_name`` of each window (the caller must not change the list): a handful of
    window tuples come back for every event, so each is spelled and checked once."""
    names = _NAMES.get(windows)
    if names is None:
        names = [_window_name(w) for w in windows]
        if len(_NAMES) < 1024:
            _NAMES[windows] = names
    return names


# A plan is packed strictly: a string that is not Unicode text (a lone surrogate) raises here,
# before anything is sent, as its JSON made apply.lua fail. packb rather than one kept Packer,
# which is not safe to share between threads.
_pack_plan: Callable[[list[Any]], bytes] = msgpack.packb

_KEYS_CACHED: Final = 65_536
"""Subjects and distinct sets whose key names a state keeps spelled (then it starts again)."""


_OUTCOMES: Final = ("0", "1", "2")

_INTEGER_REPLIES: Final = frozenset({AddDistinct, Count, DistinctCount})
"""The steps whose reply is one integer, the result as it is."""


def _entries_cap(cap: int) -> int:
    """A windowed list's cap, checked (:data:`ENTRIES_CAP`)."""
    if not 1 <= cap <= ENTRIES_CAP:
        raise ValueError(f"a windowed list keeps 1 to {ENTRIES_CAP} entries, not {cap!r}")
    return cap


def _ttl(seconds: float) -> int:
    return max(1, math.ceil(seconds))


class RedisState:
    """:class:`~usermon.processor.storage.state.base.State` on a Redis server (6.2 or newer).

    ``client`` must decode responses (``decode_responses=True``); :meth:`from_url` makes one.
    ``prefix`` namespaces every key, so several deployments (or tests) can share one server.
    A Redis that does not answer (down, unreachable, timed out) raises
    :class:`StateUnavailable`, a :class:`~usermon.processor.storage.errors.StoreError`, which
    ingest answers with 503; the next call after Redis is back reconnects by itself.
    """

    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_PREFIX) -> None:
        self._redis = client
        self._prefix = prefix
        self._add_windows = _script(client, "add_windows.lua", _COMMON)
        self._add_distinct = _script(client, "add_distinct.lua", _COMMON)
        self._distinct_count = _script(client, "distinct_count.lua", _COMMON)
        self._incr_fields = _script(client, "incr_fields.lua", _COMMON)
        self._apply = _script(client, "apply.lua", (*_APPLY, "episode.lua", "entries.lua"))
        self._fold_subject = _script(client, "fold_subject.lua", _APPLY)
        self._read_subject = _script(client, "read_subject.lua", _APPLY)
        # Key names spelled once per distinct set and subject (a plan names a dozen per event).
        self._distinct_names: dict[str, tuple[list[str], str]] = {}
        self._bases: dict[str, str] = {}
        self.dedupe_cap = DEDUPE_CAP
        self.unrecorded_claims = 0
        """Claims taken without being recorded, their dedupe map being at :attr:`dedupe_cap`."""
        self._open_episode = _script(client, "open_episode.lua", ("episode.lua",))
        self._append_entry = _script(client, "append_entry.lua", ("entries.lua",))

    @classmethod
    def from_url(cls, url: str, prefix: str = DEFAULT_PREFIX, **options: Any) -> RedisState:
        """A state on the server at ``url`` (``redis://[[user]:password@]host[:port][/db]``,
        ``rediss://`` for TLS, ``unix://`` for a socket, ``redis+sentinel://`` for the primary
        that Sentinels name: :func:`~usermon.processor.storage.redis_common.redis_client`)."""
        options.setdefault("decode_responses", True)
        options.setdefault("socket_timeout", 5.0)
        options.setdefault("socket_connect_timeout", 2.0)
        options.setdefault("health_check_interval", 30)
        return cls(redis_client(url, **options), prefix)

    @property
    def client(self) -> redis.Redis:
        return self._redis

    @property
    def prefix(self) -> str:
        return self._prefix

    def _key(self, key: str, kind: str) -> str:
        return f"{self._prefix}{{{key}}}:{kind}"

    # -- counters --------------------------------------------------------------------------------

    def add(self, key: str, t: float, window: float, n: int = 1) -> int:
        return self.add_windows(key, t, (window,), n)[0]

    @unavailable_as_store_error
    def add_windows(
        self, key: str, t: float, windows: tuple[float, ...], n: int = 1
    ) -> tuple[int, ...]:
        if not windows:
            return ()
        names = [_window_name(w) for w in windows]
        totals = self._add_windows(keys=[self._key(key, "c")], args=[repr(float(t)), n, *names])
        return tuple(int(x) for x in cast("list[Any]", totals))

    @unavailable_as_store_error
    def count(self, key: str, t: float, window: float) -> int:
        fields = cast("dict[str, str]", self._redis.hgetall(self._key(key, "c")))
        return _count_from_fields(fields, t, window)

    # -- distinct sets ---------------------------------------------------------------------------

    def _distinct_keys(self, key: str) -> tuple[list[str], str]:
        """The keys of a distinct set's script (sorted set, overflow mark) and its HyperLogLogs'
        prefix (the caller must not change them)."""
        known = self._distinct_names.get(key)
        if known is None:
            known = [self._key(key, "z"), self._key(key, "o")], self._key(key, "h:")
            if len(self._distinct_names) >= _KEYS_CACHED:
                self._distinct_names.clear()
            self._distinct_names[key] = known
        return known

    @unavailable_as_store_error
    def add_distinct(self, key: str, member: str, t: float, window: float) -> int:
        keys, hll_prefix = self._distinct_keys(key)
        _window_name(window)
        result = self._add_distinct(
            keys=keys, args=[member, repr(float(t)), repr(float(window)), hll_prefix]
        )
        return int(cast("int", result))

    @unavailable_as_store_error
    def distinct_count(self, key: str, t: float, window: float) -> int:
        keys, hll_prefix = self._distinct_keys(key)
        _window_name(window)
        result = self._distinct_count(
            keys=keys, args=[repr(float(t)), repr(float(window)), hll_prefix]
        )
        return int(cast("int", result))

    @unavailable_as_store_error
    def distinct_members(self, key: str, t: float, window: float, limit: int = 64) -> list[str]:
        if limit <= 0:
            return []
        members = self._redis.zrevrangebyscore(
            self._key(key, "z"), repr(float(t)), f"({float(t - window)!r}", start=0, num=limit
        )
        return list(cast("list[str]", members))

    # -- counting maps ---------------------------------------------------------------------------

    @unavailable_as_store_error
    def incr_field(self, key: str, field: str, t: float, ttl: float, n: int = 1) -> int:
        # MULTI/EXEC rather than a script: two plain commands cost Redis less than a Lua call,
        # and it is still one round trip and atomic.
        name = self._key(key, "m")
        pipe = self._redis.pipeline(transaction=True)
        pipe.hincrby(name, field, n)
        pipe.expire(name, _ttl(ttl))
        value, _ = pipe.execute()
        return int(value)

    @unavailable_as_store_error
    def fields(self, key: str) -> dict[str, int]:
        raw = cast("dict[str, str]", self._redis.hgetall(self._key(key, "m")))
        return {f: int(v) for f, v in raw.items()}

    # -- batched counting maps -------------------------------------------------------------------

    @unavailable_as_store_error
    def incr_fields(self, key: str, fields: Mapping[str, int], t: float, ttl: float) -> list[int]:
        if not fields:
            return []
        args: list[Any] = [_ttl(ttl)]
        for field, n in fields.items():
            args.append(field)
            args.append(int(n))
        values = self._incr_fields(keys=[self._key(key, "m")], args=args)
        return [int(v) for v in cast("list[Any]", values)]

    # -- records ---------------------------------------------------------------------------------

    @unavailable_as_store_error
    def get(self, key: str) -> dict[str, Any] | None:
        raw = self._redis.get(self._key(key, "r"))
        if raw is None:
            return None
        value = json.loads(cast("str", raw))
        return cast("dict[str, Any]", value)

    @unavailable_as_store_error
    def put(self, key: str, value: Mapping[str, Any], t: float, ttl: float) -> None:
        self._redis.set(
            self._key(key, "r"), json.dumps(dict(value), separators=(",", ":")), ex=_ttl(ttl)
        )

    @unavailable_as_store_error
    def open_episode(
        self, key: str, opening: Mapping[str, Any], t: float, gap: float, ttl: float
    ) -> tuple[dict[str, Any], bool]:
        reply = self._open_episode(
            keys=[self._key(key, "r")], args=_episode_args(opening, t, gap, ttl)
        )
        return _episode(cast("list[Any]", reply))

    # -- kept maps -------------------------------------------------------------------------------

    @unavailable_as_store_error
    def keep(self, key: str, field: str, value: Mapping[str, Any], t: float, ttl: float) -> None:
        name = self._key(key, "k")
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(name, field, record_json(value))
        pipe.expire(name, _ttl(ttl))
        pipe.execute()

    @unavailable_as_store_error
    def kept(self, key: str) -> dict[str, dict[str, Any]]:
        raw = cast("dict[str, str]", self._redis.hgetall(self._key(key, "k")))
        return {f: cast("dict[str, Any]", json.loads(v)) for f, v in raw.items()}

    @unavailable_as_store_error
    def drop(self, key: str) -> None:
        self._redis.unlink(self._key(key, "k"), self._key(key, "r"))

    # -- windowed lists: a list ``p{k}:l`` of "<time> <entry JSON>" items ------------------------

    @unavailable_as_store_error
    def append_entry(
        self, key: str, entry: Sequence[Any], t: float, window: float, cap: int
    ) -> None:
        ts = repr(float(t))
        args: list[Any] = [ts, _window_name(window), _entries_cap(cap), _ttl(window)]
        self._append_entry(keys=[self._key(key, "l")], args=[*args, f"{ts} {entry_json(entry)}"])

    @unavailable_as_store_error
    def entries(self, key: str) -> list[tuple[float, list[Any]]]:
        items = cast("list[str]", self._redis.lrange(self._key(key, "l"), 0, -1))
        out = []
        for item in items:
            ts, _, text = item.partition(" ")
            out.append((float(ts), cast("list[Any]", json.loads(text))))
        return out

    @unavailable_as_store_error
    def remove_entries(self, key: str, entries: Sequence[tuple[float, Sequence[Any]]]) -> None:
        if not entries:
            return
        # MULTI/EXEC of one LREM per entry: atomic, and an item equal to none is left alone.
        name = self._key(key, "l")
        pipe = self._redis.pipeline(transaction=True)
        for t, entry in entries:
            pipe.lrem(name, 0, f"{float(t)!r} {entry_json(entry)}")
        pipe.execute()

    # -- subject aggregates ----------------------------------------------------------------------

    @unavailable_as_store_error
    def fold_subject(
        self,
        key: str,
        t: float,
        windows: tuple[float, ...],
        ttl: float,
        outcome: int,
        members: tuple[str | None, ...] = (),
        *,
        label: str | None = None,
        primary_key: str | None = None,
        service: str | None = None,
        success: tuple[str | None, str | None] | None = None,
    ) -> None:
        # Its own script rather than a plan of one step: the arguments go as redis-py encodes
        # them (a lone surrogate, which a plan's JSON cannot carry, is written as "?" by a client
        # with encoding_errors="replace").
        args = _fold_args(
            repr(float(t)), windows, ttl, outcome, members, label, primary_key, service, success
        )
        self._fold_subject(keys=[], args=[self._base(key), *args, *(_tag(m) for m in members)])

    def _read_subject_args(
        self, key: str, t: float | None, windows: tuple[float, ...], limits: tuple[int, ...]
    ) -> list[Any]:
        """read_subject.lua's arguments."""
        if len(limits) > SUBJECT_MAX_SETS:
            raise ValueError(f"a subject keeps at most {SUBJECT_MAX_SETS} distinct sets")
        if limits and not windows:
            raise ValueError("reading a subject's distinct sets needs at least one window")
        return [
            self._base(key),
            "" if t is None else repr(float(t)),
            len(windows),
            *_window_names(windows),
            *(max(int(limit), 0) for limit in limits),
        ]

    @unavailable_as_store_error
    def read_subject(
        self,
        key: str,
        t: float | None,
        windows: tuple[float, ...] = (),
        limits: tuple[int, ...] = (),
    ) -> SubjectView | None:
        reply = self._read_subject(keys=[], args=self._read_subject_args(key, t, windows, limits))
        return _view(reply, windows, limits)

    # -- several steps at once: one script per plan, plans pipelined ----------------------------

    def _base(self, key: str) -> str:
        """The name every key of ``key`` starts with (``<prefix>{<key>}:``): apply.lua spells a
        subject's and a distinct set's keys from it."""
        base = self._bases.get(key)
        if base is None:
            base = f"{self._prefix}{{{key}}}:"
            if len(self._bases) >= _KEYS_CACHED:
                self._bases.clear()
            self._bases[key] = base
        return base

    def _encode(self, steps: Sequence[Step]) -> bytes:
        """``apply.lua``'s argument for ``steps``: one MessagePack array of flat steps, each
        ``[op, key, args...]``, one argument rather than a few hundred (what each argument costs
        the client is most of a plan's cost on its side); MessagePack rather than JSON, cheaper to
        encode here and to decode in Redis (docs/performance.md, *Scale-out*). A subject or a
        distinct set is named by its keys' common beginning (``_base``): the script spells its
        keys from it, which costs Redis less than decoding each of them (apply.lua lists the
        steps). Times and window lengths go as the text Python spells them, other numbers as
        integers."""
        plan: list[list[Any]] = []
        # An event's steps mostly share its time: spelled once.
        last_t, ts = math.nan, ""
        for step in steps:
            cls = step.__class__
            t = step.t if cls is not Fields and cls is not Get else last_t  # type: ignore[union-attr]
            if t != last_t:
                last_t, ts = t, repr(float(t))
            if cls is AddWindows:
                assert isinstance(step, AddWindows)
                plan.append(
                    [
                        "w",
                        self._base(step.key) + "c",
                        ts,
                        step.n,
                        *_window_names(step.windows),
                    ]
                )
            elif cls is AddDistinct:
                assert isinstance(step, AddDistinct)
                _window_name(step.window)
                plan.append(
                    [
                        "d",
                        self._base(step.key),
                        step.member,
                        ts,
                        repr(float(step.window)),
                    ]
                )
            elif cls is Fold:
                assert isinstance(step, Fold)
                plan.append(self._fold_step(step, ts))
            elif cls is Claim:
                assert isinstance(step, Claim)
                plan.append(
                    [
                        "c",
                        self._base(step.bucket) + "m",
                        _ttl(step.ttl),
                        step.key,
                        self.dedupe_cap,
                        str(step.owner + 1),
                    ]
                )
            elif cls is IncrFields:
                assert isinstance(step, IncrFields)
                args: list[Any] = ["i", self._base(step.key) + "m", str(_ttl(step.ttl))]
                for field, n in step.fields:
                    args += [field, str(int(n))]
                plan.append(args)
            elif cls is Count:
                assert isinstance(step, Count)
                _window_name(step.window)
                plan.append(["n", self._base(step.key) + "c", ts, repr(float(step.window))])
            elif cls is DistinctCount:
                assert isinstance(step, DistinctCount)
                _window_name(step.window)
                plan.append(["k", self._base(step.key), ts, repr(float(step.window))])
            elif cls is Fields:
                assert isinstance(step, Fields)
                plan.append(["f", self._base(step.key) + "m"])
            elif cls is Get:
                assert isinstance(step, Get)
                plan.append(["g", self._base(step.key) + "r"])
            elif cls is Episode:
                assert isinstance(step, Episode)
                args = ["e", self._base(step.key) + "r"]
                args += _episode_args(dict(step.opening), step.t, step.gap, step.ttl)
                plan.append(args)
            elif cls is Keep:
                assert isinstance(step, Keep)
                name = self._base(step.key) + "k"
                plan.append(["p", name, step.field, step.value, str(_ttl(step.ttl))])
            elif cls is Append:
                assert isinstance(step, Append)
                plan.append(
                    [
                        "a",
                        self._base(step.key) + "l",
                        ts,
                        _window_name(step.window),
                        _entries_cap(step.cap),
                        str(_ttl(step.window)),
                        f"{ts} {step.entry}",
                    ]
                )
            else:  # pragma: no cover - Step is a closed union
                raise TypeError(f"not a state step: {step!r}")
        return _pack_plan(plan)

    def _fold_step(self, step: Fold, ts: str) -> list[Any]:
        """A fold as apply.lua's ``s`` step: the subject's base, how many sets are read back
        (-1: the subject is not) and each one's limit, then the fold's arguments (subject.lua);
        ``ts`` is ``repr(float(step.t))``."""
        read = step.read
        out: list[Any] = ["s", self._base(step.key)]
        if read is None:
            out.append(-1)
        else:
            # The read's other arguments are the fold's (apply.lua): only the limits.
            if len(read) != len(step.members):
                raise ValueError("a fold reads back as many sets as it keeps")
            out.append(len(read))
            out += [max(int(limit), 0) for limit in read]
        out += _fold_args(
            ts,
            step.windows,
            step.ttl,
            step.outcome,
            step.members,
            step.label,
            step.primary_key,
            step.service,
            step.success,
        )
        out += [_tag(m) for m in step.members]
        return out

    def _decode(self, steps: Sequence[Step], replies: list[Any]) -> list[Any]:
        out: list[Any] = []
        append = out.append
        # The commonest first: an event's counting steps and folds.
        for step, reply in zip(steps, replies, strict=False):
            cls = step.__class__
            if cls in _INTEGER_REPLIES:
                append(reply)
            elif cls is AddWindows:  # integer replies already
                append(tuple(reply))
            elif cls is Fold:
                read = step.read  # type: ignore[union-attr]
                append(None if read is None else _view(reply, step.windows, read))  # type: ignore[union-attr]
            elif cls is Claim:
                if reply == 2:  # claimed without being recorded: the map is at its cap
                    self.unrecorded_claims += 1
                    reply = CLAIMED
                append(reply)
            elif cls is IncrFields:
                append(list(reply))
            elif cls is Fields:
                append({f: int(v) for f, v in zip(reply[::2], reply[1::2], strict=True)})
            elif cls is Get:
                append(None if reply is None else json.loads(reply))
            elif cls is Episode:
                append(_episode(reply))
            else:  # Keep, Append
                append(None)
        return out

    @unavailable_as_store_error
    def apply(self, steps: Sequence[Step]) -> list[Any]:
        if not steps:
            return []
        reply = self._apply(keys=[], args=[self._encode(steps)])
        return self._decode(steps, cast("list[Any]", reply))

    @unavailable_as_store_error
    def apply_many(
        self,
        plans: Sequence[Sequence[Step]],
        records: Sequence[tuple[str, Mapping[str, Any], float, float]] = (),
    ) -> list[list[Any]]:
        if not plans and not records:
            return []
        commands: list[tuple[Any, ...]] = [
            ("SET", self._key(key, "r"), record_json(value), "EX", _ttl(ttl))
            for key, value, _t, ttl in records
        ]
        # EVALSHA rather than the registered Script, which asks SCRIPT EXISTS before every
        # pipeline (a round trip more per segment); a server that lost the script (restarted,
        # SCRIPT FLUSH) refuses every one of them without running it, so they are sent again
        # once it is loaded.
        sha = self._apply.sha
        groups, encoded = self._encode_many(plans)
        commands += [("EVALSHA", sha, 0, arg) for arg in encoded]
        replies = self._pipeline(commands)
        _raise_first(replies[: len(records)])
        replies = replies[len(records) :]
        missing = [
            k for k, r in enumerate(replies) if isinstance(r, redis.exceptions.NoScriptError)
        ]
        if missing:
            self._redis.script_load(self._apply.script)
            again = self._pipeline([("EVALSHA", sha, 0, encoded[k]) for k in missing])
            for k, reply in zip(missing, again, strict=True):
                replies[k] = reply
        _raise_first(replies)
        return self._decode_many(plans, groups, replies)

    def _encode_many(
        self, plans: Sequence[Sequence[Step]]
    ) -> tuple[list[tuple[int, int]], list[bytes]]:
        """``plans`` as ``apply.lua`` calls: the slices of them each call carries
        (:func:`_merged`) and each call's argument."""
        groups = _merged(plans)
        encoded = [
            self._encode(plans[a] if b - a == 1 else [s for p in plans[a:b] for s in p])
            for a, b in groups
        ]
        return groups, encoded

    def _decode_many(
        self,
        plans: Sequence[Sequence[Step]],
        groups: Sequence[tuple[int, int]],
        replies: Sequence[Any],
    ) -> list[list[Any]]:
        """Each plan's results from the replies of the calls :meth:`_encode_many` made of them."""
        out: list[list[Any]] = []
        for (a, b), reply in zip(groups, replies, strict=True):
            if b - a == 1:
                out.append(self._decode(plans[a], reply))
                continue
            if len(reply) != sum(len(steps) for steps in plans[a:b]):
                raise RuntimeError("apply.lua answered plans sent together with a reply missing")
            at = 0
            for steps in plans[a:b]:
                out.append(self._decode(steps, reply[at : at + len(steps)]))
                at += len(steps)
        return out

    def _pipeline(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Send ``commands`` in one write on a connection of the client's pool and read their
        replies, an error reply as its exception: what ``Pipeline.execute(raise_on_error=
        False)`` returns, for a fraction of its client CPU per command (packed by
        ``hiredis.pack_command`` when hiredis is installed, as the ``redis`` extra installs it,
        else by the connection's own packer; no per-command bookkeeping). A connection that
        failed (timed out, dropped) or whose replies were not all read goes back to the pool
        closed, so the next call reconnects and never reads a stale reply."""
        packed = None if _pack is None else [b"".join(map(_pack, commands))]
        pool = self._redis.connection_pool
        conn: Any = pool.get_connection()  # (redis-py's Connection is not fully typed)
        try:
            conn.send_packed_command(conn.pack_commands(commands) if packed is None else packed)
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(conn.read_response())
                except redis.exceptions.ResponseError as exc:  # read whole: the next follows
                    replies.append(exc)
        except BaseException:
            conn.disconnect()
            raise
        finally:
            pool.release(conn)
        return replies

    # -- batched reads ---------------------------------------------------------------------------

    @unavailable_as_store_error
    def read_batch(self, readers: Sequence[Callable[[State], _T]]) -> list[_T]:
        """Run read-only functions of the state (e.g. :func:`~usermon.processor.aggregation.
        user_profile` for every user a batch touched) with their reads grouped into a few
        pipelined round trips instead of one round trip per read.

        Each function runs against a recording state: the reads it makes are collected, fetched
        together, and the functions run again until every read they make is answered (usually
        three round trips in all: records, then everything that depends on them). The functions
        must be deterministic in what they read and must not write."""
        records: dict[str, dict[str, Any] | None] = {}
        answers: dict[tuple[Any, ...], Any] = {}
        for _ in range(8):
            recorder = _Recorder(records, answers)
            results = [reader(recorder) for reader in readers]
            if recorder.missing_records:
                keys = sorted(recorder.missing_records)
                raw = cast("list[str | None]", self._redis.mget([self._key(k, "r") for k in keys]))
                for key, value in zip(keys, raw, strict=True):
                    records[key] = None if value is None else json.loads(value)
                continue
            if recorder.missing_calls:
                calls = list(recorder.missing_calls)
                pipe = self._redis.pipeline(transaction=False)
                for call in calls:
                    self._queue_read(pipe, call)
                for call, value in zip(calls, pipe.execute(), strict=True):
                    answers[call] = self._answer(call, value)
                continue
            return results
        raise RuntimeError("read_batch: the readers kept asking for new reads")

    def _queue_read(self, pipe: Any, call: tuple[Any, ...]) -> None:
        op, key, *args = call
        if op == "count":
            pipe.hgetall(self._key(key, "c"))
        elif op == "distinct_count":
            t, window = args
            keys, hll_prefix = self._distinct_keys(key)
            self._distinct_count(
                keys=keys, args=[repr(float(t)), repr(float(window)), hll_prefix], client=pipe
            )
        elif op == "distinct_members":
            t, window, limit = args
            pipe.zrevrangebyscore(
                self._key(key, "z"), repr(float(t)), f"({float(t - window)!r}", start=0, num=limit
            )
        elif op == "read_subject":
            self._read_subject(keys=[], args=self._read_subject_args(key, *args), client=pipe)
        else:  # fields
            pipe.hgetall(self._key(key, "m"))

    @staticmethod
    def _answer(call: tuple[Any, ...], value: Any) -> Any:
        op, _key, *args = call
        if op == "count":
            return _count_from_fields(value, args[0], args[1])
        if op == "distinct_count":
            return int(value)
        if op == "distinct_members":
            return list(value)
        if op == "read_subject":
            _t, windows, limits = args
            return _view(value, windows, limits)
        return {f: int(v) for f, v in value.items()}

    # -- housekeeping ----------------------------------------------------------------------------

    @unavailable_as_store_error
    def ping(self) -> bool:
        """True when the server answers (for health checks); raises on connection errors."""
        return bool(self._redis.ping())

    def clear(self) -> int:
        """Delete every key under this state's prefix (tests, ``usermon reset``); returns how
        many. Uses SCAN, so it never blocks the server."""
        deleted = 0
        batch: list[str] = []
        for name in self._redis.scan_iter(match=f"{self._prefix}*", count=1000):
            batch.append(cast("str", name))
            if len(batch) >= 500:
                deleted += int(self._redis.unlink(*batch))
                batch = []
        if batch:
            deleted += int(self._redis.unlink(*batch))
        return deleted


class _Recorder:
    """A read-only :class:`State` that answers from what :meth:`RedisState.read_batch` fetched
    so far, and records what it could not answer (with a neutral value meanwhile)."""

    def __init__(
        self, records: dict[str, dict[str, Any] | None], answers: dict[tuple[Any, ...], Any]
    ) -> None:
        self._records = records
        self._answers = answers
        self.missing_records: set[str] = set()
        self.missing_calls: dict[tuple[Any, ...], None] = {}  # ordered set

    def _read(self, call: tuple[Any, ...], neutral: Any) -> Any:
        if call in self._answers:
            return self._answers[call]
        self.missing_calls[call] = None
        return neutral

    def get(self, key: str) -> dict[str, Any] | None:
        if key in self._records:
            record = self._records[key]
            return None if record is None else json.loads(json.dumps(record))
        self.missing_records.add(key)
        return None

    def count(self, key: str, t: float, window: float) -> int:
        return int(self._read(("count", key, t, window), 0))

    def distinct_count(self, key: str, t: float, window: float) -> int:
        return int(self._read(("distinct_count", key, t, window), 0))

    def distinct_members(self, key: str, t: float, window: float, limit: int = 64) -> list[str]:
        return list(self._read(("distinct_members", key, t, window, limit), []))

    def fields(self, key: str) -> dict[str, int]:
        return dict(self._read(("fields", key), {}))

    def read_subject(
        self,
        key: str,
        t: float | None,
        windows: tuple[float, ...] = (),
        limits: tuple[int, ...] = (),
    ) -> SubjectView | None:
        view: SubjectView | None = self._read(("read_subject", key, t, windows, limits), None)
        return view

    def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("read_batch readers must not write to the state")

    add = add_windows = add_distinct = incr_field = incr_fields = put = _read_only
    fold_subject = apply = open_episode = keep = kept = drop = _read_only
    append_entry = entries = remove_entries = _read_only
