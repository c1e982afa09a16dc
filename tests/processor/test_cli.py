"""The usermon command: serve's help, and the query commands against a running processor."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
from click.testing import CliRunner

from usermon.cli import main

from .conftest import Running
from .payloads import logins

PB = {"Content-Type": "application/x-protobuf"}


def test_importing_the_cli_does_not_import_the_processor() -> None:
    code = (
        "import sys, usermon.cli; "
        "print(any(m.startswith('usermon.processor') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_serve_help_documents_every_option() -> None:
    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0
    for option in (
        "--listen",
        "--store",
        "--token",
        "--max-body-bytes",
        "--grpc-listen",
        "--otlp-endpoint",
        "--lateness",
        "--max-keys",
        "USERMON_TOKEN",
    ):
        assert option in result.output


def test_findings_json_lists_the_api_findings(running: Running) -> None:
    httpx.post(running.url + "/v1/traces", content=logins(3), headers=PB)
    result = CliRunner().invoke(main, ["findings", "--url", running.url, "--json"])
    assert result.exit_code == 0, result.output
    (finding,) = json.loads(result.output)
    assert finding["kind"] == "brute_force"


def test_findings_table_is_readable(running: Running) -> None:
    httpx.post(running.url + "/v1/traces", content=logins(3), headers=PB)
    result = CliRunner().invoke(main, ["findings", "--url", running.url], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "brute_force" in result.output
    assert "alice@example.com" in result.output


def test_users_and_user_by_label(running: Running) -> None:
    httpx.post(running.url + "/v1/traces", content=logins(2), headers=PB)
    listing = CliRunner().invoke(main, ["users", "--url", running.url, "--json"])
    assert [u["label"] for u in json.loads(listing.output)] == ["alice@example.com"]
    one = CliRunner().invoke(main, ["user", "alice@example.com", "--url", running.url, "--json"])
    assert one.exit_code == 0, one.output
    assert json.loads(one.output)["failures"]["1m"] == 2
    table = CliRunner().invoke(main, ["user", "h-alice@example.com", "--url", running.url])
    assert "failures" in table.output


def test_an_unknown_user_is_a_clear_error(running: Running) -> None:
    result = CliRunner().invoke(main, ["user", "nobody", "--url", running.url])
    assert result.exit_code == 1
    assert "no user 'nobody'" in result.output


def test_an_unreachable_processor_is_a_clear_error() -> None:
    result = CliRunner().invoke(main, ["findings", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 1
    assert "cannot reach the processor" in result.output
