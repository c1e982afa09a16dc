"""The counting step the login detectors share, done once per event.

Brute force, distributed brute force, credential stuffing, password spraying and account takeover
all look at the same few numbers: failures per account+IP pair, per account, per IP and per
network over a few windows, how many distinct accounts an IP failed on, how many sources failed on
an account, and how often a source succeeds. Counting them in each detector would multiply the
State round trips (the processor's budget is a few microseconds per event); instead
:class:`SharedCounts` updates them once per event and hands every detector the same
:class:`Tally`. Writes happen eagerly (every event must be counted); reads that only matter once a
threshold is near (success ratios, a shorter distinct window) are lazy and cached on the tally.

The predicates that say "this tally is an attack of kind X" also live here, so account takeover
can ask whether a source or an account is under attack without re-counting or depending on the
other detectors being enabled.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from usermon.processor.model import Event, Subject
from usermon.processor.network import network_of
from usermon.processor.planning import PlanView
from usermon.processor.rules import Rules
from usermon.processor.storage.state.base import State
from usermon.processor.storage.state.steps import (
    AddDistinct,
    AddWindows,
    Count,
    DistinctCount,
    Fields,
    Step,
)

__all__ = ["SharedCounts", "Tally", "network_of", "profile_key", "subject_for_user"]

# Key prefix of everything detection keeps in State, apart from aggregation's own keys.
PREFIX = "det:"

# How a counting step's result goes into the tally: an int, the first of its windows' counts,
# the counts by window.
_INT, _FIRST, _BY_WINDOW = 0, 1, 2
_PLANS_KEPT = 4096  # events planned whose tally is filled from their plan's results
_MISSING: Any = object()


def profile_key(user_hash: str) -> str:
    """State key of a user's risk profile: a counting map with one field per feature path,
    ``net|<country>|<asn>|<ip>`` and ``agent|<device>|<os>|<browser>|<ua digest>``."""
    return f"{PREFIX}risk:u:{user_hash}"


def subject_for_user(event: Event) -> Subject:
    assert event.user_hash is not None
    return Subject("user", event.user_hash, event.label)


def _windows(*values: float) -> tuple[float, ...]:
    return tuple(sorted(set(values)))


class Tally:
    """The shared numbers for one login event, as seen right after counting it."""

    # Made for every login, and most fields keep their default (a success sets three): the
    # defaults are class attributes, read through until a count sets its own, rather than 19
    # assignments per event (what a dataclass's ``__init__`` does). The two window maps are
    # only ever replaced, never changed in place, so an empty one can be shared.
    event: Event
    state: State
    counts: SharedCounts
    ip: str | None = None
    network: str | None = None
    pair_failures: int = 0  # this account from this IP, brute_force.window
    account_failures: int = 0  # this account from anywhere, distributed_brute_force.window
    account_sources: int = 0  # distinct IPs failing on this account, same window
    ip_failures: Mapping[float, int] = MappingProxyType({})  # by window
    ip_accounts: int = 0  # distinct accounts failed from this IP, password_spraying.window
    network_failures: Mapping[float, int] = MappingProxyType({})
    network_accounts: int = 0
    network_sources: int = 0  # distinct failing addresses in the network, same window
    provider: str | None = None  # "AS<n>" of a hosting, VPN or proxy network
    provider_failures: int = 0  # its failures over password_spraying.provider_window
    provider_accounts: int = 0
    provider_sources: int = 0
    _lazy: dict[str, float] | None = None  # made by the first lazy read (few events have one)
    _profile: dict[str, int] | None = None

    def __init__(self, event: Event, state: State, counts: SharedCounts) -> None:
        self.event = event
        self.state = state
        self.counts = counts

    def profile(self) -> dict[str, int]:
        """The user's risk profile (suspicious_login's per-user histogram) as it stood before
        this event, read once per event whichever detector asks first."""
        if self._profile is None:
            user = self.event.user_hash
            self._profile = self.state.fields(profile_key(user)) if user else {}
        return self._profile

    def usual_address(self) -> bool:
        """Whether the user logged in successfully before from this IP with this country and
        ASN: one lookup in the profile (the path suspicious_login records), where
        :meth:`familiar` walks it. False is "not known so": an address familiar from another
        network, or whose path needed cleaning, reads False here and True there."""
        if self.ip is None:
            return False
        network = self.event.network
        if network is None:
            return f"net|||{self.ip}" in self.profile()
        asn = "" if network.asn is None else str(network.asn)
        return f"net|{network.country or ''}|{asn}|{self.ip}" in self.profile()

    def familiar(self) -> tuple[bool, bool]:
        """Whether the user had logged in successfully before this event from this IP, and
        from this IP's network (its ASN when known, else its IP)."""
        if self.ip is None:
            return False, False
        network = self.event.network
        asn = str(network.asn) if network is not None and network.asn is not None else None
        ip_seen = asn_seen = False
        for name in self.profile():
            if not name.startswith("net|"):
                continue
            parts = name.split("|")
            if parts[-1] == self.ip:
                ip_seen = True
            if asn is not None and len(parts) > 2 and parts[2] == asn:
                asn_seen = True
        return ip_seen, asn_seen or ip_seen

    # -- lazy reads --------------------------------------------------------------------------------

    def ip_accounts_within(self, window: float) -> int:
        """Distinct accounts failed from this IP over a window shorter than spraying's."""
        key = f"ipacc:{window}"
        lazy = self._lazy
        if lazy is None:
            lazy = self._lazy = {}
        if key not in lazy:
            assert self.ip is not None
            lazy[key] = self.state.distinct_count(
                self.counts.ip_key(self.ip, "fa"), self.event.time, window
            )
        return int(lazy[key])

    def success_ratio(self, scope: str, window: float) -> float:
        """Successes / attempts from this ``"ip"`` or ``"network"`` over ``window``."""
        key = f"ratio:{scope}:{window}"
        lazy = self._lazy
        if lazy is None:
            lazy = self._lazy = {}
        if key not in lazy:
            source = self.ip if scope == "ip" else self.network
            failures = (self.ip_failures if scope == "ip" else self.network_failures).get(window, 0)
            assert source is not None
            successes = self.state.count(
                self.counts.source_key(scope, source, "s"), self.event.time, window
            )
            total = successes + failures
            lazy[key] = successes / total if total else 0.0
        return lazy[key]

    def provider_success_ratio(self) -> float:
        """Successes / attempts from this provider over its window."""
        lazy = self._lazy
        if lazy is None:
            lazy = self._lazy = {}
        if "ratio:provider" not in lazy:
            assert self.provider is not None
            window = self.counts.rules.password_spraying.provider_window
            successes = self.state.count(
                self.counts.provider_key(self.provider, "s"), self.event.time, window
            )
            total = successes + self.provider_failures
            lazy["ratio:provider"] = successes / total if total else 0.0
        return lazy["ratio:provider"]

    # -- attack predicates -------------------------------------------------------------------------

    def brute_force(self) -> bool:
        rules = self.counts.rules.brute_force
        return self.pair_failures >= rules.failures

    def distributed_brute_force(self) -> bool:
        rules = self.counts.rules.distributed_brute_force
        if self.account_sources >= rules.rotating_sources:
            return self.account_failures >= rules.rotating_failures
        return self.account_failures >= rules.failures and self.account_sources >= rules.sources

    def credential_stuffing(self) -> bool:
        rules = self.counts.rules.credential_stuffing
        return (
            self.ip is not None
            and self.ip_failures.get(rules.window, 0) >= rules.failures
            and self.ip_accounts >= rules.accounts  # cheap upper bound before the exact read
            and self.ip_accounts_within(rules.window) >= rules.accounts
            and self.success_ratio("ip", rules.window) <= rules.max_success_ratio
        )

    def password_spraying(self, scope: str) -> bool:
        """Whether the ``"ip"``, its ``"network"`` or its ``"provider"`` is spraying."""
        rules = self.counts.rules.password_spraying
        if scope == "provider":
            return (
                self.provider is not None
                and self.provider_accounts >= rules.provider_accounts
                and self.provider_sources >= rules.provider_sources
                and self.provider_failures
                <= rules.max_attempts_per_account * self.provider_accounts
                and self.provider_success_ratio() <= rules.max_success_ratio
            )
        if scope == "ip":
            source, failures, accounts = self.ip, self.ip_failures, self.ip_accounts
        else:
            source, failures, accounts = self.network, self.network_failures, self.network_accounts
        if source is None or accounts < rules.accounts:
            return False
        if scope != "ip" and self.network_sources < rules.network_sources:
            return False  # one busy address is not its network: it is judged at IP scope
        total = failures.get(rules.window, 0)
        burst = failures.get(rules.burst_window, 0)
        return (
            total <= rules.max_attempts_per_account * accounts
            and burst <= rules.max_burst_share * total
            and self.success_ratio(scope, rules.window) <= rules.max_success_ratio
        )


