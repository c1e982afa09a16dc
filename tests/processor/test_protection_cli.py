"""The protection commands (usermon block / unblock / decisions / allow) against a real
``usermon serve`` on SQLite: they go through the API with the admin token, their decisions
survive a restart, and an application token cannot use them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result
from tests.support.servers import Subprocess, clean_environment, start_processor

from usermon.cli import main

pytestmark = pytest.mark.integration

ADMIN = "admin-token-0123456789"
APP = "app-token-0123456789abc"


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/usermon.db"


def serve(store: str) -> Subprocess:
    env = clean_environment(USERMON_TOKEN=ADMIN, USERMON_APP_TOKEN=APP)
    return start_processor(store, env=env)


@pytest.fixture
def processor(store: str) -> Iterator[Subprocess]:
    running = serve(store)
    yield running
    running.stop()


def usermon(processor: Subprocess, *args: str, token: str = ADMIN) -> Result:
    return CliRunner().invoke(
        main, [args[0], "--url", processor.url, *args[1:]], env={"USERMON_TOKEN": token}
    )


def test_block_list_and_unblock_an_address(processor: Subprocess) -> None:
    made = usermon(processor, "block", "ip", "192.0.2.7", "--for", "4h", "--reason", "scanner")
    assert made.exit_code == 0, made.output
    assert "block ip 192.0.2.7 until" in made.output
    listed = usermon(processor, "decisions", "--json")
    (decision,) = json.loads(listed.output)
    assert decision["reason"] == "scanner"
    assert decision["origin"].startswith("manual:cli")
    gone = usermon(processor, "unblock", "192.0.2.7")
    assert gone.exit_code == 0, gone.output
    assert decision["id"] in gone.output
    assert json.loads(usermon(processor, "decisions", "--json").output) == []


def test_block_a_network_and_unblock_it_by_id(processor: Subprocess) -> None:
    made = usermon(processor, "block", "network", "198.51.100.7/24", "--for", "15m", "--json")
    decision = json.loads(made.output)
    assert decision["value"] == "198.51.100.0/24"  # host bits cleared
    assert usermon(processor, "unblock", decision["id"]).exit_code == 0
    missing = usermon(processor, "unblock", decision["id"])
    assert missing.exit_code != 0
    assert "no active decision" in missing.output


def test_bad_input_is_refused_with_the_processors_message(processor: Subprocess) -> None:
    bad_cidr = usermon(processor, "block", "network", "198.51.100.0/33", "--for", "1h")
    assert bad_cidr.exit_code != 0
    assert "400" in bad_cidr.output
    assert "not a CIDR" in bad_cidr.output
    bad_time = usermon(processor, "block", "ip", "192.0.2.7", "--for", "-5m")
    assert bad_time.exit_code != 0
    assert "duration" in bad_time.output


def test_allow_lists_and_removes_an_entry(processor: Subprocess) -> None:
    assert usermon(processor, "allow", "10.0.0.0/8").exit_code == 0
    listed = json.loads(usermon(processor, "allow", "--json").output)
    assert [(e["kind"], e["value"]) for e in listed] == [("network", "10.0.0.0/8")]
    assert usermon(processor, "allow", "10.0.0.0/8", "--remove").exit_code == 0
    assert json.loads(usermon(processor, "allow", "--json").output) == []


def test_an_application_token_cannot_block_or_unblock(processor: Subprocess) -> None:
    refused = usermon(processor, "block", "ip", "192.0.2.7", "--for", "1h", token=APP)
    assert refused.exit_code != 0
    assert "403" in refused.output
    usermon(processor, "block", "ip", "192.0.2.7", "--for", "1h")
    assert "403" in usermon(processor, "unblock", "192.0.2.7", token=APP).output
    assert len(json.loads(usermon(processor, "decisions", "--json").output)) == 1


def test_decisions_survive_a_restart_and_the_stream_cursor_stays_valid(store: str) -> None:
    first = serve(store)
    try:
        usermon(first, "block", "ip", "192.0.2.7", "--for", "1h")
        headers = {"Authorization": f"Bearer {APP}"}
        before = httpx.get(first.url + "/api/decisions/stream", headers=headers).json()
    finally:
        first.stop()
    again = serve(store)
    try:
        listed = json.loads(usermon(again, "decisions", "--json").output)
        assert [d["value"] for d in listed] == ["192.0.2.7"]
        step = httpx.get(
            again.url + "/api/decisions/stream",
            params={"cursor": before["cursor"]},
            headers={"Authorization": f"Bearer {APP}"},
        ).json()
        assert step["full"] is False  # the same epoch and sequence after the restart
        assert step["new"] == []
    finally:
        again.stop()
