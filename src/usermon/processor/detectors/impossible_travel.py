"""impossible_travel: consecutive successful logins too far apart for the time between them.

Keeps each user's last geolocated successful login as a small record. A new one at least
``min_distance_km`` away (great-circle, haversine) that would need more than ``max_speed_kmh``
raises a finding. Logins from anonymizing networks (Tor, VPN, proxy, hosting) neither raise nor
replace the remembered place: their location is the exit's, not the user's. With
``ignore_same_asn``, two logins from the same ASN never do either (a mobile carrier geolocates
its gateways, which can sit hundreds of kilometres from the phone).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from usermon.processor.detectors.shared import PREFIX, subject_for_user
from usermon.processor.model import Event, Signal
from usermon.processor.rules import ANONYMIZING_CATEGORIES, ImpossibleTravelRules
from usermon.processor.storage.state.base import State
from usermon.processor.storage.state.steps import Get, Step

KIND = "impossible_travel"
EARTH_RADIUS_KM = 6371.0088  # mean radius (IUGG)


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance between two points, in kilometres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


class ImpossibleTravelDetector:
    name = KIND
    outcomes = frozenset(("success",))  # (Selective)

    def __init__(self, rules: ImpossibleTravelRules) -> None:
        self.rules = rules

    def plan(self, event: Event) -> Sequence[Step]:
        network = event.network
        if event.kind != "login" or not event.success or not event.user_hash or network is None:
            return ()
        if network.latitude is None or network.longitude is None:
            return ()
        if network.category in ANONYMIZING_CATEGORIES:
            return ()
        return (Get(f"{PREFIX}travel:{event.user_hash}"),)

    def observe(self, event: Event, state: State) -> Iterable[Signal]:
        network = event.network
        if event.kind != "login" or not event.success or not event.user_hash or network is None:
            return ()
        if network.latitude is None or network.longitude is None:
            return ()
        if network.category in ANONYMIZING_CATEGORIES:
            return ()
        key = f"{PREFIX}travel:{event.user_hash}"
        previous = state.get(key)
        current = {
            "time": event.time,
            "lat": network.latitude,
            "lon": network.longitude,
            "ip": event.client_ip,
            "country": network.country,
            "asn": network.asn,
            "trace_id": event.trace_id,
        }
        if previous is not None and float(previous["time"]) > event.time:
            return ()  # a late event: the remembered login is the newer one
        state.put(key, current, event.time, self.rules.memory)
        if previous is None:
            return ()
        if (
            self.rules.ignore_same_asn
            and network.asn is not None
            and network.asn == previous["asn"]
        ):
            return ()
        distance = haversine_km(
            previous["lat"], previous["lon"], network.latitude, network.longitude
        )
        if distance < self.rules.min_distance_km:
            return ()
        hours = (event.time - float(previous["time"])) / 3600
        speed = distance / hours if hours > 0 else math.inf
        if speed <= self.rules.max_speed_kmh:
            return ()
        who = event.label or "a user"
        origin = previous.get("country") or previous.get("ip")
        there = network.country or event.client_ip
        return (
            Signal(
                kind=KIND,
                severity="high",
                subject=subject_for_user(event),
                summary=f"{who} logged in from {there} {distance:.0f} km from {origin} "
                f"{hours * 60:.0f} min after the previous login",
                event=event,
                evidence={
                    "distance_km": round(distance, 1),
                    "hours": round(hours, 3),
                    "speed_kmh": round(speed, 1) if math.isfinite(speed) else None,
                    "from": {k: previous.get(k) for k in ("ip", "country", "time", "trace_id")},
                    "to": {"ip": event.client_ip, "country": network.country},
                },
                related_ips=tuple(
                    ip for ip in (previous.get("ip"),) if ip and ip != event.client_ip
                ),
            ),
        )