class SharedCounts:
    """Counts each login once into State and returns the :class:`Tally` all detectors read.

    Detectors built together share one instance; the tally of the event being processed is
    cached (per thread) so the second detector asking for it costs nothing.
    """

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        spray = rules.password_spraying
        stuffing = rules.credential_stuffing
        self.pair_window = rules.brute_force.window
        self.account_window = rules.distributed_brute_force.window
        self.ip_windows = _windows(stuffing.window, spray.burst_window, spray.window)
        self.network_windows = _windows(spray.burst_window, spray.window)
        self.success_windows = _windows(stuffing.window, spray.window)
        # The distinct set's window is its retention; shorter windows are read from it.
        self.ip_accounts_window = max(stuffing.window, spray.window)
        self.spray_window = spray.window
        self.prefixes = (spray.ipv4_prefix, spray.ipv6_prefix)
        self.provider_windows = (spray.provider_window,)
        self.provider_categories = frozenset(spray.provider_categories)
        self._reads: list[Callable[[Event], Sequence[Step]]] = []
        self._local = threading.local()

    def declare(self, reads: Callable[[Event], Sequence[Step]]) -> None:
        """Add ``reads(event)``, the steps a detector that reads the tally also reads for an
        event, to the tally's plan: every such detector then declares the one plan, the same
        object for the same event, which the engine takes once (rather than each detector's
        copy of it with its own reads added, each step of each copy hashed again)."""
        self._reads.append(reads)

    # Keys ---------------------------------------------------------------------------------------
    @staticmethod
    def ip_key(ip: str, what: str) -> str:
        return f"{PREFIX}ip:{ip}:{what}"

    @staticmethod
    def source_key(scope: str, source: str, what: str) -> str:
        return f"{PREFIX}{'ip' if scope == 'ip' else 'net'}:{source}:{what}"

    @staticmethod
    def provider_key(provider: str, what: str) -> str:
        return f"{PREFIX}prov:{provider}:{what}"

    @staticmethod
    def pair_key(user_hash: str, ip: str) -> str:
        return f"{PREFIX}p:{user_hash}|{ip}:f"

    @staticmethod
    def user_key(user_hash: str, what: str) -> str:
        return f"{PREFIX}u:{user_hash}:{what}"

    # The plan -----------------------------------------------------------------------------------
    def plan(self, event: Event) -> tuple[Step, ...]:
        """The State steps :meth:`tally` makes for login ``event`` (its counting, the same calls
        :meth:`_count` makes, in order), then the reads a tally may make later (its lazy reads
        and the user's risk profile), declared from the event alone so that they run with it:
        on a shared state, reads made after the batch's other events ran would see them; then
        what the detectors that read the tally :meth:`declare`. The detectors that read the
        tally declare this plan (:meth:`Detector.plan`), the same tuple for one event."""
        local = self._local
        if getattr(local, "planned", None) is event:
            steps: tuple[Step, ...] = local.plan
            return steps
        planned, roles = self._plan(event)
        for reads in self._reads:
            planned.extend(reads(event))
        steps = tuple(planned)
        local.planned, local.plan = event, steps
        # Kept for the segment this event is judged in: its tally is then filled from the
        # plan's results (:meth:`_answered`), with no call to make. Bounded: past the limit,
        # a tally is counted through the state, which answers it all the same.
        plans: dict[int, tuple[Event, list[tuple[Step, str, int]]]] | None
        plans = getattr(local, "plans", None)
        if plans is None or len(plans) >= _PLANS_KEPT:
            plans = local.plans = {}
        plans[id(event)] = (event, roles)
        return steps

    def _plan(self, event: Event) -> tuple[list[Step], list[tuple[Step, str, int]]]:
        """The plan, and where each counting step's result goes in the tally (the step, the
        tally's attribute, and :data:`_INT`, :data:`_FIRST` or :data:`_BY_WINDOW`)."""
        ip = event.client_ip
        user = event.user_hash
        t = event.time
        steps: list[Step] = []
        roles: list[tuple[Step, str, int]] = []
        net = network_of(ip, *self.prefixes) if ip is not None else None
        provider = self._provider(event)
        if user is not None and (event.success or (event.service and event.exists is None)):
            steps.append(Fields(profile_key(user)))  # the tally's profile(), read before counting
        if event.success:
            if provider is not None:
                steps.append(AddWindows(self.provider_key(provider, "s"), t, self.provider_windows))
            if ip is not None:
                steps.append(AddWindows(f"{PREFIX}ip:{ip}:s", t, self.success_windows))
            if net is not None:
                steps.append(AddWindows(f"{PREFIX}net:{net}:s", t, self.success_windows))
            if ip is not None:  # account takeover's suspect check on a success
                stuffing = self.rules.credential_stuffing.window
                steps.append(DistinctCount(self.ip_key(ip, "fa"), t, stuffing))
            return steps, roles
        step: Step
        if ip is not None:
            step = AddWindows(self.ip_key(ip, "f"), t, self.ip_windows)
            roles.append((step, "ip_failures", _BY_WINDOW))
            if user is not None:
                step = AddDistinct(self.ip_key(ip, "fa"), user, t, self.ip_accounts_window)
                roles.append((step, "ip_accounts", _INT))
        if net is not None:
            step = AddWindows(self.source_key("network", net, "f"), t, self.network_windows)
            roles.append((step, "network_failures", _BY_WINDOW))
            if user is not None:
                key = self.source_key("network", net, "fa")
                step = AddDistinct(key, user, t, self.spray_window)
                roles.append((step, "network_accounts", _INT))
            assert ip is not None
            step = AddDistinct(self.source_key("network", net, "fs"), ip, t, self.spray_window)
            roles.append((step, "network_sources", _INT))
        if provider is not None:
            assert ip is not None
            window = self.provider_windows[0]
            step = AddWindows(self.provider_key(provider, "f"), t, self.provider_windows)
            roles.append((step, "provider_failures", _FIRST))
            if user is not None:
                step = AddDistinct(self.provider_key(provider, "fa"), user, t, window)
                roles.append((step, "provider_accounts", _INT))
            step = AddDistinct(self.provider_key(provider, "fs"), ip, t, window)
            roles.append((step, "provider_sources", _INT))
        if user is not None:
            step = AddWindows(self.user_key(user, "f"), t, (self.account_window,))
            roles.append((step, "account_failures", _FIRST))
            if ip is not None:
                step = AddWindows(self.pair_key(user, ip), t, (self.pair_window,))
                roles.append((step, "pair_failures", _FIRST))
                step = AddDistinct(self.user_key(user, "fs"), ip, t, self.account_window)
                roles.append((step, "account_sources", _INT))
        steps.extend([step for step, _, _ in roles])
        # The lazy reads, after the counting (they read it).
        if ip is not None:
            stuffing = self.rules.credential_stuffing.window
            steps.append(DistinctCount(self.ip_key(ip, "fa"), t, stuffing))
            for window in self.success_windows:
                steps.append(Count(self.source_key("ip", ip, "s"), t, window))
        if net is not None:
            steps.append(Count(self.source_key("network", net, "s"), t, self.spray_window))
        if provider is not None:
            window = self.rules.password_spraying.provider_window
            steps.append(Count(self.provider_key(provider, "s"), t, window))
        return steps, roles

    # The step -----------------------------------------------------------------------------------
    def tally(self, event: Event, state: State) -> Tally:
        """The tally of login ``event``, counting it into ``state`` the first time it is asked."""
        # One read of the thread's cache per ask (a thread-local attribute costs several plain
        # ones): the tally names its event and state.
        local = self._local
        cached: Tally | None = getattr(local, "tally", None)
        if cached is not None and cached.event is event and cached.state is state:
            return cached
        tally = None
        if state.__class__ is PlanView:
            plans = getattr(local, "plans", None)
            known = None if plans is None else plans.pop(id(event), None)
            if known is not None and known[0] is event:
                assert isinstance(state, PlanView)
                tally = self._answered(event, state, known[1])
        if tally is None:
            tally = self._count(event, state)
        local.tally = tally
        return tally

    def _answered(
        self, event: Event, view: PlanView, roles: list[tuple[Step, str, int]]
    ) -> Tally | None:
        """The tally of ``event`` from the results of its plan that ``view`` holds (what
        :meth:`_count` would read through it, without a call or a step made again); None when
        one is missing."""
        tally = Tally(event, view, self)
        ip = event.client_ip
        if ip is not None:
            tally.ip = ip
            tally.network = network_of(ip, *self.prefixes)
        tally.provider = self._provider(event)
        answers = view.answers
        for step, name, how in roles:
            result = answers.get(step, _MISSING)
            if result is _MISSING:
                return None
            if how == _INT:
                setattr(tally, name, int(result))
            elif how == _FIRST:
                setattr(tally, name, int(result[0]))
            else:
                assert isinstance(step, AddWindows)
                setattr(tally, name, dict(zip(step.windows, result, strict=True)))
        return tally

    def _provider(self, event: Event) -> str | None:
        """``AS<n>`` when the event's address is in a hosting, VPN or proxy network: such a
        network has no end users behind it, so its addresses are counted together over days and
        a slow rotation through them is seen whole."""
        info = event.network
        if (
            event.client_ip is None
            or info is None
            or info.asn is None
            or info.category not in self.provider_categories
        ):
            return None
        return f"AS{info.asn}"

    def _count(self, event: Event, state: State) -> Tally:
        tally = Tally(event, state, self)
        ip = event.client_ip
        user = event.user_hash
        t = event.time
        net = None
        if ip is not None:
            tally.ip = ip
            tally.network = net = network_of(ip, *self.prefixes)
        # (Only an enriched event can come from a provider: most have no network.)
        provider = None if event.network is None else self._provider(event)
        tally.provider = provider
        if event.success:
            if provider is not None:
                state.add_windows(self.provider_key(provider, "s"), t, self.provider_windows)
            if ip is not None:
                state.add_windows(f"{PREFIX}ip:{ip}:s", t, self.success_windows)
            if net is not None:
                state.add_windows(f"{PREFIX}net:{net}:s", t, self.success_windows)
            return tally
        if ip is not None:
            tally.ip_failures = dict(
                zip(
                    self.ip_windows,
                    state.add_windows(self.ip_key(ip, "f"), t, self.ip_windows),
                    strict=True,
                )
            )
            if user is not None:
                tally.ip_accounts = state.add_distinct(
                    self.ip_key(ip, "fa"), user, t, self.ip_accounts_window
                )
        if net is not None:
            key = self.source_key("network", net, "f")
            counted = state.add_windows(key, t, self.network_windows)
            tally.network_failures = dict(zip(self.network_windows, counted, strict=True))
            if user is not None:
                tally.network_accounts = state.add_distinct(
                    self.source_key("network", net, "fa"), user, t, self.spray_window
                )
            assert ip is not None  # a network is always an address's
            tally.network_sources = state.add_distinct(
                self.source_key("network", net, "fs"), ip, t, self.spray_window
            )
        if provider is not None:
            assert ip is not None
            window = self.provider_windows[0]
            (tally.provider_failures,) = state.add_windows(
                self.provider_key(provider, "f"), t, self.provider_windows
            )
            if user is not None:
                tally.provider_accounts = state.add_distinct(
                    self.provider_key(provider, "fa"), user, t, window
                )
            tally.provider_sources = state.add_distinct(
                self.provider_key(provider, "fs"), ip, t, window
            )
        if user is not None:
            tally.account_failures = state.add(self.user_key(user, "f"), t, self.account_window)
            if ip is not None:
                tally.pair_failures = state.add(self.pair_key(user, ip), t, self.pair_window)
                tally.account_sources = state.add_distinct(
                    self.user_key(user, "fs"), ip, t, self.account_window
                )
        return tally
