"""End to end over OTLP (issue 15): a real ``usermon serve`` fed the generated traffic of the
distributed attack classes as OTLP/HTTP protobuf reports each campaign as one finding on the
service, and its takeovers on their accounts, through ``GET /api/findings``."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from tests.support.servers import start_processor

from usermon.processor.simulate import Scenario, batches, generate

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_distributed_campaigns_reach_the_api_as_service_findings(tmp_path: Path) -> None:
    traffic = generate(
        Scenario(seed=4, users=1500, days=14, campaigns_per_kind=1, campaign_classes=1)
    )
    intel = traffic.world.write_intel(tmp_path)
    server = start_processor(
        "memory://",
        "--tor-exits",
        str(intel["tor_exits"]),
        "--ip-ranges",
        str(intel["ip_ranges"]),
        *(
            ["--geoip-db", str(intel["geoip_db"]), "--asn-db", str(intel["asn_db"])]
            if "geoip_db" in intel
            else []
        ),
    )
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for request in batches(traffic.events, 512):
                client.post(
                    "/v1/traces",
                    content=request.SerializeToString(),
                    headers={"Content-Type": "application/x-protobuf"},
                ).raise_for_status()
            found = client.get("/api/findings", params={"limit": 10_000}).json()
    finally:
        server.stop(timeout=10)
    findings = found["findings"] if isinstance(found, dict) else found
    on_service = [f for f in findings if f["subject"]["type"] == "service"]
    assert sorted(f["kind"] for f in on_service) == ["credential_stuffing", "signup_abuse"]
    assert {f["subject"]["id"] for f in on_service} == {"shop"}
    stuffing = next(f for f in on_service if f["kind"] == "credential_stuffing")
    assert stuffing["evidence"]["sources"]
    assert stuffing["evidence"]["distinct_sources"] >= len(stuffing["evidence"]["sources"])
    assert stuffing["event_count"] >= 100
    # its victims: how many accounts it tried, and the newest of them listed
    assert stuffing["evidence"]["accounts"] >= 100
    assert len(stuffing["evidence"]["users"]) >= 10
    assert len(stuffing["evidence"]["ips"]) >= 10
    # The generator's proxy stuffing rotates the desktop browsers everyone uses and takes a fresh
    # residential address each time: nothing an application could match covers it without
    # taking in the users, so it has no fingerprint, hence no challenge (docs/protection.md).
    assert stuffing["evidence"]["fingerprint"] is None
    # the combo list's first-line hit and the proxy run's takeovers, on their accounts
    hits = {u for c in traffic.campaigns.values() if c.cls for u in c.takeovers}
    taken = {f["subject"]["id"] for f in findings if f["kind"] == "account_takeover"}
    assert len(hits & taken) >= 0.6 * len(hits)
    spraying = [
        f
        for f in findings
        if f["kind"] == "password_spraying" and f["subject"]["id"].startswith("AS")
    ]
    assert len(spraying) == 1
