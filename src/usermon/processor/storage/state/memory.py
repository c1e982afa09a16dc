"""The in-memory :class:`~usermon.processor.storage.state.base.State`: the hot path of one
processor. It owns one insertion-ordered map of keys (windowed counters, distinct sets, counting
maps, records and subject aggregates; what each holds is in ``memory_entries.py``, how it is
written down as snapshot and checkpoint rows in ``memory_rows.py``) and its bounds: expiry by
event time behind the watermark, a cap on keys that drops the least recently touched first
(what a flood creates before what detection keeps: ``memory_evict.py``), caps
on counting-map fields and set members, and a pruning wheel that reduces idle subjects to their
record. docs/processor.md (*Bounded memory*, *An idle user or address keeps its record only*)
says what each bound does and why.
"""

from __future__ import annotations

import itertools
import json
from bisect import insort
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from typing import Any

from usermon.processor.storage.state import memory_rows
from usermon.processor.storage.state.base import (
    ENTRIES_CAP,
    SUBJECT_IDLE_WINDOWS,
    SUBJECT_MAX_SERVICES,
    SUBJECT_MAX_SETS,
    SubjectView,
    entry_json,
)
from usermon.processor.storage.state.memory_entries import (
    _RETENTIONS,
    BUCKETS,
    MAX_MEMBERS,
    SMALL_SET,
    SPARSE_MAX,
    _Counter,
    _counter_read,
    _Distinct,
    _distinct_total,
    _Entry,
    _Fields,
    _Person,
    _promote,
    _prune,
    _Record,
    _retention,
    _set_add,
    _set_read,
    _Sparse,
    _Subject,
)
from usermon.processor.storage.state.memory_evict import KEPT_SHARE, kept
from usermon.processor.storage.state.steps import Step, run_steps

__all__ = [
    "BUCKETS",
    "DEFAULT_MAX_KEYS",
    "FIELDS_PER_KEY",
    "KEPT_SHARE",
    "MAX_MEMBERS",
    "PRUNE_STEP",
    "SMALL_SET",
    "SPARSE_MAX",
    "MemoryState",
]

DEFAULT_MAX_KEYS = 500_000
"""Default cap on keys held at once: a user or an address is one key (about 300-800 bytes), a
detector's counter or set a few hundred (docs/performance.md)."""

FIELDS_PER_KEY = 2
"""The fields of every counting map together are capped at this many per key of the key cap
(1 000 000 at the default cap): deduplication's one field per accepted event within the
lateness, about 150 bytes each, would otherwise grow with the event rate (docs/processor.md)."""

PRUNE_STEP = 1024
"""Keys the pruning wheel looks at, at most, each time the amortized expiry runs (every 64 new
keys): about 0.5 ms here. Looking at each of 500 000 subjects once per idle span takes 31 000
new keys in that span, which a deployment with that many subjects has; with fewer, the wheel
falls behind and idle subjects keep their windowed parts longer, nothing else."""


