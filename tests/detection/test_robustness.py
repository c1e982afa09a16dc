"""Detectors never raise on a well-formed event, whatever its values."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.detection.conftest import T0

from usermon.processor.detectors import default_detectors, run_detectors
from usermon.processor.model import Event, NetworkInfo
from usermon.processor.rules import Rules
from usermon.processor.storage.state.memory import MemoryState

addresses = st.one_of(
    st.none(),
    st.ip_addresses().map(str),
    st.sampled_from(["", "not-an-ip", "::ffff:192.0.2.1", "fe80::1%eth0", "999.1.1.1"]),
)
networks = st.one_of(
    st.none(),
    st.builds(
        NetworkInfo,
        country=st.one_of(st.none(), st.sampled_from(["FR", "US", "", "|x"])),
        latitude=st.one_of(st.none(), st.floats(-90, 90)),
        longitude=st.one_of(st.none(), st.floats(-180, 180)),
        asn=st.one_of(st.none(), st.integers(0, 2**32 - 1)),
        as_org=st.one_of(st.none(), st.text(max_size=20)),
        category=st.one_of(st.none(), st.sampled_from(["hosting", "vpn", "proxy", "tor"])),
        network_name=st.one_of(st.none(), st.text(max_size=20)),
    ),
)
events = st.builds(
    Event,
    kind=st.sampled_from(["login", "signup"]),
    time=st.floats(T0 - 10 * 86400, T0 + 10 * 86400),
    success=st.one_of(st.none(), st.booleans()),
    user_hash=st.one_of(st.none(), st.sampled_from(["a", "b", "c|d", "*"]), st.text(max_size=8)),
    user_id=st.one_of(st.none(), st.text(max_size=8)),
    client_ip=addresses,
    user_agent=st.one_of(st.none(), st.text(max_size=60), st.just("a|b*c")),
    trace_id=st.one_of(st.none(), st.text("0123456789abcdef", min_size=32, max_size=32)),
    network=networks,
)


@settings(max_examples=150, deadline=None)
@given(st.lists(events, min_size=1, max_size=40))
def test_any_stream_of_events_goes_through_every_detector_without_error(
    stream: list[Event],
) -> None:
    state = MemoryState()
    detectors = default_detectors(Rules())
    for event in stream:
        for signal in run_detectors(detectors, event, state):
            assert signal.event.kind in ("login", "signup")
            assert signal.severity in ("low", "medium", "high", "critical")
