"""suspicious_login: Freeman et al. risk scoring, and the User-Agent parser it stands on."""

from __future__ import annotations

import pytest
from tests.detection.conftest import (
    CHROME_WINDOWS,
    DAY,
    FIREFOX_LINUX,
    NEW_YORK,
    PARIS,
    SAFARI_IPHONE,
    SAO_PAULO,
    T0,
    Stream,
)

from usermon.processor.detectors.useragent import parse_user_agent


def settle(stream: Stream, user: str = "alice", logins: int = 10) -> None:
    """A user's history: daily logins from home in Paris with Chrome on Windows, and a few
    other users so that global frequencies mean something."""
    for day in range(logins):
        stream.login(T0 + day * DAY, user, "198.51.100.1", success=True)
        stream.login(T0 + day * DAY + 60, f"other{day}", f"198.51.100.{day + 2}", True)
        stream.login(
            T0 + day * DAY + 120, f"far{day}", f"203.0.113.{day}", True, FIREFOX_LINUX, NEW_YORK
        )


def test_a_login_from_a_new_country_with_a_new_browser_is_suspicious(stream: Stream) -> None:
    settle(stream)
    stream.login(T0 + 11 * DAY, "alice", "200.160.2.3", True, FIREFOX_LINUX, SAO_PAULO)
    (signal,) = stream.of("suspicious_login")
    assert signal.subject.id == "h-alice"
    evidence = signal.evidence
    assert evidence["risk"] >= 30
    assert evidence["history"] == 10
    assert set(evidence["drivers"]) == {"network", "agent"}
    network = next(f for f in evidence["features"] if f["family"] == "network")
    assert (network["new_level"], network["new_value"]) == ("country", "BR")
    assert "BR" in signal.summary


def test_a_familiar_login_scores_low_and_fires_nothing(stream: Stream) -> None:
    settle(stream)
    stream.login(T0 + 11 * DAY, "alice", "198.51.100.1", True)
    assert stream.of("suspicious_login") == []


def test_users_with_too_little_history_are_not_scored(stream: Stream) -> None:
    stream.login(T0, "alice", "198.51.100.1", True)
    stream.login(T0 + DAY, "alice", "198.51.100.1", True)
    stream.login(T0 + 2 * DAY, "alice", "200.160.2.3", True, FIREFOX_LINUX, SAO_PAULO)
    assert stream.of("suspicious_login") == []


def test_a_new_ip_in_the_users_own_network_is_not_suspicious(stream: Stream) -> None:
    settle(stream)
    stream.login(T0 + 11 * DAY, "alice", "198.51.100.77", True, CHROME_WINDOWS, PARIS)
    assert stream.of("suspicious_login") == []


@pytest.mark.parametrize(
    ("agent", "browser", "os", "device"),
    [
        (CHROME_WINDOWS, "Chrome", "Windows", "desktop"),
        (FIREFOX_LINUX, "Firefox", "Linux", "desktop"),
        (SAFARI_IPHONE, "Safari", "iOS", "mobile"),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
            "Edge",
            "Windows",
            "desktop",
        ),
        (
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0.0.0 Mobile Safari/537.36",
            "Chrome",
            "Android",
            "mobile",
        ),
        (
            "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
            "Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
            "Safari",
            "iOS",
            "tablet",
        ),
        ("python-requests/2.32.3", "python-requests", "other", "bot"),
        ("curl/8.5.0", "curl", "other", "bot"),
        ("Mozilla/5.0 (compatible; Googlebot/2.1)", "other", "other", "bot"),
        ("", "other", "other", "other"),
        ("\x00garbage\uffff", "other", "other", "other"),
    ],
)
def test_user_agents_parse_into_browser_os_and_device(
    agent: str, browser: str, os: str, device: str
) -> None:
    parsed = parse_user_agent(agent)
    assert (parsed.browser, parsed.os, parsed.device) == (browser, os, device)


def test_the_parser_keeps_the_browsers_major_version() -> None:
    assert parse_user_agent(CHROME_WINDOWS).version == "131"


def _reference_walk(family: str, path: tuple[str, ...], profile: dict[str, int]) -> tuple:
    # The walk as the module docstring defines it, written plainly, to check the one-pass walk
    # (and its one-path shortcut) against.
    depth = len(path)
    counts = [0] * depth
    levels: list[set[tuple[str, ...]]] = [set() for _ in range(depth)]
    siblings: list[set[str]] = [set() for _ in range(depth)]
    paths = 0
    for name, count in profile.items():
        if not name.startswith(family + "|"):
            continue
        values = name.split("|")[1:]
        if len(values) != depth:
            continue
        paths += 1
        shared = 0
        while shared < depth and values[shared] == path[shared]:
            shared += 1
        for k in range(depth):
            if k < shared:
                counts[k] += count
            levels[k].add(tuple(values[: k + 1]))
            if k <= shared:
                siblings[k].add(values[k])
    seen = 0
    while seen < depth and counts[seen]:
        seen += 1
    return counts, [len(v) for v in levels], [len(v) for v in siblings], paths, seen


def test_the_one_pass_walk_is_the_definitions() -> None:
    import random

    from usermon.processor.detectors.suspicious_login import _walk, _walks

    rng = random.Random(5)
    for _ in range(3000):
        profile: dict[str, int] = {}
        for _ in range(rng.choice([0, 1, 1, 2, 3, 6])):
            family = rng.choice(["net", "agent", "agent", "other", "netx"])
            depth = rng.choice([3, 4, 4, 2, 5]) if family != "net" else rng.choice([3, 3, 2])
            values = [rng.choice("ab*") for _ in range(depth)]
            profile["|".join([family, *values])] = rng.choice([0, 1, 1, 2, 7])
        if rng.random() < 0.05:
            profile["agent"] = 3  # no "|": neither a path nor history
        net = tuple(rng.choice("ab") for _ in range(3))
        agent = tuple(rng.choice("ab") for _ in range(4))
        net_walk, agent_walk, history = _walks(net, agent, profile)
        for family, path, walk in (("net", net, net_walk), ("agent", agent, agent_walk)):
            # The walk keeps what the score reads of the definition's per-level lists.
            counts, distinct, siblings, paths, seen = _reference_walk(family, path, profile)
            expected = (
                seen,
                counts[seen - 1] if seen else 0,
                distinct[seen - 1 if seen else 0],
                siblings[seen] if seen < len(path) else 0,
                paths,
            )
            got = (walk.seen, walk.count, walk.distinct, walk.siblings, walk.paths)
            assert got == expected, (family, path, profile)
            single = _walk(family, path, profile)
            assert (single.seen, single.count, single.distinct, single.siblings) == got[:4]
            assert single.paths == got[4]
        assert history == sum(c for n, c in profile.items() if n.startswith("agent|"))