class MemoryState(memory_rows.SnapshotRows):
    """:class:`~usermon.processor.storage.state.base.State` in one process's memory (not
    thread-safe: the engine drives it from one thread)."""

    def __init__(self, max_keys: int = DEFAULT_MAX_KEYS, *, kept_share: float = KEPT_SHARE) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.max_keys = max_keys
        self._set_kept_share(kept_share)
        self.max_fields = FIELDS_PER_KEY * max_keys
        """Cap on the fields of every counting map together (see :meth:`_trim_fields`)."""
        self.maps_evicted = 0
        """Live counting maps dropped whole because the field cap was reached."""
        self._fields = 0  # fields added since they were last counted: at least their total
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self.watermark = float("-inf")
        """Newest event time seen: keys whose expiry is behind it are gone."""
        self.evicted = 0
        """Live keys dropped because the cap was reached (not counting expiry)."""
        self.pruned = 0
        """Idle subjects whose counters and distinct sets were dropped (their record kept)."""
        self._inserts = 0
        # What changed since the store last wrote it (None: nobody asked, see track_changes).
        self._changed: set[str] | None = None
        self._dropped: set[str] | None = None
        self._idle = 0.0
        """How long a subject stays without events before it is idle: SUBJECT_IDLE_WINDOWS times
        the longest window :meth:`fold_subject` was given (0 before the first: nothing to
        prune)."""
        self._wheel: deque[tuple[float, list[str]]] = deque()
        """The pruning wheel's closed spokes, oldest first: (the watermark it closed at, keys).
        Every key was last folded at or before that watermark when it went in."""
        self._spoke: list[str] = []
        """The open spoke: new subjects' keys, and keys put back by the wheel."""
        self._closed = 0
        """Keys in the closed spokes."""

    # -- housekeeping ------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    def _see(self, t: float) -> None:
        if t > self.watermark:
            self.watermark = t

    def _make_room(self) -> None:
        """Before inserting a key: sweep a couple of expired keys from the front (amortized
        expiry), then evict while the cap is reached (flood-class keys first, least recently
        touched first: ``memory_evict.py``).

        Callers count the insert themselves and call this only when there is work: every 64th
        insert, or at the cap (a method call per new key is measurable on the hot path)."""
        entries = self._entries
        if not self._inserts & 63:  # every 64 new keys, sweep up to 64 expired ones
            mark = self.watermark
            for _ in range(64):
                if not entries:
                    break
                key, entry = next(iter(entries.items()))
                if entry.expires >= mark:
                    break
                del entries[key]
                if self._dropped is not None:
                    self._dropped.add(key)
            if self._idle:
                self._turn_wheel()
        if len(entries) >= self.max_keys:
            self._evict(self.max_keys - self.evict_chunk)

    def _turn_wheel(self) -> None:
        """Close the open spoke, look at up to :data:`PRUNE_STEP` keys of the spokes that are
        due (see the module docstring), and compact the wheel when it holds too many keys that
        left the map."""
        mark = self.watermark
        if self._spoke:
            self._wheel.append((mark, self._spoke))
            self._closed += len(self._spoke)
            self._spoke = []
        wheel = self._wheel
        horizon = mark - self._idle
        if wheel and wheel[0][0] < horizon:
            entries = self._entries
            spoke = self._spoke
            budget = PRUNE_STEP
            while wheel and wheel[0][0] < horizon and budget:
                keys = wheel[0][1]
                n = min(budget, len(keys))
                budget -= n
                self._closed -= n
                for _ in range(n):
                    key = keys.pop()
                    s = entries.get(key)
                    if isinstance(s, _Subject):  # else gone, or another primitive's key now
                        # Not a change for track_changes: no read sees it and the key keeps its
                        # place, so a checkpoint need not write it (a restart prunes it again).
                        if s.last < horizon and _prune(s):
                            self.pruned += 1
                        spoke.append(key)  # looked at again an idle span on: touched or not
                if not keys:
                    wheel.popleft()
        # Keys of subjects evicted or expired stay until their spoke is due, and a key evicted
        # and folded again is in twice: past one and a half keys per key of the map, drop them.
        size = len(self._entries)
        if len(self._spoke) + self._closed > size + (size >> 1) + 4096:
            self._compact_wheel()

    def _compact_wheel(self) -> None:
        """Keep in the wheel only the keys still in the map, each once, in one spoke due as
        soon as its oldest spoke was: looking at a subject early costs a look, no more (it goes
        back in the open spoke unless idle). Filtered in C, about 100 ns a key: under a flood of
        new addresses at the key cap, this is most of what the wheel costs."""
        entries = self._entries
        wheel = self._wheel
        due = wheel[0][0] if wheel else self.watermark
        every = itertools.chain(itertools.chain.from_iterable(k for _, k in wheel), self._spoke)
        alive = list(filter(entries.__contains__, every))
        if len(alive) > len(entries):  # keys in twice: only then is the dict worth building
            alive = list(dict.fromkeys(alive))
        self._wheel = deque([(due, alive)] if alive else [])
        self._closed = len(alive)
        self._spoke = []

    def sweep(self) -> int:
        """Drop every expired key now, and prune every idle subject (keeping its record; see
        :attr:`pruned`); return how many keys were dropped."""
        mark = self.watermark
        dead = [k for k, e in self._entries.items() if e.expires < mark]
        for k in dead:
            del self._entries[k]
        if self._dropped is not None:
            self._dropped.update(dead)
        if self._idle:
            horizon = mark - self._idle
            for s in self._entries.values():
                if isinstance(s, _Subject) and s.last < horizon and _prune(s):
                    self.pruned += 1
        return len(dead)

    def _live(self, key: str) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None and entry.expires < self.watermark:
            del self._entries[key]
            if self._dropped is not None:
                self._dropped.add(key)
            return None
        return entry

    def usage(self) -> dict[str, int]:
        return {
            "keys": len(self),
            "max_keys": self.max_keys,
            "evicted": self.evicted,
            "maps_evicted": self.maps_evicted,
            "kept_overflows": self.kept_surplus_counts,
        }

    def keys(self, prefix: str = "") -> list[str]:
        """Live keys starting with ``prefix`` (for the API's listings; O(keys))."""
        mark = self.watermark
        return [k for k, e in self._entries.items() if k.startswith(prefix) and e.expires >= mark]

    # -- counters ----------------------------------------------------------------------------------

    def _counter(self, key: str, windows: tuple[float, ...]) -> _Counter:
        entries = self._entries
        entry = entries.get(key)
        if entry is not None and entry.__class__ is _Counter:
            entries.move_to_end(key)
            return entry
        if entry is not None:
            del entries[key]  # another primitive used this key before: the newest use wins
        else:
            self._inserts = inserts = self._inserts + 1
            if not inserts & 63 or len(entries) >= self.max_keys:
                self._make_room()
        counter = _Counter(windows)
        entries[key] = counter
        return counter

    def add(self, key: str, t: float, window: float, n: int = 1) -> int:
        if t > self.watermark:
            self.watermark = t
        if self._changed is not None:
            self._changed.add(key)
        entries = self._entries
        c = entries.get(key)
        if c is not None and c.__class__ is _Counter:
            entries.move_to_end(key)
        else:
            c = self._counter(key, (window,))
        assert isinstance(c, _Counter)
        if c.ts is not None:
            windows = c.windows
            if len(windows) == 1 and windows[0] == window:
                total = c.add_all(t, n)[0]
            else:
                c.index(window)
                total = c.add_all(t, n)[c.windows.index(window)]
        else:
            total = c.add_at(c.index(window), t, n)
        if t + c.retention > c.expires:
            c.expires = t + c.retention
        return total

    def add_windows(
        self, key: str, t: float, windows: tuple[float, ...], n: int = 1
    ) -> tuple[int, ...]:
        if t > self.watermark:
            self.watermark = t
        if self._changed is not None:
            self._changed.add(key)
        entries = self._entries
        c = entries.get(key)
        if c is not None and c.__class__ is _Counter:
            entries.move_to_end(key)
        else:
            if c is not None:
                del entries[key]  # another primitive used this key before: the newest use wins
            else:
                self._inserts = inserts = self._inserts + 1
                if not inserts & 63 or len(entries) >= self.max_keys:
                    self._make_room()
            c = entries[key] = _Counter(windows)
        assert isinstance(c, _Counter)
        if c.windows is windows or c.windows == windows:
            out = c.add_all(t, n)
        else:
            for w in windows:
                c.index(w)
            every = c.add_all(t, n)
            out = tuple([every[c.windows.index(w)] for w in windows])
        if t + c.retention > c.expires:
            c.expires = t + c.retention
        return out

    def count(self, key: str, t: float, window: float) -> int:
        entry = self._live(key)
        if entry is None or entry.__class__ is not _Counter:
            return 0
        return entry.read(t, window)

    # -- distinct sets -----------------------------------------------------------------------------

    def add_distinct(self, key: str, member: str, t: float, window: float) -> int:
        if t > self.watermark:
            self.watermark = t
        if self._changed is not None:
            self._changed.add(key)
        entries = self._entries
        d = entries.get(key)
        if d.__class__ is _Distinct:
            entries.move_to_end(key)
        else:
            if d is not None:
                del entries[key]
            else:
                self._inserts = inserts = self._inserts + 1
                if not inserts & 63 or len(entries) >= self.max_keys:
                    self._make_room()
                if window > 0:  # a new set: its one member, inside its window
                    d = entries[key] = _Distinct(window)
                    d.members = None
                    d.solo = member
                    d.solo_t = t
                    d.expires = t + window
                    return 1
            d = entries[key] = _Distinct(window)
            d.ordered, d.newest = True, float("-inf")
        assert isinstance(d, _Distinct)
        if window > d.window:
            d.window = window
        members = d.members
        if members is None:
            if member == d.solo:  # still one member: what the dict below would do, in place
                if d.solo_t < t:
                    d.solo_t = t
                if t + d.window > d.expires:
                    d.expires = t + d.window
                if window == d.window and d.overflow is None:
                    return 1
                return _distinct_total(d, t, window)
            members = d.members = d.all_members()  # a second member: the dict from now on
            d.ordered, d.newest = True, d.solo_t
            d.solo = None
        previous = members.pop(member, None)
        seen = members[member] = t if previous is None or previous < t else previous
        if seen >= d.newest:
            d.newest = seen
        else:
            d.ordered = False
        n = len(members)
        if n > 1:
            # Members are (mostly) in time order: drop the ones that left the longest window.
            horizon = t - d.window
            while members:
                oldest = next(iter(members))
                if members[oldest] > horizon:
                    break
                del members[oldest]
            n = len(members)
            if n > MAX_MEMBERS:
                oldest = next(iter(members))
                seen = members.pop(oldest)
                if d.overflow is None:
                    d.overflow = _Counter((d.window,))
                d.overflow.add_all(seen, 1)
                n -= 1
        if t + d.window > d.expires:
            d.expires = t + d.window
        if window == d.window and d.overflow is None:
            return n  # every member left is inside the window (trimmed above)
        return _distinct_total(d, t, window)

    def distinct_count(self, key: str, t: float, window: float) -> int:
        entry = self._live(key)
        if entry is None or entry.__class__ is not _Distinct:
            return 0
        return _distinct_total(entry, t, window)

    def distinct_members(self, key: str, t: float, window: float, limit: int = 64) -> list[str]:
        entry = self._live(key)
        if entry is None or entry.__class__ is not _Distinct:
            return []
        horizon = t - window
        recent = [(seen, m) for m, seen in entry.all_members().items() if horizon < seen <= t]
        recent.sort(reverse=True)
        return [m for _, m in recent[:limit]]

    # -- counting maps -----------------------------------------------------------------------------

    def _fields_at(self, key: str, t: float, ttl: float) -> _Fields:
        """The counting map at ``key`` (created if new, replacing another primitive's key),
        moved to the LRU end and kept ``ttl`` past ``t``: the one lookup both increments share."""
        if t > self.watermark:
            self.watermark = t
        if self._changed is not None:
            self._changed.add(key)
        entries = self._entries
        f = entries.get(key)
        if f is not None and f.__class__ is _Fields:
            entries.move_to_end(key)
        else:
            if f is not None:
                del entries[key]
            else:
                self._inserts = inserts = self._inserts + 1
                if not inserts & 63 or len(entries) >= self.max_keys:
                    self._make_room()
            f = entries[key] = _Fields()
        assert isinstance(f, _Fields)
        if t + ttl > f.expires:
            f.expires = t + ttl
        return f

    def apply(self, steps: Sequence[Step]) -> list[Any]:
        return run_steps(self, steps)

    def incr_field(self, key: str, field: str, t: float, ttl: float, n: int = 1) -> int:
        values = self._fields_at(key, t, ttl).values
        previous = values.get(field)
        value = values[field] = (previous or 0) + n
        if previous is None:
            self._fields += 1
            if self._fields > self.max_fields:
                self._trim_fields(key)
        return value

    def fields(self, key: str) -> dict[str, int]:
        entry = self._live(key)
        if entry is None or entry.__class__ is not _Fields:
            return {}
        return dict(entry.values)

    # -- batched counting maps ---------------------------------------------------------------------

    def incr_fields(self, key: str, fields: Mapping[str, int], t: float, ttl: float) -> list[int]:
        if not fields:
            return []
        # Exactly what one incr_field per field does, with one lookup and one LRU move.
        values = self._fields_at(key, t, ttl).values
        before = len(values)
        out = []
        for field, n in fields.items():
            value = values[field] = values.get(field, 0) + n
            out.append(value)
        if len(values) > before:
            self._fields += len(values) - before
            if self._fields > self.max_fields:
                self._trim_fields(key)
        return out

    def _trim_fields(self, keep: str) -> None:
        """The fields added since the last count passed :attr:`max_fields`: count the fields of
        every counting map held, and if they are over nine tenths of the cap, drop whole maps,
        least recently touched first (never ``keep``, the one being written, which alone may
        exceed the cap; flood-class maps before kept ones), down to eight tenths.
        Deduplication keeps a field per accepted event within the lateness, so at a high enough
        rate its oldest minutes go first: memory stays bounded, and a duplicate of an event
        that old is no longer recognized. Counting only
        here keeps the hot path free of bookkeeping; the margin keeps counts rare (at least a
        fifth of the cap's new fields between two)."""
        entries = self._entries
        total = self._count_fields()
        if total > self.max_fields * 9 // 10:
            target = self.max_fields * 8 // 10
            victims: list[tuple[str, _Fields]] = []
            # Flood-class maps first (deduplication's); kept ones (risk profiles, the
            # population) only if those are not enough. No kept class: one pass over all.
            for take in (False, True) if self.kept_room else (None,):
                for key, entry in entries.items():
                    if total <= target:
                        break
                    if entry.__class__ is _Fields and key != keep:
                        assert isinstance(entry, _Fields)
                        if take is not None and kept(key, entry) is not take:
                            continue
                        victims.append((key, entry))
                        total -= len(entry.values)
            mark = self.watermark
            for key, entry in victims:
                del entries[key]
                if entry.expires >= mark:
                    self.maps_evicted += 1
                if self._dropped is not None:
                    self._dropped.add(key)
        self._fields = total

    # -- records -----------------------------------------------------------------------------------

    def get(self, key: str) -> dict[str, Any] | None:
        entry = self._live(key)
        if entry is None or entry.__class__ is not _Record:
            return None
        return dict(entry.value)

    def put(self, key: str, value: Mapping[str, Any], t: float, ttl: float) -> None:
        if t > self.watermark:
            self.watermark = t
        if self._changed is not None:
            self._changed.add(key)
        entries = self._entries
        entry = entries.get(key)
        if entry.__class__ is _Record:
            entries.move_to_end(key)
            assert isinstance(entry, _Record)
            entry.value = dict(value)
            entry.expires = t + ttl
            return
        if entry is not None:
            del entries[key]
        else:
            self._inserts = inserts = self._inserts + 1
            if not inserts & 63 or len(entries) >= self.max_keys:
                self._make_room()
        entries[key] = _Record(dict(value), t + ttl)

    def open_episode(
        self, key: str, opening: Mapping[str, Any], t: float, gap: float, ttl: float
    ) -> tuple[dict[str, Any], bool]:
        # Atomic as every step here is: one thread runs the engine.
        record = self.get(key)
        opened = record is None or t - float(record["last"]) > gap
        if record is None or opened:
            record = {**opening, "last": t}
        elif t > float(record["last"]):
            record["last"] = t
        self.put(key, record, max(t, float(record["last"])), ttl)
        return dict(record), opened

    def keep(self, key: str, field: str, value: Mapping[str, Any], t: float, ttl: float) -> None:
        kept = self.get(key) or {}
        kept[field] = dict(value)
        self.put(key, kept, t, ttl)

    def kept(self, key: str) -> dict[str, dict[str, Any]]:
        return self.get(key) or {}

    def drop(self, key: str) -> None:
        if self._entries.pop(key, None) is not None and self._dropped is not None:
            self._dropped.add(key)

    # -- windowed lists ----------------------------------------------------------------------------
    # A record holding ``(time, entry JSON)`` pairs: one step in this process is atomic anyway,
    # and a record is what snapshots, checkpoints and the key cap already know.

    def append_entry(
        self, key: str, entry: Sequence[Any], t: float, window: float, cap: int
    ) -> None:
        if not 1 <= cap <= ENTRIES_CAP:
            raise ValueError(f"a windowed list keeps 1 to {ENTRIES_CAP} entries, not {cap!r}")
        text = entry_json(entry)
        held = self._live(key)
        listed = held.value.get("entries", ()) if isinstance(held, _Record) else ()
        kept = [e for e in listed if t - e[0] <= window]
        kept.append((float(t), text))
        before = held.expires if isinstance(held, _Record) else t
        self.put(key, {"entries": kept[-cap:]}, t, window)
        if before > t + window:  # a late entry does not shorten the life of newer ones
            self._entries[key].expires = before

    def entries(self, key: str) -> list[tuple[float, list[Any]]]:
        held = self._live(key)
        if not isinstance(held, _Record):
            return []
        return [(when, json.loads(text)) for when, text in held.value.get("entries", ())]

    def remove_entries(self, key: str, entries: Sequence[tuple[float, Sequence[Any]]]) -> None:
        held = self._live(key)
        if not entries or not isinstance(held, _Record):
            return
        gone = {(float(when), entry_json(entry)) for when, entry in entries}
        listed = held.value.get("entries", ())
        kept = [e for e in listed if (e[0], e[1]) not in gone]
        if len(kept) < len(listed):
            held.value = {"entries": kept}
            self._entries.move_to_end(key)  # a write, like any other (checkpoints rely on it)
            if self._changed is not None:
                self._changed.add(key)

    # -- subject aggregates ------------------------------------------------------------------------

    _subject_windows: tuple[float, ...] = ()
    """The windows of the last :meth:`fold_subject` (set per instance), and their longest."""
    _subject_retention = 0.0

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
        # Hot path (two calls per event): one map lookup, one LRU move, then attribute work on
        # one object; nothing allocated for an event that changes no shape. Arguments are
        # checked before anything changes, so a bad call leaves no half-folded event.
        if not 0 <= outcome <= 2:
            raise ValueError(f"outcome must be 0, 1 or 2, not {outcome!r}")
        if len(members) > SUBJECT_MAX_SETS:
            raise ValueError(f"a subject keeps at most {SUBJECT_MAX_SETS} distinct sets")
        if windows is self._subject_windows:  # the same tuple every call: no hashing it
            retention = self._subject_retention
        else:
            retention = _RETENTIONS.get(windows) or _retention(windows)
            self._subject_windows, self._subject_retention = windows, retention
            if SUBJECT_IDLE_WINDOWS * retention > self._idle:
                self._idle = SUBJECT_IDLE_WINDOWS * retention
        if t > self.watermark:
            self.watermark = t
        if self._changed is not None:
            self._changed.add(key)
        n = len(members)
        person = (
            n > 1
            or label is not None
            or primary_key is not None
            or service is not None
            or success is not None
        )
        entries = self._entries
        s = entries.get(key)
        if isinstance(s, _Subject):
            entries.move_to_end(key)
            if t > s.last:
                s.last = t
            elif t < s.first:
                s.first = t
            if person and s.__class__ is _Subject:
                s = entries[key] = _promote(s)  # an existing key keeps its place
        else:
            if s is not None:
                del entries[key]  # another primitive used this key before: the newest use wins
            else:
                self._inserts = inserts = self._inserts + 1
                if not inserts & 63 or len(entries) >= self.max_keys:
                    self._make_room()
            s = entries[key] = _Person(t) if person else _Subject(t)
            self._spoke.append(key)  # the pruning wheel's, from now on
        expires = t + (ttl if ttl > retention else retention)
        if expires > s.expires:
            s.expires = expires
        # The counter of this outcome.
        if outcome == 0:
            c = s.ok
        elif outcome == 1:
            c = s.fail
        else:
            c = s.signup
        if c is None:
            grown: _Sparse = t  # one event: its time alone, the float the record already holds
        elif isinstance(c, list):
            if t >= c[-1]:
                c.append(t)
            else:
                insort(c, t)
            horizon = c[-1] - retention
            while c[0] <= horizon:
                del c[0]
            if len(c) <= SPARSE_MAX:
                grown = None
            else:
                grown = _Counter(windows)
                grown.ts = c
                grown._densify()
        elif isinstance(c, _Counter):
            if c.windows is not windows and c.windows != windows:
                for w in windows:
                    c.index(w)
            c.add_all(t, 1)
            grown = None
        else:  # a second event: the sorted list from now on
            grown = [c, t] if t >= c else [t, c]
            if grown[0] <= grown[1] - retention:
                del grown[0]
        if grown is not None:
            if outcome == 0:
                s.ok = grown
            elif outcome == 1:
                s.fail = grown
            else:
                s.signup = grown
        # The distinct sets, over the longest window.
        if n:
            m = members[0]
            if m is not None:
                s.s0 = _set_add(s.s0, m, t, retention)
        if not isinstance(s, _Person):
            return
        if n > 1:
            m = members[1]
            if m is not None:
                s.s1 = _set_add(s.s1, m, t, retention)
            if n > 2:
                m = members[2]
                if m is not None:
                    s.s2 = _set_add(s.s2, m, t, retention)
                if n > 3:
                    m = members[3]
                    if m is not None:
                        s.s3 = _set_add(s.s3, m, t, retention)
        # The record.
        if label is not None:
            s.label = label
        if primary_key is not None:
            s.pk = primary_key
        if service:
            services = s.services
            if services is None:
                s.services = service
            elif isinstance(services, str):
                if services != service:
                    s.services = (services, service)
            elif service not in services and len(services) < SUBJECT_MAX_SERVICES:
                s.services = (*services, service)
        if success is not None:
            ok_t = s.ok_t
            if ok_t is None or ok_t <= t:
                s.ok_t = t
                s.ok_ip, s.ok_ua = success

    def read_subject(
        self,
        key: str,
        t: float | None,
        windows: tuple[float, ...] = (),
        limits: tuple[int, ...] = (),
    ) -> SubjectView | None:
        s = self._live(key)
        if not isinstance(s, _Subject):
            return None
        now = s.last if t is None else t
        counts = tuple(
            tuple([_counter_read(c, now, w) for w in windows]) for c in (s.ok, s.fail, s.signup)
        )
        if len(limits) > SUBJECT_MAX_SETS:
            raise ValueError(f"a subject keeps at most {SUBJECT_MAX_SETS} distinct sets")
        if limits and not windows:
            raise ValueError("reading a subject's distinct sets needs at least one window")
        sets = (s.s0, s.s1, s.s2, s.s3) if isinstance(s, _Person) else (s.s0, None, None, None)
        members: list[tuple[str, ...]] = []
        distinct: list[tuple[int, ...]] = []
        for value, limit in zip(sets, limits, strict=False):
            listed, inside = _set_read(value, now, windows, limit)
            members.append(listed)
            distinct.append(inside)
        if not isinstance(s, _Person):
            return SubjectView(
                s.first, s.last, None, None, (), None, counts, (*members,), (*distinct,)
            )
        services = s.services
        return SubjectView(
            first_seen=s.first,
            last_seen=s.last,
            label=s.label,
            primary_key=s.pk,
            services=()
            if services is None
            else (services,)
            if isinstance(services, str)
            else services,
            last_success=None if s.ok_t is None else (s.ok_t, s.ok_ip, s.ok_ua),
            counts=counts,
            members=tuple(members),
            distinct=tuple(distinct),
        )
