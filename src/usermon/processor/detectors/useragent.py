"""A small User-Agent parser: browser family and major version, OS family, device type.

Risk scoring needs the UA -> browser -> OS -> device hierarchy, not a full device database, so
this module recognises the families that cover nearly all real logins (Chromium browsers, Firefox,
Safari, Edge, Opera, Samsung Internet, Internet Explorer; Windows, macOS, iOS, Android, ChromeOS,
Linux) plus scripted clients and crawlers, by ordered substring checks. Anything else parses to
``"other"`` rather than failing. Results are cached: a login stream repeats a few thousand UAs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["UserAgent", "parse_user_agent"]


@dataclass(frozen=True, slots=True)
class UserAgent:
    browser: str  # family, e.g. "Chrome"; "other" when unknown
    version: str  # the browser's major version, "" when unknown
    os: str  # family, e.g. "Windows", "iOS"; "other" when unknown
    device: str  # "desktop", "mobile", "tablet", "bot" or "other"


# Order matters: Chromium derivatives also say "Chrome/" and "Safari/", Chrome says "Safari/".
_BROWSERS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern))
    for name, pattern in (
        ("Edge", r"(?:Edg|Edge|EdgA|EdgiOS)/(\d+)"),
        ("Opera", r"(?:OPR|Opera)[/ ](\d+)"),
        ("Samsung Internet", r"SamsungBrowser/(\d+)"),
        ("Firefox", r"(?:Firefox|FxiOS)/(\d+)"),
        ("Chrome", r"(?:Chrome|CriOS)/(\d+)"),
        ("Safari", r"Version/(\d+)[^ ]* (?:Mobile/\S+ )?Safari/"),
        ("IE", r"(?:MSIE |Trident/.*rv:)(\d+)"),
        ("curl", r"^curl/(\d+)"),
        ("python-requests", r"python-requests/(\d+)"),
        ("python-httpx", r"python-httpx/(\d+)"),
        ("Go-http-client", r"Go-http-client/(\d+)"),
        ("okhttp", r"okhttp/(\d+)"),
    )
)
_BOT = re.compile(r"bot\b|crawler|spider|slurp|curl/|python-|Go-http-client|okhttp|headless", re.I)
_OSES: tuple[tuple[str, str], ...] = (
    ("Windows Phone", "Windows Phone"),
    ("Windows", "Windows"),
    ("iOS", "iPhone"),
    ("iOS", "iPad"),
    ("iOS", "iPod"),
    ("Android", "Android"),
    ("ChromeOS", "CrOS"),
    ("macOS", "Macintosh"),
    ("macOS", "Mac OS X"),
    ("Linux", "Linux"),
)


@lru_cache(maxsize=4096)
def parse_user_agent(value: str | None) -> UserAgent:
    """Browser, OS and device of a User-Agent string; never raises."""
    if not value:
        return UserAgent("other", "", "other", "other")
    browser, version = "other", ""
    for name, pattern in _BROWSERS:
        match = pattern.search(value)
        if match:
            browser, version = name, match.group(1)
            break
    os_name = next((name for name, token in _OSES if token in value), "other")
    if _BOT.search(value):
        device = "bot"
    elif "iPad" in value or "Tablet" in value or (os_name == "Android" and "Mobile" not in value):
        device = "tablet"
    elif "Mobile" in value or os_name in ("iOS", "Android", "Windows Phone"):
        device = "mobile"
    elif os_name in ("Windows", "macOS", "Linux", "ChromeOS"):
        device = "desktop"
    else:
        device = "other"
    return UserAgent(browser, version, os_name, device)
