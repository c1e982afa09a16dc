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

import marshal
from collections import OrderedDict, deque
from collections.abc import Iterable
from typing import Any, TypeVar

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
from usermon.processor.storage.state.memory_evict import KeyCap

__all__ = ["Sharing", "SnapshotRows", "entry", "row", "upgrade_v2"]

_S = TypeVar("_S", bound="SnapshotRows")

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


class SnapshotRows(KeyCap):
    """What :class:`~usermon.processor.storage.state.memory.MemoryState` inherits to be written
    down and read back: whole snapshots (:meth:`dump`, :meth:`load`) and the rows of the keys
    changed since the last checkpoint (:meth:`changes`, :meth:`apply_rows`). It works on the
    state's map and counters, declared here and set by the state's ``__init__``."""

    max_keys: int
    watermark: float
    evicted: int
    _entries: OrderedDict[str, _Entry]
    _changed: set[str] | None
    _dropped: set[str] | None
    _wheel: deque[tuple[float, list[str]]]
    _closed: int
    _fields: int

    def __init__(self, max_keys: int) -> None:
        raise NotImplementedError  # the state's own

    # -- snapshots ---------------------------------------------------------------------------------

    def dump(self) -> bytes:
        """The whole state as bytes, for the store's snapshot. Plain tuples through
        :mod:`marshal`: an order of magnitude faster than pickling the objects."""
        rows = [row(key, entry) for key, entry in self._entries.items()]
        return marshal.dumps((3, self.max_keys, self.watermark, self.evicted, rows))

    @classmethod
    def load(cls: type[_S], data: bytes, max_keys: int | None = None) -> _S:
        """Rebuild a state from :meth:`dump` (the store's own snapshot, never outside input)."""
        version, saved_max, watermark, evicted, rows = marshal.loads(data)  # noqa: S302 - own file
        if version not in (2, 3):  # 2: before subject aggregates, upgraded below
            raise ValueError(f"unknown state snapshot version {version!r}")
        state = cls(max_keys or saved_max)
        state.watermark = watermark
        state.evicted = evicted
        entries = state._entries
        subjects = []
        for row in rows:
            entries[row[0]] = entry(row)
            if row[1] == 4:
                subjects.append(row[0])
        if version == 2:
            upgrade_v2(entries)
            subjects = [key for key, e in entries.items() if isinstance(e, _Subject)]
        if len(entries) > state.max_keys:  # a lower cap than the snapshot's: evict as it would
            state._evict(state.max_keys)
            subjects = [key for key in subjects if key in entries]
        if subjects:  # the wheel is not saved: every subject is looked at from its first turn
            state._wheel.append((float("-inf"), subjects))
            state._closed = len(subjects)
        state._fields = state._count_fields()
        return state

    def _count_fields(self) -> int:
        return sum(len(e.values) for e in self._entries.values() if e.__class__ is _Fields)

    # -- incremental snapshots ---------------------------------------------------------------------

    def track_changes(self, *, dropped: Iterable[str] = ()) -> None:
        """Remember from now on which keys change and which go, for :meth:`changes`: the SQLite
        store's checkpoints write only those, so that a checkpoint costs what changed since the
        last one rather than the size of the state. ``dropped``: keys to report as gone (what
        :meth:`apply_rows` dropped). One set insert per step while on."""
        self._changed = set()
        self._dropped = set(dropped)

    def changes(self) -> list[tuple[str, bytes | None]]:
        """What changed since :meth:`track_changes` or the last :meth:`changes_saved`, as rows
        for :meth:`apply_rows`: first a tombstone ``(key, None)`` for each key dropped since
        (expired or evicted) and not back, then ``(key, row)`` for each key changed and still
        held, least recently touched first. Changes
        nothing: the store calls :meth:`changes_saved` once they are durable, so that a failed
        write is retried in full by the next one."""
        changed, dropped = self._changed, self._dropped
        if changed is None or dropped is None:
            raise RuntimeError("this state does not track changes: call track_changes() first")
        entries = self._entries
        out: list[tuple[str, bytes | None]] = [(key, None) for key in dropped if key not in entries]
        left = sum(1 for key in changed if key in entries)
        newest_first: list[str] = []
        if left:
            # A step moves its key to the end of the map: the changed keys are its tail.
            for key in reversed(entries):
                if key in changed:
                    newest_first.append(key)
                    left -= 1
                    if not left:
                        break
        out += [(key, marshal.dumps(row(key, entries[key]))) for key in reversed(newest_first)]
        return out

    def changes_saved(self) -> None:
        """The changes :meth:`changes` returned are durable: start counting afresh."""
        if self._changed is not None and self._dropped is not None:
            self._changed.clear()
            self._dropped.clear()

    @property
    def pending_changes(self) -> int:
        """Keys changed or dropped since the last :meth:`changes_saved` (0 when not tracking)."""
        return len(self._changed or ()) + len(self._dropped or ())

    def header(self) -> bytes:
        """The state's own fields without its keys, for :meth:`apply_rows`."""
        return marshal.dumps((4, self.watermark, self.evicted))

    def apply_rows(self, header: bytes, rows: Iterable[tuple[str, bytes | None]]) -> list[str]:
        """Bring a state loaded from an older :meth:`dump` up to date: ``header`` and the rows
        :meth:`changes` gave since, in the order they were written (a changed key's row
        replaces it and makes it the most recently touched; a tombstone deletes it). Returns the
        keys this dropped as expired or beyond the cap, for the store to delete in turn. The
        store's own data, never outside input."""
        version, watermark, evicted = marshal.loads(header)  # noqa: S302 - the store's own file
        if version != 4:
            raise ValueError(f"unknown state header version {version!r}")
        self.watermark = max(self.watermark, watermark)
        self.evicted = max(self.evicted, evicted)
        entries = self._entries
        shared = Sharing()
        subjects = []
        for key, blob in rows:
            if blob is None:
                entries.pop(key, None)
                continue
            row = marshal.loads(blob)  # noqa: S302 - the store's own file
            if row[1] == 4 and key not in entries:  # a new subject: the pruning wheel's too
                subjects.append(key)
            entries[key] = shared.entry(row)
            entries.move_to_end(key)
        if subjects:
            self._wheel.appendleft((float("-inf"), subjects))
            self._closed += len(subjects)
        mark = self.watermark
        gone = [key for key, entry in entries.items() if entry.expires < mark]
        for key in gone:
            del entries[key]
        if len(entries) > self.max_keys:
            self._evict(self.max_keys, gone)
        self._fields = self._count_fields()
        return gone
