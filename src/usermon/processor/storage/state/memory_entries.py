"""What a :class:`~usermon.processor.storage.state.memory.MemoryState` holds at each key, and the
operations on one entry that need no map around them.

Each key of the state holds one entry: a sliding-window counter (:class:`_Counter`), a windowed
distinct set (:class:`_Distinct`), a small record (:class:`_Record`), a counting map
(:class:`_Fields`), or a subject aggregate (:class:`_Subject`, :class:`_Person` for a user).
Their names keep the underscore: they are the memory state's own, used by ``memory.py`` (the map
of keys, its bounds and the State steps) and ``memory_rows.py`` (how entries are written down),
never elsewhere.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from typing import Any

__all__ = ["BUCKETS", "MAX_MEMBERS", "SMALL_SET", "SPARSE_MAX"]

BUCKETS = 12
"""Buckets per window: a window of ``w`` seconds is counted at a resolution of ``w / 12``."""

MAX_MEMBERS = 128
"""Members kept per distinct set; beyond, the set's count is an estimate."""

SPARSE_MAX = 16
"""A counter keeps exact event times up to this many events in its longest window."""

_SLOTS = BUCKETS + 1
_NEVER = -(2**62)
_NONE: list[Any] = []  # shared by every sparse counter, never appended to
_RETENTIONS: dict[tuple[float, ...], float] = {}  # validated window tuples -> longest window


