"""Small intel sources made by the tests themselves: MaxMind DBs, a Tor list, a ranges CSV, and a
local HTTP server (127.0.0.1, ephemeral port) to serve a Tor list by URL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from mmdb_writer import MmdbF64, MmdbU32, MMDBWriter
from netaddr import IPSet

TOR_LIST = "185.220.101.4\n185.220.101.5\n# a comment\n\n2a0b:f4c2::1\n"
RANGES_CSV = (
    "cidr,category,name\n"
    "5.9.0.0/16,hosting,Hetzner\n"
    "5.9.10.0/24,vpn,SomeVPN\n"
    "# a comment line\n"
    "2a01:4f8::/32,hosting,Hetzner\n"
    "89.187.160.0/19,vpn,NordVPN\n"
)


def write_city_db(path: Path) -> Path:
    writer = MMDBWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type="GeoLite2-City",
        languages=["en"],
        description="usermon test city",
    )
    writer.insert_network(
        IPSet(["81.2.69.0/24"]),
        {
            "country": {"iso_code": "GB"},
            "location": {"latitude": MmdbF64(51.5142), "longitude": MmdbF64(-0.0931)},
        },
    )
    writer.insert_network(
        IPSet(["2001:db8::/32"]),
        {
            "country": {"iso_code": "DE"},
            "location": {"latitude": MmdbF64(52.52), "longitude": MmdbF64(13.40)},
        },
    )
    writer.insert_network(IPSet(["185.220.101.0/24"]), {"country": {"iso_code": "DE"}})
    writer.to_db_file(str(path))
    return path


def write_asn_db(path: Path) -> Path:
    writer = MMDBWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type="GeoLite2-ASN",
        languages=["en"],
        description="usermon test asn",
    )
    writer.insert_network(
        IPSet(["81.2.69.0/24"]),
        {
            "autonomous_system_number": MmdbU32(20712),
            "autonomous_system_organization": "Andrews & Arnold Ltd",
        },
    )
    writer.insert_network(
        IPSet(["5.9.0.0/16"]),
        {
            "autonomous_system_number": MmdbU32(24940),
            "autonomous_system_organization": "Hetzner Online GmbH",
        },
    )
    writer.to_db_file(str(path))
    return path


@pytest.fixture
def city_db(tmp_path: Path) -> Path:
    return write_city_db(tmp_path / "city.mmdb")


@pytest.fixture
def asn_db(tmp_path: Path) -> Path:
    return write_asn_db(tmp_path / "asn.mmdb")


@pytest.fixture
def tor_file(tmp_path: Path) -> Path:
    path = tmp_path / "torbulkexitlist"
    path.write_text(TOR_LIST, "utf-8")
    return path


@pytest.fixture
def ranges_csv(tmp_path: Path) -> Path:
    path = tmp_path / "ranges.csv"
    path.write_text(RANGES_CSV, "utf-8")
    return path


@dataclass
class Served:
    """What the test server answers on every GET, changeable while it runs."""

    status: int = 200
    body: str = TOR_LIST
    headers: dict[str, str] = field(default_factory=dict)
    hits: int = 0
    url: str = ""


@pytest.fixture
def tor_server() -> Iterator[Served]:
    served = Served()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.hits += 1
            data = served.body.encode()
            self.send_response(served.status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            for name, value in served.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    served.url = f"http://127.0.0.1:{server.server_address[1]}/torbulkexitlist"
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
