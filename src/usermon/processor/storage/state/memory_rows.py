"""How a :class:`~usermon.processor.storage.state.memory.MemoryState` is written down and read
back: one row per key, and the upgrade of snapshots written by older versions.

A row is plain tuples, lists, dicts, strings and numbers, so that :mod:`marshal` writes it (an
order of magnitude faster than pickling the objects): ``(key, kind, ...)``, kind 0 a counter, 1 a
distinct set, 2 a record, 3 a counting map, 4 a subject aggregate. The state's snapshot
(:meth:`MemoryState.dump`) is all its rows; its incremental checkpoints
(:meth:`MemoryState.changes`) the rows of the keys changed since the last. Rows are the store's
own data, never outside input. A snapshot of version 2 (before subject aggregates) is folded into
subjects on load (:func:`upgrade_v2`).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from usermon.processor.storage.state.base import SUBJECT_MAX_SETS
from usermon.processor.storage.state.memory_entries import (
    _NONE,
    SMALL_SET,
    _Counter,
    _Distinct,
    _Entry,
    _Fields,
    _Person,
    _Record,
    _Set,
    _Sparse,
    _Subject,
)

__all__ = ["Sharing", "entry", "row", "upgrade_v2"]

_LEGACY_SUBJECTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("u:", (":ips", ":nets", ":uas")),
    ("ip:", (":users",)),
)
"""How aggregation kept a user (``u:<hash>``) and an address (``ip:<address>``) before subject
aggregates (snapshot version 2): a record at the key, one counter per outcome at ``<key>:ok``,
``:fail`` and ``:signup``, and distinct sets at these suffixes, in the order of the subject's sets.
Loading such a snapshot folds each into one subject (:func:`upgrade_v2`)."""


class Sharing:
    """While loading rows one by one: one object for equal strings and window tuples that the
    live state shared (a user agent, a service, a window tuple), as one marshal of the whole
    state would have kept them."""

    __slots__ = ("strings", "windows")

    def __init__(self) -> None:
        self.strings: dict[str, str] = {}
        self.windows: dict[tuple[float, ...], tuple[float, ...]] = {}

    def text(self, value: Any) -> Any:
        if value.__class__ is not str or len(self.strings) >= 65_536:
            return value
        return self.strings.setdefault(value, value)

    def counter(self, c: _Sparse) -> None:
        if isinstance(c, _Counter):
            c.windows = self.windows.setdefault(c.windows, c.windows)

    def entry(self, row: tuple[Any, ...]) -> _Entry:
        """:func:`entry` of ``row``, its shareable parts shared."""
        e = entry(row)
        if isinstance(e, _Counter):
            self.counter(e)
        elif isinstance(e, _Subject):
            self.counter(e.ok)
            self.counter(e.fail)
            self.counter(e.signup)
            if isinstance(e, _Person):
                text = self.text
                e.pk = text(e.pk)
                e.ok_ua = text(e.ok_ua)
                services = e.services
                if isinstance(services, tuple):
                    e.services = tuple([text(v) for v in services])
                else:
                    e.services = text(services)
                if isinstance(e.s2, tuple):  # the user agents: (agent, time, agent, time, ...)
                    e.s2 = tuple([text(v) for v in e.s2])
        return e


def _counter_row(c: _Counter) -> tuple[Any, ...]:
    return (c.expires, c.windows, c.retention, c.ts, c.res, c.heads, c.totals, c.buckets)


def _counter_from(row: tuple[Any, ...]) -> _Counter:
    c = _Counter.__new__(_Counter)
    c.expires, c.windows, c.retention, c.ts, c.res, c.heads, c.totals, c.buckets = row
    if c.ts is not None:
        c.res = c.heads = c.totals = c.buckets = _NONE
    return c


def row(key: str, e: _Entry) -> tuple[Any, ...]:
    if isinstance(e, _Subject):
        return _subject_row(key, e)
    if isinstance(e, _Counter):
        return (key, 0, _counter_row(e))
    if isinstance(e, _Distinct):
        overflow = None if e.overflow is None else _counter_row(e.overflow)
        return (key, 1, e.expires, e.window, e.all_members(), overflow)
    if isinstance(e, _Record):
        return (key, 2, e.expires, e.value)
    return (key, 3, e.expires, e.values)


def entry(row: tuple[Any, ...]) -> _Entry:
    kind = row[1]
    if kind == 4:
        return _subject_from(row)
    if kind == 0:
        return _counter_from(row[2])
    if kind == 1:
        d = _Distinct(row[3])
        d.expires, d.members = row[2], row[4]
        if len(d.members) == 1:
            [(d.solo, d.solo_t)] = d.members.items()
            d.members = None
        d.overflow = None if row[5] is None else _counter_from(row[5])
        return d
    if kind == 2:
        return _Record(row[3], row[2])
    f = _Fields()
    f.expires, f.values = row[2], row[3]
    return f


def _sparse_row(c: _Sparse) -> Any:
    """A counter as marshal keeps it: None, one time, the sparse list, or a dense counter's
    tuple."""
    return _counter_row(c) if isinstance(c, _Counter) else c


def _sparse_from(row: Any) -> _Sparse:
    return _counter_from(row) if isinstance(row, tuple) else row


def _set_row(value: _Set) -> Any:
    """A set as marshal keeps it: None, the flat tuple, or ``[window, members, overflow]``."""
    if value is None or isinstance(value, tuple):
        return value
    overflow = None if value.overflow is None else _counter_row(value.overflow)
    return [value.window, value.all_members(), overflow]


def _set_from(row: Any) -> _Set:
    if row is None or isinstance(row, tuple):
        return row
    window, members, overflow = row
    d = _Distinct(window)
    d.solo = None
    d.members = members
    d.overflow = None if overflow is None else _counter_from(overflow)
    return d


def _subject_row(key: str, s: _Subject) -> tuple[Any, ...]:
    """``(key, 4, expires, first, last, ok, fail, signup, s0)``, and for a :class:`_Person`
    also ``label, pk, services, (ok_t, ok_ip, ok_ua) or None, s1, s2, s3``."""
    row = (
        key,
        4,
        s.expires,
        s.first,
        s.last,
        _sparse_row(s.ok),
        _sparse_row(s.fail),
        _sparse_row(s.signup),
        _set_row(s.s0),
    )
    if not isinstance(s, _Person):
        return row
    success = None if s.ok_t is None else (s.ok_t, s.ok_ip, s.ok_ua)
    return (
        *row,
        s.label,
        s.pk,
        s.services,
        success,
        _set_row(s.s1),
        _set_row(s.s2),
        _set_row(s.s3),
    )


def _subject_from(row: tuple[Any, ...]) -> _Subject:
    s = _Subject.__new__(_Subject) if len(row) == 9 else _Person.__new__(_Person)
    s.expires, s.first, s.last = row[2:5]
    s.ok, s.fail, s.signup = (_sparse_from(r) for r in row[5:8])
    s.s0 = _set_from(row[8])
    if isinstance(s, _Person):
        s.label, s.pk, s.services, success = row[9:13]
        s.ok_t, s.ok_ip, s.ok_ua = (None, None, None) if success is None else success
        s.s1, s.s2, s.s3 = (_set_from(r) for r in row[13:16])
    return s


def _legacy_set(part: _Entry | None) -> _Set:
    if not isinstance(part, _Distinct):
        return None
    if part.members is None:
        return (part.solo, part.solo_t)
    if len(part.members) <= SMALL_SET and part.overflow is None:
        return tuple(x for item in part.members.items() for x in item)
    part.solo = None
    return part


def upgrade_v2(entries: OrderedDict[str, _Entry]) -> int:
    """Fold the previous version's per-user and per-address keys (:data:`_LEGACY_SUBJECTS`)
    into one subject each, in the LRU place of its record; return how many were folded.

    Every profile survives the upgrade with its first/last seen, label, services and last
    success, and its counters and distinct sets as they were. Parts whose record was already
    gone (evicted) stay as they are and expire within a day; nothing reads them."""
    folded = 0
    for key, entry in list(entries.items()):
        if not isinstance(entry, _Record):
            continue
        suffixes = next((sets for head, sets in _LEGACY_SUBJECTS if key.startswith(head)), None)
        if suffixes is None:
            continue
        v = entry.value
        person = len(suffixes) > 1 or any(
            v.get(field) is not None for field in ("label", "primary_key", "services", "ok_time")
        )
        s = _Person(float(v["first_seen"])) if person else _Subject(float(v["first_seen"]))
        s.last = float(v["last_seen"])
        s.expires = entry.expires
        if isinstance(s, _Person):
            s.label = v.get("label")
            s.pk = v.get("primary_key")
            services = tuple(v.get("services") or ())
            s.services = None if not services else services[0] if len(services) == 1 else services
            if "ok_time" in v:
                s.ok_t, s.ok_ip, s.ok_ua = v["ok_time"], v.get("ok_ip"), v.get("ok_ua")
        counters: list[_Sparse] = []
        for name in ("ok", "fail", "signup"):
            part = entries.pop(f"{key}:{name}", None)
            if isinstance(part, _Counter):
                counters.append(part if part.ts is None else part.ts)
            else:
                counters.append(None)
        s.ok, s.fail, s.signup = counters
        sets = [_legacy_set(entries.pop(key + suffix, None)) for suffix in suffixes]
        s.s0 = sets[0]
        if isinstance(s, _Person):
            sets += [None] * (SUBJECT_MAX_SETS - len(sets))
            s.s1, s.s2, s.s3 = sets[1:]
        entries[key] = s  # an existing key keeps its place in the LRU order
        folded += 1
    return folded
