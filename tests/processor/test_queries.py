"""One rule for naming a user and one for time bounds, in the API and the CLI alike."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from click.testing import CliRunner

from usermon.cli import main
from usermon.processor.queries import parse_since

from .conftest import Running
from .payloads import logins

PB = {"Content-Type": "application/x-protobuf"}


def test_the_api_finds_a_user_by_label_as_the_cli_does(running: Running) -> None:
    httpx.post(running.url + "/v1/traces", content=logins(3), headers=PB, timeout=10)

    by_label = httpx.get(running.url + "/api/users/alice@example.com", timeout=10)
    by_hash = httpx.get(running.url + "/api/users/h-alice@example.com", timeout=10)
    cli = CliRunner().invoke(main, ["user", "alice@example.com", "--url", running.url, "--json"])

    assert by_label.status_code == 200
    assert by_label.json() == by_hash.json()
    assert by_label.json()["user_hash"] == "h-alice@example.com"
    assert [f["kind"] for f in by_label.json()["findings"]] == ["brute_force"]
    assert cli.exit_code == 0, cli.output
    assert json.loads(cli.output) == by_hash.json()


def test_a_label_with_a_slash_is_found_too(running: Running) -> None:
    httpx.post(running.url + "/v1/traces", content=logins(1, user="team/ada"), headers=PB)

    cli = CliRunner().invoke(main, ["user", "team/ada", "--url", running.url, "--json"])

    assert cli.exit_code == 0, cli.output
    assert json.loads(cli.output)["user_hash"] == "h-team/ada"


def test_an_unknown_user_is_404_by_label_or_hash(running: Running) -> None:
    httpx.post(running.url + "/v1/traces", content=logins(1), headers=PB, timeout=10)

    assert httpx.get(running.url + "/api/users/bob@example.com").status_code == 404
    assert httpx.get(running.url + "/api/users/h-bob@example.com").status_code == 404


def test_since_takes_a_duration_back_from_now() -> None:
    now = 1_800_000_000.0
    assert parse_since("30s", now) == now - 30
    assert parse_since("15m", now) == now - 900
    assert parse_since("1h", now) == now - 3600
    assert parse_since(" 7d ", now) == now - 7 * 86_400
    assert parse_since("2w", now) == now - 14 * 86_400
    assert parse_since("1.5h", now) == now - 5400


def test_since_still_takes_epoch_seconds_and_iso_8601() -> None:
    assert parse_since("1750000000") == 1_750_000_000.0
    assert parse_since("2025-06-15T15:06:40Z") == 1_750_000_000.0
    assert parse_since("2025-06-15T15:06:40") == 1_750_000_000.0  # naive is UTC
    assert parse_since(None) is None
    assert parse_since("") is None


@pytest.mark.parametrize("bad", ["1x", "h", "-1h", "yesterday", "1h30m"])
def test_a_bad_since_names_every_form(bad: str) -> None:
    with pytest.raises(ValueError, match=r"15m, 1h.*epoch.*ISO 8601"):
        parse_since(bad)


def test_relative_since_in_the_api(running: Running) -> None:
    two_minutes_ago = time.time() - 120
    httpx.post(running.url + "/v1/traces", content=logins(3, t0=two_minutes_ago), headers=PB)

    def count(path: str, since: str) -> int:
        response = httpx.get(running.url + path, params={"since": since}, timeout=10)
        assert response.status_code == 200, response.text
        return len(next(iter(response.json().values())))

    assert count("/api/users", "1h") == 1
    assert count("/api/users", "1m") == 0
    assert count("/api/findings", "15m") == 1
    assert count("/api/findings", "30s") == 0
    bad = httpx.get(running.url + "/api/findings", params={"since": "soon"}, timeout=10)
    assert bad.status_code == 400
    assert "15m" in bad.json()["error"]


def test_relative_since_in_the_cli(running: Running) -> None:
    two_minutes_ago = time.time() - 120
    httpx.post(running.url + "/v1/traces", content=logins(3, t0=two_minutes_ago), headers=PB)

    def rows(*args: str) -> list[object]:
        result = CliRunner().invoke(main, [*args, "--url", running.url, "--json"])
        assert result.exit_code == 0, result.output
        return list(json.loads(result.output))

    assert len(rows("users", "--since", "1h")) == 1
    assert rows("users", "--since", "1m") == []
    assert len(rows("findings", "--since", "15m")) == 1
    assert rows("findings", "--since", "30s") == []
