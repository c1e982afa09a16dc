"""Normal life fires nothing: the everyday patterns every detector must stay quiet on."""

from __future__ import annotations

import random

from tests.detection.conftest import (
    CHROME_WINDOWS,
    DAY,
    HOUR,
    LILLE_MOBILE,
    MARSEILLE_MOBILE,
    NEW_YORK,
    PARIS,
    SAFARI_IPHONE,
    SAO_PAULO,
    T0,
    Stream,
)


def crowd(stream: Stream, day: int) -> None:
    """Other people's daily logins, so that population frequencies mean something: most at
    home on the same ISP, some on the same mobile carrier."""
    for i in range(20):
        t = T0 + day * DAY + 3 * HOUR + i
        stream.login(t, f"neighbour{i}", f"198.51.100.{100 + i}", True)
        if i < 5:
            stream.login(
                t + 1, f"neighbour{i}", f"100.66.{day}.{i}", True, SAFARI_IPHONE, LILLE_MOBILE
            )


def test_an_office_nat_with_many_users_and_a_few_typos_fires_nothing(stream: Stream) -> None:
    rng = random.Random(7)
    office = "198.51.100.200"
    for day in range(5):
        for user in range(150):
            for session in range(3):
                t = T0 + day * DAY + 9 * HOUR + rng.uniform(0, 8 * HOUR) + session
                if rng.random() < 0.1:  # a typo or three before getting in
                    for k in range(rng.randint(1, 3)):
                        stream.login(t - 30 + k, f"employee{user}", office, success=False)
                stream.login(t, f"employee{user}", office, success=True)
    assert stream.signals == []


def test_a_phone_changing_ips_within_its_carrier_fires_nothing(stream: Stream) -> None:
    for day in range(10):  # history: home in the evening, the phone during the day
        crowd(stream, day)
        stream.login(T0 + day * DAY, "alice", "198.51.100.1", True)
        stream.login(
            T0 + day * DAY + 12 * HOUR,
            "alice",
            f"100.64.{day}.1",
            True,
            SAFARI_IPHONE,
            LILLE_MOBILE,
        )
    t = T0 + 10 * DAY
    for hop in range(30):  # a fresh carrier address at every session, geolocated all over
        place = MARSEILLE_MOBILE if hop % 2 else LILLE_MOBILE
        stream.login(t + hop * 600, "alice", f"100.65.{hop}.9", True, SAFARI_IPHONE, place)
    assert stream.signals == []


def test_a_traveller_changing_country_once_a_day_fires_nothing(stream: Stream) -> None:
    for day in range(10):
        crowd(stream, day)
        stream.login(T0 + day * DAY, "alice", "198.51.100.1", True, CHROME_WINDOWS, PARIS)
    t = T0 + 10 * DAY + 7 * HOUR
    stream.login(t, "alice", "198.51.100.1", True, CHROME_WINDOWS, PARIS)
    stream.login(t + 11 * HOUR, "alice", "203.0.113.5", True, CHROME_WINDOWS, NEW_YORK)
    stream.login(t + 14 * HOUR, "alice", "203.0.113.5", True, CHROME_WINDOWS, NEW_YORK)
    stream.login(t + DAY + 12 * HOUR, "alice", "200.160.2.3", True, CHROME_WINDOWS, SAO_PAULO)
    assert stream.signals == []


def test_a_user_mistyping_their_password_three_times_fires_nothing(stream: Stream) -> None:
    for day in range(7):
        t = T0 + day * DAY
        for k in range(3):
            stream.login(t + k * 10, "alice", "198.51.100.1", success=False)
        stream.login(t + 40, "alice", "198.51.100.1", success=True)
    assert stream.signals == []


def test_a_browser_update_on_a_phone_with_a_fresh_carrier_address_is_quiet() -> None:
    import dataclasses

    from usermon.processor.rules import Rules

    android = (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/{}.0.0.0 Mobile Safari/537.36"
    )

    def day_of_updates(rules: Rules) -> Stream:
        stream = Stream(rules)
        for day in range(12):
            crowd(stream, day)
            t = T0 + day * DAY + 9 * HOUR
            if day % 2 == 0:  # on her phone every other day, else at home
                stream.login(t, "alice", f"100.64.{day}.9", True, android.format(131), LILLE_MOBILE)
            else:
                stream.login(t, "alice", "198.51.100.7", True, CHROME_WINDOWS, PARIS)
        for i in range(20):  # the update reaches everyone on the same day
            stream.login(
                T0 + 12 * DAY + i,
                f"neighbour{i}",
                f"100.66.99.{i}",
                True,
                android.format(132),
                LILLE_MOBILE,
            )
        stream.login(
            T0 + 12 * DAY + 9 * HOUR,
            "alice",
            "100.64.99.9",
            True,
            android.format(132),
            MARSEILLE_MOBILE,
        )
        return stream

    def alice(stream: Stream) -> list[str]:
        return [s.subject.id for s in stream.of("suspicious_login") if s.subject.id == "h-alice"]

    assert alice(day_of_updates(Rules())) == []
    # the same day scored the old way: the new string alone made the login suspicious
    old = Rules()
    old = dataclasses.replace(
        old, suspicious_login=dataclasses.replace(old.suspicious_login, score_new_version=True)
    )
    assert alice(day_of_updates(old)) == ["h-alice"]
