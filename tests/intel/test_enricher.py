"""The enricher: GeoIP, ASN, Tor and ranges combined behind lookup(ip)."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import pytest
from tests.intel.conftest import Served

from usermon.processor.intel import (
    Database,
    Enricher,
    IntelDatabaseError,
    build_enricher,
    from_settings,
    paths_from_environ,
)
from usermon.processor.intel.tor import TorExitList
from usermon.processor.model import NetworkInfo


def test_geoip_and_asn_databases_fill_country_place_and_network(
    city_db: Path, asn_db: Path
) -> None:
    enricher = build_enricher(city_db, asn_db)
    assert enricher.lookup("81.2.69.160") == NetworkInfo(
        country="GB",
        latitude=51.5142,
        longitude=-0.0931,
        asn=20712,
        as_org="Andrews & Arnold Ltd",
    )
    ipv6 = enricher.lookup("2001:db8::1")
    assert ipv6 is not None
    assert ipv6.country == "DE"


def test_an_address_no_source_knows_is_none(city_db: Path, asn_db: Path) -> None:
    enricher = build_enricher(city_db, asn_db)
    assert enricher.lookup("198.51.100.1") is None
    assert enricher.lookup("not an address") is None


def test_tor_exits_and_ranges_set_the_category(
    city_db: Path, asn_db: Path, tor_file: Path, ranges_csv: Path
) -> None:
    enricher = build_enricher(city_db, asn_db, str(tor_file), ranges_csv, refresh_interval=None)
    tor = enricher.lookup("185.220.101.4")
    assert tor is not None
    assert (tor.category, tor.network_name, tor.country) == ("tor", "tor", "DE")
    hosting = enricher.lookup("5.9.1.1")
    assert hosting is not None
    assert (hosting.category, hosting.network_name, hosting.asn) == ("hosting", "Hetzner", 24940)


def test_a_tor_refresh_is_seen_by_the_next_lookup(tor_server: Served) -> None:
    tor = TorExitList(tor_server.url)
    tor.refresh()
    enricher = Enricher(tor=tor)
    assert enricher.lookup("203.0.113.77") is None
    tor_server.body = "203.0.113.77\n"
    tor.refresh()
    found = enricher.lookup("203.0.113.77")
    assert found is not None
    assert found.category == "tor"


def test_a_file_that_is_not_a_maxmind_db_fails_at_startup(tmp_path: Path) -> None:
    bogus = tmp_path / "city.mmdb"
    bogus.write_bytes(b"definitely not a database")
    with pytest.raises(IntelDatabaseError, match="not a readable MaxMind DB"):
        build_enricher(geoip_db=bogus)


def test_a_missing_tor_file_fails_at_startup(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Tor exit list"):
        build_enricher(tor_exits=str(tmp_path / "absent"))


def test_an_unreachable_tor_url_does_not_stop_startup() -> None:
    enricher = build_enricher(tor_exits="http://127.0.0.1:9/list", refresh_interval=None)
    assert enricher.tor is not None
    assert len(enricher.tor) == 0


def test_database_metadata_is_exposed(city_db: Path) -> None:
    db = Database(city_db)
    assert db.database_type == "GeoLite2-City"
    assert db.build_epoch > 0
    db.close()


@dataclasses.dataclass
class FakeSettings:
    geoip_db: str | None
    asn_db: str | None = None
    tor_exits: str | None = None
    ip_ranges: str | None = None
    tor_refresh: float = 3600.0


def test_the_processor_settings_build_an_enricher(city_db: Path, ranges_csv: Path) -> None:
    enricher = from_settings(FakeSettings(str(city_db), ip_ranges=str(ranges_csv)))
    found = enricher.lookup("81.2.69.1")
    assert found is not None
    assert found.country == "GB"
    enricher.close()


def test_paths_come_from_the_usermon_variables() -> None:
    environ = {"USERMON_GEOIP_DB": "/x/city.mmdb", "USERMON_TOR_EXITS": ""}
    assert paths_from_environ(environ) == {
        "geoip_db": "/x/city.mmdb",
        "asn_db": None,
        "tor_exits": None,
        "ip_ranges": None,
    }


def test_the_settings_set_the_tor_refresh_interval(tor_file: Path) -> None:
    enricher = from_settings(FakeSettings(None, tor_exits=str(tor_file), tor_refresh=120.0))
    try:
        assert enricher.refresher is not None
        assert enricher.refresher.interval == 120.0
    finally:
        enricher.close()


def test_a_zero_tor_refresh_reads_the_list_once(tor_file: Path) -> None:
    enricher = from_settings(FakeSettings(None, tor_exits=str(tor_file), tor_refresh=0.0))
    try:
        assert enricher.refresher is None
        assert enricher.tor is not None
        assert enricher.tor.exits
    finally:
        enricher.close()


def test_closing_the_processor_stops_the_tor_refresher(tor_file: Path, tmp_path: Path) -> None:
    from usermon.processor.service import Processor
    from usermon.processor.settings import resolve

    settings = resolve({"store": "memory://", "tor_exits": str(tor_file)}, env={})
    processor = Processor(settings, detectors=[])
    assert "usermon-tor-refresh" in {t.name for t in threading.enumerate()}
    processor.close()
    assert "usermon-tor-refresh" not in {t.name for t in threading.enumerate()}
