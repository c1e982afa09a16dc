"""The Tor exit list: file or URL, refreshed, the last good copy kept when a refresh fails."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from tests.intel.conftest import Served

from usermon.processor.intel.tor import Refresher, TorExitList, parse


def test_the_bulk_list_format_is_one_address_per_line() -> None:
    exits, bad = parse("185.220.101.4\n\n# comment\n2A0B:F4C2::1\nnonsense\n")
    assert exits == {"185.220.101.4", "2a0b:f4c2::1"}  # IPv6 normalized
    assert bad == 1


def test_the_exit_addresses_format_is_read_too() -> None:
    text = (
        "ExitNode 0011BD2485AD45D984EC4159C88FC066E5E3300E\n"
        "Published 2026-01-05 10:00:00\n"
        "LastStatus 2026-01-05 11:00:00\n"
        "ExitAddress 162.247.74.201 2026-01-05 11:11:11\n"
    )
    assert parse(text) == ({"162.247.74.201"}, 0)


def test_a_file_source_is_loaded(tor_file: Path) -> None:
    exits = TorExitList(str(tor_file))
    assert exits.refresh()
    assert "185.220.101.4" in exits
    assert "8.8.8.8" not in exits
    assert len(exits) == 3


def test_a_changed_file_is_read_again_and_an_unchanged_one_is_not(tor_file: Path) -> None:
    exits = TorExitList(str(tor_file))
    exits.refresh()
    assert not exits.refresh()
    tor_file.write_text("198.51.100.9\n", "utf-8")
    later = time.time() + 10
    os.utime(tor_file, (later, later))
    assert exits.refresh()
    assert set(exits.exits) == {"198.51.100.9"}


def test_a_url_source_is_fetched_over_http(tor_server: Served) -> None:
    tor_server.headers["Last-Modified"] = "Mon, 05 Jan 2026 10:00:00 GMT"
    exits = TorExitList(tor_server.url)
    assert exits.refresh()
    assert "185.220.101.5" in exits
    status = exits.status()
    assert status.source_time == 1767607200.0
    assert status.last_error is None


def test_a_failed_refresh_keeps_the_last_good_list(tor_server: Served) -> None:
    exits = TorExitList(tor_server.url)
    assert exits.refresh()
    tor_server.status = 503
    tor_server.body = "try later"
    assert not exits.refresh()
    assert "185.220.101.4" in exits
    status = exits.status()
    assert status.count == 3
    assert status.last_error is not None
    assert "503" in status.last_error


def test_an_empty_download_does_not_wipe_the_list(tor_server: Served) -> None:
    exits = TorExitList(tor_server.url)
    exits.refresh()
    tor_server.body = "<html>maintenance</html>\n"
    assert not exits.refresh()
    assert len(exits) == 3
    assert "no exit address" in (exits.status().last_error or "")


def test_an_unreachable_url_is_an_error_kept_in_the_status_not_raised() -> None:
    exits = TorExitList("http://127.0.0.1:9/torbulkexitlist", timeout=2)
    assert not exits.refresh()
    assert len(exits) == 0
    assert exits.status().last_error


def test_the_cache_carries_the_last_good_download_across_restarts(
    tor_server: Served, tmp_path: Path
) -> None:
    cache = tmp_path / "cache" / "tor.txt"
    TorExitList(tor_server.url, cache=cache).refresh()
    assert cache.read_text("utf-8").startswith("185.220.101.4")
    tor_server.status = 500
    restarted = TorExitList(tor_server.url, cache=cache)
    assert "185.220.101.4" in restarted  # known before any fetch
    restarted.refresh()
    assert len(restarted) == 3


def test_the_refresher_fetches_on_its_schedule(tor_server: Served) -> None:
    exits = TorExitList(tor_server.url)
    exits.refresh()
    tor_server.body = "203.0.113.77\n"
    refresher = Refresher(exits, interval=0.05)
    refresher.start()
    try:
        deadline = time.monotonic() + 10
        while "203.0.113.77" not in exits and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        refresher.stop()
    assert "203.0.113.77" in exits
    assert tor_server.hits >= 2


def test_a_refresh_interval_must_be_positive(tor_file: Path) -> None:
    with pytest.raises(ValueError, match="positive"):
        Refresher(TorExitList(str(tor_file)), interval=0)
