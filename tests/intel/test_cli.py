"""``usermon intel``: refresh and report."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from tests.intel.conftest import Served

from usermon.processor.intel.cli import intel


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(intel, list(args), env={})
    return result.exit_code, result.output


def test_the_report_counts_and_dates_every_source(
    city_db: Path, asn_db: Path, tor_server: Served, ranges_csv: Path
) -> None:
    code, out = run(
        "--geoip-db",
        str(city_db),
        "--asn-db",
        str(asn_db),
        "--tor-exits",
        tor_server.url,
        "--ip-ranges",
        str(ranges_csv),
        "--json",
    )
    assert code == 0, out
    sources = {s["source"]: s for s in json.loads(out)["sources"]}
    assert sources["geoip"]["type"] == "GeoLite2-City"
    assert sources["geoip"]["stale"] is False
    assert sources["tor"]["entries"] == 3
    assert sources["tor"]["fetched"] is not None
    assert sources["ip_ranges"]["entries"] == 4
    assert all(s["loaded"] for s in sources.values())
    assert tor_server.hits == 1


def test_a_failed_tor_fetch_is_reported_and_fails_the_check(tor_server: Served) -> None:
    tor_server.status = 503
    code, out = run("--tor-exits", tor_server.url)
    assert code == 1
    assert "NOT LOADED" in out
    assert "503" in out


def test_no_refresh_reports_the_cached_copy_without_fetching(
    tor_server: Served, tmp_path: Path
) -> None:
    cache = tmp_path / "tor.txt"
    run("--tor-exits", tor_server.url, "--tor-cache", str(cache))
    code, out = run("--tor-exits", tor_server.url, "--tor-cache", str(cache), "--no-refresh")
    assert code == 0, out
    assert "3 entries" in out
    assert tor_server.hits == 1


def test_a_stale_source_is_flagged(tmp_path: Path) -> None:
    import os

    path = tmp_path / "ranges.csv"
    path.write_text("5.9.0.0/16,hosting,Hetzner\n", "utf-8")
    old = 1_600_000_000
    os.utime(path, (old, old))
    code, out = run("--ip-ranges", str(path))
    assert code == 0
    assert "stale" in out


def test_lookup_shows_what_is_known_of_an_address(city_db: Path, ranges_csv: Path) -> None:
    code, out = run(
        "--geoip-db",
        str(city_db),
        "--ip-ranges",
        str(ranges_csv),
        "--lookup",
        "81.2.69.160",
        "--lookup",
        "5.9.10.1",
        "--lookup",
        "192.0.2.1",
    )
    assert code == 0, out
    assert "81.2.69.160: country=GB" in out
    assert "5.9.10.1: category=vpn, network_name=SomeVPN" in out
    assert "192.0.2.1: nothing known" in out


def test_a_broken_source_exits_with_status_1(tmp_path: Path) -> None:
    bogus = tmp_path / "x.mmdb"
    bogus.write_text("nope", "utf-8")
    code, out = run("--geoip-db", str(bogus))
    assert code == 1
    assert "not a readable MaxMind DB" in out


def test_nothing_configured_says_how_to_configure() -> None:
    code, out = run()
    assert code == 0
    assert "USERMON_GEOIP_DB" in out


def test_the_variables_configure_the_command(city_db: Path) -> None:
    result = CliRunner().invoke(intel, ["--json"], env={"USERMON_GEOIP_DB": str(city_db)})
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["sources"][0]["source"] == "geoip"