class _Counter:
    """Sliding-window counter.

    A counter starts *sparse*: the sorted times of its events, exact over any window and small
    (most users and addresses log in a few times a day). Past :data:`SPARSE_MAX` events it turns
    *dense*: one ring of buckets per window it is read over, constant size however busy it is.
    """

    __slots__ = ("buckets", "expires", "heads", "res", "retention", "totals", "ts", "windows")

    def __init__(self, windows: tuple[float, ...]) -> None:
        # Most counters share a handful of window tuples: validate each tuple once.
        retention = _RETENTIONS.get(windows)
        if retention is None:
            for w in windows:
                if w <= 0:
                    raise ValueError(f"a window must be positive, not {w!r}")
            retention = max(windows)
            if len(_RETENTIONS) < 1024:
                _RETENTIONS[windows] = retention
        self.windows = windows
        self.retention = retention  # how long after its newest event the counter matters
        self.expires = float("-inf")
        self.ts: list[float] | None = []
        # The rings exist only once dense: a sparse counter carries no empty lists.
        self.res: list[float] = _NONE
        self.heads: list[int] = _NONE
        self.totals: list[int] = _NONE
        self.buckets: list[int] = _NONE

    # -- sparse ----------------------------------------------------------------------------------

    def _sparse_add(self, t: float, n: int) -> None:
        ts = self.ts
        assert ts is not None
        if n == 1:
            insort(ts, t)
        else:
            for _ in range(n):
                insort(ts, t)
        horizon = ts[-1] - self.retention
        while ts[0] <= horizon:
            del ts[0]
        if len(ts) > SPARSE_MAX:
            self._densify()

    def _densify(self) -> None:
        ts = self.ts
        assert ts is not None
        self.ts = None
        windows = self.windows
        self.res = [w / BUCKETS for w in windows]
        self.heads = [_NEVER] * len(windows)
        self.totals = [0] * len(windows)
        self.buckets = [0] * (_SLOTS * len(windows))
        for t in ts:
            for i in range(len(windows)):
                self.add_at(i, t, 1)

    # -- windows ---------------------------------------------------------------------------------

    def index(self, window: float) -> int:
        """Ring of ``window``, added (empty) when the counter was not read over it yet."""
        try:
            return self.windows.index(window)
        except ValueError:
            if window <= 0:
                raise ValueError(f"a window must be positive, not {window!r}") from None
            self.windows = (*self.windows, window)
            self.retention = max(self.retention, window)
            if self.ts is None:
                self.res.append(window / BUCKETS)
                self.heads.append(_NEVER)
                self.totals.append(0)
                self.buckets.extend([0] * _SLOTS)
            return len(self.windows) - 1

    def add_at(self, i: int, t: float, n: int) -> int:
        """Dense: add ``n`` at ``t`` to ring ``i``; return the ring's total."""
        idx = int(t // self.res[i])
        head = self.heads[i]
        b = self.buckets
        base = i * _SLOTS
        if idx > head:
            if idx - head >= _SLOTS:
                for p in range(base, base + _SLOTS):
                    b[p] = 0
                self.totals[i] = 0
            else:
                total = self.totals[i]
                for j in range(head + 1, idx + 1):
                    p = base + j % _SLOTS
                    total -= b[p]
                    b[p] = 0
                self.totals[i] = total
            self.heads[i] = idx
        elif head - idx >= _SLOTS:
            return self.totals[i]  # older than this window: it counts only in longer ones
        b[base + idx % _SLOTS] += n
        total = self.totals[i] + n
        self.totals[i] = total
        return total

    def add_all(self, t: float, n: int) -> tuple[int, ...]:
        """Add ``n`` at ``t``; return the total over each window (ending at ``t``)."""
        ts = self.ts
        if ts is not None:
            if n == 1 and (not ts or t >= ts[-1]):
                if not ts:  # a new counter: one event, in every window
                    self.ts = [t]  # sized exactly (append would reserve 4): most stay at one
                    return (1,) * len(self.windows)
                ts.append(t)  # in order, the common case: what insort would do, cheaper
                end = t
                if ts[0] <= end - self.retention:
                    horizon = end - self.retention
                    while ts[0] <= horizon:
                        del ts[0]
                if len(ts) > SPARSE_MAX:
                    self._densify()
                    return tuple(self.totals)
            else:
                self._sparse_add(t, n)
                ts = self.ts
                if ts is None:  # just turned dense, with this event in it
                    return tuple(self.totals)
                end = ts[-1]
            # Like the rings: the total as of the newest event, even when this one is late.
            top = len(ts)
            return tuple([top - bisect_right(ts, end - w) for w in self.windows])
        heads, totals, b = self.heads, self.totals, self.buckets
        out = []
        for i, r in enumerate(self.res):
            idx = int(t // r)
            if idx == heads[i]:  # the common case: two additions
                b[i * _SLOTS + idx % _SLOTS] += n
                totals[i] += n
                out.append(totals[i])
            else:
                out.append(self.add_at(i, t, n))
        return tuple(out)

    def read(self, t: float, window: float) -> int:
        """Total over the window ending at ``t``, without changing anything."""
        ts = self.ts
        if ts is not None:
            return bisect_right(ts, t) - bisect_right(ts, t - window)
        candidates = [i for i, w in enumerate(self.windows) if w >= window]
        if candidates:
            i = min(candidates, key=lambda k: self.windows[k])
            span = -(-window // self.res[i])  # buckets covering the window, rounded up
        else:  # longer than anything kept: the longest ring is all we know
            i = max(range(len(self.windows)), key=lambda k: self.windows[k])
            span = BUCKETS
        res, head, base = self.res[i], self.heads[i], i * _SLOTS
        idx = int(t // res)
        if idx == head and span == BUCKETS:
            return self.totals[i]
        lo = max(idx - int(span), head - BUCKETS)
        hi = min(idx, head)
        b = self.buckets
        return sum(b[base + j % _SLOTS] for j in range(lo, hi + 1))


class _Distinct:
    """Windowed distinct set: member -> newest time seen, oldest-touched first.

    Most sets never see a second member (an address's users, a user's user agents): a set holds
    its only member in ``solo``/``solo_t`` and gets its ``members`` dict (about 190 bytes) with the
    second one."""

    __slots__ = ("expires", "members", "newest", "ordered", "overflow", "solo", "solo_t", "window")

    def __init__(self, window: float) -> None:
        self.window = window
        self.members: dict[str, float] | None = {}
        self.solo: str | None = None
        self.solo_t = 0.0
        self.overflow: _Counter | None = None
        self.expires = float("-inf")
        # While ``ordered``, ``members``' times never decrease in its order (no late event has
        # touched it) and ``newest`` is at least the newest of them: a count then stops at the
        # window's edge instead of reading every member. False is always safe.
        self.ordered = False
        self.newest = float("inf")

    def all_members(self) -> dict[str, float]:
        """Member -> newest time, for reading (a one-member set builds a fresh dict)."""
        members = self.members
        if members is not None:
            return members
        assert self.solo is not None
        return {self.solo: self.solo_t}


class _Record:
    __slots__ = ("expires", "value")

    def __init__(self, value: dict[str, Any], expires: float) -> None:
        self.value = value
        self.expires = expires


class _Fields:
    __slots__ = ("expires", "values")

    def __init__(self) -> None:
        self.values: dict[str, int] = {}
        self.expires = float("-inf")


class _Subject:
    """One address's aggregate (:meth:`MemoryState.fold_subject`), and the base of a user's
    (:class:`_Person`): built small, since there is one per active user and address.

    A counter (``ok``, ``fail``, ``signup``) is None, the time of its one event (most addresses
    and many users never get a second: no list), a sorted list of exact event times while sparse
    (what :class:`_Counter` keeps while sparse, without the object around it), or a dense
    :class:`_Counter` past :data:`SPARSE_MAX` events. A distinct set is None, a flat tuple
    ``(member, newest time, member, newest time, ...)`` oldest-touched first up to
    :data:`SMALL_SET` members (a tuple of strings and floats: no dict, and the garbage collector
    stops tracking it), past that a :class:`_Distinct` with its dict and overflow counter."""

    __slots__ = ("expires", "fail", "first", "last", "ok", "s0", "signup")

    def __init__(self, t: float) -> None:
        self.expires = t
        self.first = t
        self.last = t
        self.ok: _Sparse = None
        self.fail: _Sparse = None
        self.signup: _Sparse = None
        self.s0: _Set = None


class _Person(_Subject):
    """A subject with a record beyond first and last seen, or more than one distinct set (a
    user): the slots an address never needs. ``services`` is None, one string or a tuple; the
    last success is three slots (``ok_t`` None: none yet) rather than a tuple (48 bytes less)."""

    __slots__ = ("label", "ok_ip", "ok_t", "ok_ua", "pk", "s1", "s2", "s3", "services")

    def __init__(self, t: float) -> None:
        self.expires = t
        self.first = t
        self.last = t
        self.ok = None
        self.fail = None
        self.signup = None
        self.s0 = None
        self.label: str | None = None
        self.pk: str | None = None
        self.services: str | tuple[str, ...] | None = None
        self.ok_t: float | None = None
        self.ok_ip: str | None = None
        self.ok_ua: str | None = None
        self.s1: _Set = None
        self.s2: _Set = None
        self.s3: _Set = None


def _prune(s: _Subject) -> bool:
    """Drop the counters and distinct sets of the idle subject ``s``, keeping its record;
    return whether it had any (the wheel looks at pruned subjects again: keep that cheap)."""
    if s.ok is None and s.fail is None and s.signup is None and s.s0 is None:
        if s.__class__ is _Subject:
            return False
        assert isinstance(s, _Person)
        if s.s1 is None and s.s2 is None and s.s3 is None:
            return False
    s.ok = s.fail = s.signup = s.s0 = None
    if isinstance(s, _Person):
        s.s1 = s.s2 = s.s3 = None
    return True


def _promote(s: _Subject) -> _Person:
    """``s`` as a :class:`_Person` (the first fold that brings a record or a second set)."""
    p = _Person(s.first)
    p.expires, p.last = s.expires, s.last
    p.ok, p.fail, p.signup, p.s0 = s.ok, s.fail, s.signup, s.s0
    return p


_Set = tuple[Any, ...] | _Distinct | None
_Sparse = float | list[float] | _Counter | None
_Entry = _Counter | _Distinct | _Record | _Fields | _Subject  # _Person is a _Subject


SMALL_SET = 8
"""A subject's distinct set keeps up to this many members as a flat tuple (smaller than a dict
and rebuilt on change); past that, a dict in the same order and with the same bounds as
:meth:`MemoryState.add_distinct`'s."""


def _distinct_total(d: _Distinct, t: float, window: float) -> int:
    horizon = t - window
    members = d.all_members()
    if not d.ordered or d.members is None:
        inside = sum(1 for seen in members.values() if horizon < seen <= t)
    elif t >= d.newest:  # none newer than t: all but those up to the horizon, a prefix
        inside = len(members)
        for seen in members.values():
            if seen > horizon:
                break
            inside -= 1
    else:  # from the newest back to the horizon
        inside = 0
        for seen in reversed(members.values()):
            if seen <= horizon:
                break
            if seen <= t:
                inside += 1
    # Evicted members are older than the oldest kept one: they can only be inside a window
    # that reaches past it.
    if d.overflow is not None and (not members or members[next(iter(members))] > horizon):
        inside += d.overflow.read(t, window)
    return inside


def _retention(windows: tuple[float, ...]) -> float:
    """The longest of ``windows``, validated once per tuple (as :class:`_Counter` does)."""
    if not windows:
        raise ValueError("a subject needs at least one window")
    for w in windows:
        if w <= 0:
            raise ValueError(f"a window must be positive, not {w!r}")
    retention = max(windows)
    if len(_RETENTIONS) < 1024:
        _RETENTIONS[windows] = retention
    return retention


def _set_add(value: _Set, member: str, t: float, window: float) -> _Set:
    """The distinct set ``value`` with ``member`` seen at ``t``: the same answers as
    :meth:`MemoryState.add_distinct` (newest time per member, oldest-touched first, members that
    left the window dropped from the front, at most :data:`MAX_MEMBERS` then an overflow count)."""
    if value is None:
        return (member, t)
    if value.__class__ is tuple:
        assert isinstance(value, tuple)
        flat: tuple[Any, ...]
        if len(value) == 2:
            if value[0] == member:  # the only member again: the common case
                return value if value[1] >= t else (member, t)
            flat = (value[0], value[1], member, t)
        elif member in value:  # a test, not index's ValueError: a new member is the usual case
            # Members sit at even positions; a float (odd position) never equals a string.
            i = value.index(member)
            seen = value[i + 1]
            flat = (*value[:i], *value[i + 2 :], member, t if seen < t else seen)
        else:
            flat = (*value, member, t)
        horizon = t - window
        if flat[1] <= horizon:
            j = 2
            while flat[j + 1] <= horizon:  # stops at the latest member, seen at t at least
                j += 2
            flat = flat[j:]
        if len(flat) <= 2 * SMALL_SET:
            return flat
        big = _Distinct(window)
        big.solo = None
        big.members = dict(zip(flat[::2], flat[1::2], strict=True))
        return big
    assert isinstance(value, _Distinct)
    members = value.members
    assert members is not None
    previous = members.pop(member, None)
    members[member] = t if previous is None or previous < t else previous
    horizon = t - window
    while members:
        oldest = next(iter(members))
        if members[oldest] > horizon:
            break
        del members[oldest]
    if len(members) > MAX_MEMBERS:
        oldest = next(iter(members))
        seen = members.pop(oldest)
        if value.overflow is None:
            value.overflow = _Counter((window,))
        value.overflow.add_all(seen, 1)
    return value


def _set_read(
    value: _Set, now: float, windows: tuple[float, ...], limit: int
) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Up to ``limit`` members over the longest window, most recent first, and the distinct
    count over each window: what :meth:`MemoryState.distinct_members` and
    :meth:`MemoryState.distinct_count` answer for a set."""
    if value is None:
        return (), (0,) * len(windows)
    if value.__class__ is tuple:
        assert isinstance(value, tuple)
        seen = list(zip(value[1::2], value[::2], strict=True))
        counts = tuple([sum(1 for at, _ in seen if now - w < at <= now) for w in windows])
    else:
        assert isinstance(value, _Distinct)
        seen = [(at, m) for m, at in value.all_members().items()]
        counts = tuple([_distinct_total(value, now, w) for w in windows])
    horizon = now - max(windows)
    recent = sorted(((at, m) for at, m in seen if horizon < at <= now), reverse=True)
    return tuple([m for _, m in recent[: max(limit, 0)]]), counts


def _counter_read(c: _Sparse, now: float, window: float) -> int:
    if c is None:
        return 0
    if isinstance(c, list):
        return bisect_right(c, now) - bisect_right(c, now - window)
    if isinstance(c, _Counter):
        return c.read(now, window)
    return 1 if now - window < c <= now else 0
