"""The synthetic Internet the traffic generator lives in: countries, ISPs, carriers, offices,
hosting and VPN providers, Tor exits, and the threat intelligence that describes them.

Every address the generator hands out comes from a network declared here, so the same world can
answer the processor's enrichment in-process (:meth:`World.lookup`, the intel ``Enricher``
interface) or be written out as the files the processor loads (:meth:`World.write_intel`: a Tor
bulk exit list, an IP-ranges CSV and, when ``mmdb-writer`` is installed, MaxMind-format GeoIP and
ASN databases). Names and AS numbers are fictional (AS numbers from the private-use range); the
address blocks are ordinary public-looking /16s that only mean something inside this world.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from usermon.processor.model import NetworkCategory, NetworkInfo

NetworkRole = Literal["residential", "mobile", "business", "hosting", "vpn", "proxy"]

# (country, city latitude, city longitude): one representative city per country is enough for
# travel speeds, which is all coordinates are used for.
COUNTRIES: dict[str, tuple[float, float]] = {
    "FR": (48.86, 2.35),
    "DE": (52.52, 13.40),
    "GB": (51.51, -0.13),
    "ES": (40.42, -3.70),
    "NL": (52.37, 4.90),
    "US": (40.71, -74.01),
    "CA": (43.65, -79.38),
    "BR": (-23.55, -46.63),
    "JP": (35.68, 139.69),
    "IN": (19.08, 72.88),
    "AU": (-33.87, 151.21),
    "VN": (21.03, 105.85),
}

# Where the benign population lives (weights); the rest of COUNTRIES only appears as travel
# destinations and attack origins.
HOME_COUNTRIES: dict[str, float] = {"FR": 3, "DE": 2, "GB": 2, "ES": 1, "NL": 1, "US": 3, "CA": 1}


@dataclass(frozen=True, slots=True)
class Network:
    """One /16 of the synthetic world, owned by one autonomous system."""

    cidr: str
    role: NetworkRole
    country: str
    asn: int
    org: str

    @property
    def category(self) -> NetworkCategory | None:
        if self.role in ("hosting", "vpn", "proxy"):
            return self.role
        return None


@dataclass
class World:
    """The networks, and an address allocator that never hands the same address out twice (so an
    attacker never shares an address with a benign user by accident). A residential ISP spans
    several /16 blocks of one AS number, so a random entry of :meth:`of` is a random block."""

    rng: random.Random
    networks: list[Network] = field(default_factory=list)
    tor_exits: set[str] = field(default_factory=set)
    _by_prefix: dict[tuple[int, int], Network] = field(default_factory=dict)
    _used: set[str] = field(default_factory=set)

    @classmethod
    def build(cls, rng: random.Random) -> World:
        world = cls(rng)
        asn = 64600
        second_octet = 0

        def add(role: NetworkRole, country: str, org: str, blocks: int = 1) -> None:
            nonlocal asn, second_octet
            for _ in range(blocks):
                first = 41 + second_octet // 250
                net = Network(f"{first}.{second_octet % 250 + 1}.0.0/16", role, country, asn, org)
                world.networks.append(net)
                world._by_prefix[(first, second_octet % 250 + 1)] = net
                second_octet += 1
            asn += 1

        for country in COUNTRIES:
            # A residential ISP is large: spread over many blocks, a shop's few thousand users
            # rarely share a /24, as in real access networks.
            add("residential", country, f"{country} Fibre", blocks=8)
            add("residential", country, f"{country} Cable", blocks=8)
            add("mobile", country, f"{country} Mobile")
            add("business", country, f"{country} Business Connect")
        for country, name in (("US", "Cloudy Compute"), ("NL", "Metal Hosting"), ("DE", "VPS Box")):
            add("hosting", country, name)
        for country, name in (("NL", "PrivateTunnel VPN"), ("GB", "ShieldNet VPN")):
            add("vpn", country, name)
        add("proxy", "US", "OpenRelay Proxies")
        # Tor exits sit in hosting space, as most real ones do; the exit list overrides the range.
        hosting = [n for n in world.networks if n.role == "hosting"]
        for _ in range(40):
            world.tor_exits.add(world.address(world.rng.choice(hosting)))
        return world

    # -- allocation ---------------------------------------------------------------------------

    def of(self, role: NetworkRole, country: str | None = None) -> list[Network]:
        return [
            n for n in self.networks if n.role == role and (country is None or n.country == country)
        ]

    def address(self, network: Network, *, unique: bool = True) -> str:
        """A fresh host address in ``network`` (``unique=False`` may repeat one, as a carrier's
        NAT pool does)."""
        base = ipaddress.ip_network(network.cidr)
        while True:
            ip = str(base[self.rng.randrange(256, base.num_addresses - 1)])
            if not unique or ip not in self._used:
                self._used.add(ip)
                return ip

    def subnet_addresses(self, network: Network, count: int) -> list[str]:
        """``count`` distinct addresses inside one fresh /24 of ``network``."""
        while True:
            third = self.rng.randrange(1, 255)
            prefix = network.cidr.split(".")[:2]
            candidates = [f"{prefix[0]}.{prefix[1]}.{third}.{h}" for h in range(2, 254)]
            if not any(ip in self._used for ip in candidates):
                chosen = self.rng.sample(candidates, count)
                self._used.update(candidates)  # the whole /24 belongs to its one owner
                return chosen

    def network_of(self, ip: str) -> Network | None:
        try:
            parts = ip.split(".")
            return self._by_prefix.get((int(parts[0]), int(parts[1])))
        except (ValueError, IndexError):
            return None

    # -- the Enricher interface ---------------------------------------------------------------

    def lookup(self, ip: str) -> NetworkInfo | None:
        """What this world's threat intelligence knows of ``ip``: the intel ``Enricher``
        interface, so the engine can enrich in-process without any file."""
        net = self.network_of(ip)
        if net is None:
            return None
        lat, lon = COUNTRIES[net.country]
        if ip in self.tor_exits:
            return NetworkInfo(net.country, lat, lon, net.asn, net.org, "tor", "tor")
        return NetworkInfo(
            net.country,
            lat,
            lon,
            net.asn,
            net.org,
            net.category,
            net.org if net.category else None,
        )

    # -- files for a processor that runs elsewhere --------------------------------------------

    def write_intel(self, directory: Path) -> dict[str, Path]:
        """Write this world's intelligence as the files the processor loads: ``tor-exits.txt``
        (the Tor Project's bulk exit list format), ``ip-ranges.csv`` (``cidr,category,name``)
        and, when the optional ``mmdb-writer`` package is installed, ``geo.mmdb`` (City format)
        and ``asn.mmdb`` (ASN format). Returns the paths written, by name."""
        directory.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        tor = directory / "tor-exits.txt"
        tor.write_text("".join(f"{ip}\n" for ip in sorted(self.tor_exits)))
        paths["tor_exits"] = tor
        ranges = directory / "ip-ranges.csv"
        lines = ["cidr,category,name"] + [
            f"{n.cidr},{n.category},{n.org}" for n in self.networks if n.category is not None
        ]
        ranges.write_text("\n".join(lines) + "\n")
        paths["ip_ranges"] = ranges
        try:
            import mmdb_writer  # optional: only the benchmark's OTLP mode needs GeoIP files
            from netaddr import IPSet  # type: ignore[import-untyped]
        except ImportError:
            return paths
        geo = mmdb_writer.MMDBWriter(ip_version=4, database_type="GeoLite2-City")
        asn = mmdb_writer.MMDBWriter(ip_version=4, database_type="GeoLite2-ASN")
        for n in self.networks:
            lat, lon = COUNTRIES[n.country]
            geo.insert_network(
                IPSet([n.cidr]),
                {
                    "country": {"iso_code": n.country},
                    "location": {
                        "latitude": mmdb_writer.MmdbF64(lat),
                        "longitude": mmdb_writer.MmdbF64(lon),
                    },
                },
            )
            asn.insert_network(
                IPSet([n.cidr]),
                {
                    "autonomous_system_number": mmdb_writer.MmdbU32(n.asn),
                    "autonomous_system_organization": n.org,
                },
            )
        paths["geoip_db"] = directory / "geo.mmdb"
        paths["asn_db"] = directory / "asn.mmdb"
        geo.to_db_file(str(paths["geoip_db"]))
        asn.to_db_file(str(paths["asn_db"]))
        return paths
