"""account_takeover: a successful login that follows an attack on that account, or that comes
from a source (IP or network) attacking other accounts. Always critical.

On failed logins it asks the shared tally whether the account is being brute-forced (from one
source or many) and whether the source is stuffing or spraying, and if so marks the account or
the source in State for ``memory`` seconds. On a successful login it reads those marks: three
small reads, whatever the traffic. An account mark makes a takeover only when the success comes
from an address that took part in the attack and that the user had never logged in from (the
owner logging in from home, typos included, after a botnet tried their account is not one); a
source mark makes one on any account. It does not depend on
the other detectors being enabled.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from usermon.processor.detectors.shared import PREFIX, SharedCounts, Tally, subject_for_user
from usermon.processor.model import Event, Signal
from usermon.processor.rules import AccountTakeoverRules
from usermon.processor.state import State

KIND = "account_takeover"


class AccountTakeoverDetector:
    name = KIND

    def __init__(self, rules: AccountTakeoverRules, counts: SharedCounts) -> None:
        self.rules = rules
        self.counts = counts

    def _mark(self, state: State, key: str, attack: str, event: Event, tally: Tally) -> None:
        state.put(
            key,
            {"attack": attack, "time": event.time, "trace_id": event.trace_id, "ip": tally.ip},
            event.time,
            self.rules.memory,
        )

    def observe(self, event: Event, state: State) -> Iterable[Signal]:
        if event.kind != "login" or not event.client_ip:
            return ()
        if not event.success:
            self._observe_failure(event, state)
            return ()
        if not event.user_hash:
            return ()
        # The shared step must count this success too, whoever asks first.
        tally = self.counts.tally(event, state)
        marks: list[tuple[str, dict[str, Any]]] = []
        for scope, key in (
            ("account", f"{PREFIX}ato:u:{event.user_hash}"),
            ("ip", f"{PREFIX}ato:ip:{event.client_ip}"),
            ("network", f"{PREFIX}ato:net:{tally.network}" if tally.network else None),
        ):
            if key is None:
                continue
            mark = state.get(key)
            if mark is None or event.time - float(mark["time"]) > self.rules.memory:
                continue
            if scope == "account" and (
                tally.familiar_ip() or not self._took_part(event, state, mark)
            ):
                continue  # the owner, from a place they use or one the attack did not
            marks.append((scope, mark))
        if not marks:
            return ()
        scope, mark = marks[0]
        who = event.label or "an account"
        if scope == "account":
            why = f"after a {mark['attack'].replace('_', ' ')} on it"
        else:
            why = f"from a {scope} doing {mark['attack'].replace('_', ' ')}"
        return (
            Signal(
                kind=KIND,
                severity="critical",
                subject=subject_for_user(event),
                summary=f"successful login on {who} from {event.client_ip} {why}",
                event=event,
                evidence={
                    "attacks": [
                        {
                            "scope": s,
                            "kind": m["attack"],
                            "since": m["time"],
                            "ip": m.get("ip"),
                            "trace_id": m.get("trace_id"),
                        }
                        for s, m in marks
                    ],
                },
                related_ips=tuple(
                    sorted({str(m["ip"]) for _, m in marks if m.get("ip")} - {event.client_ip})
                ),
            ),
        )

    def _took_part(self, event: Event, state: State, mark: dict[str, Any]) -> bool:
        """Whether this success's IP took part in the attack marked on the account."""
        if mark.get("ip") == event.client_ip:
            return True
        assert event.user_hash is not None
        assert event.client_ip is not None
        pair = self.counts.pair_key(event.user_hash, event.client_ip)
        return state.count(pair, event.time, self.counts.pair_window) > 0

    def _observe_failure(self, event: Event, state: State) -> None:
        tally = self.counts.tally(event, state)
        if event.user_hash:
            if tally.brute_force():
                self._mark(state, f"{PREFIX}ato:u:{event.user_hash}", "brute_force", event, tally)
            elif tally.distributed_brute_force():
                self._mark(
                    state,
                    f"{PREFIX}ato:u:{event.user_hash}",
                    "distributed_brute_force",
                    event,
                    tally,
                )
        if tally.credential_stuffing():
            self._mark(
                state, f"{PREFIX}ato:ip:{event.client_ip}", "credential_stuffing", event, tally
            )
        elif tally.password_spraying("ip"):
            self._mark(
                state, f"{PREFIX}ato:ip:{event.client_ip}", "password_spraying", event, tally
            )
        elif tally.network and tally.password_spraying("network"):
            self._mark(state, f"{PREFIX}ato:net:{tally.network}", "password_spraying", event, tally)
