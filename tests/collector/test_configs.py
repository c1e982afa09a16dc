"""Every file in collector-config/ is a configuration the pinned Collector accepts, says when to
use it, and documents the environment variables it reads; the manifest pins one release."""

from __future__ import annotations

import re
import subprocess
import urllib.request
from pathlib import Path

import pytest

from .conftest import Backends
from .harness import CONFIG_DIR, http_ok, run_collector

MANIFEST = CONFIG_DIR / "builder-config.yaml"
CONFIGS = sorted(p.name for p in CONFIG_DIR.glob("*.yaml") if p != MANIFEST)

# Dummy values: validation resolves variables but connects to nothing.
DUMMY_ENV = {
    "TRACING_BACKEND_ENDPOINT": "tracing-backend.invalid:4317",
    "TRACING_BACKEND_INSECURE": "true",
    "METRICS_BACKEND_ENDPOINT": "http://metrics-backend.invalid:9090/api/v1/otlp",
    "LOGS_BACKEND_ENDPOINT": "http://logs-backend.invalid:3100/otlp",
    "USERMON_PROCESSOR_ENDPOINT": "http://usermon-processor.invalid:4400",
    "USERMON_TOKEN": "dummy-token",
}
SCALE_OUT_ENV = {"USERMON_PROCESSOR_ENDPOINT": "dns:///usermon-processor.invalid:4317"}

_ENV_REFERENCE = re.compile(r"\$\{env:([A-Z0-9_]+)(:-[^}]*)?\}")


def _header(config: str) -> str:
    """The leading comment block of a config file."""
    lines = []
    for line in (CONFIG_DIR / config).read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return "\n".join(lines)


def _validate(binary: str, config: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", **DUMMY_ENV, "USERMON_COLLECTOR_QUEUE_DIR": str(tmp_path)}
    if config.name == "scale-out.yaml":
        env.update(SCALE_OUT_ENV)
    return subprocess.run(
        [binary, "validate", f"--config={config}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_there_is_a_config_for_each_situation() -> None:
    assert set(CONFIGS) >= {"gateway.yaml", "durable.yaml", "privacy.yaml", "scale-out.yaml"}


@pytest.mark.parametrize("config", CONFIGS)
def test_config_header_says_when_to_use_it(config: str) -> None:
    assert "Use it when" in _header(config)


@pytest.mark.parametrize("config", CONFIGS)
def test_config_documents_every_variable_it_reads(config: str) -> None:
    header = _header(config)
    read = {m.group(1) for m in _ENV_REFERENCE.finditer((CONFIG_DIR / config).read_text())}
    undocumented = sorted(name for name in read if name not in header)
    assert not undocumented, f"{config} reads {undocumented} without documenting them"


@pytest.mark.parametrize("config", CONFIGS)
def test_config_names_usermon_attributes_from_the_contract(config: str) -> None:
    """Every usermon.* / user.* name in a config is a name of the event contract or of the
    processor's finding records: a renamed attribute breaks this test, not production."""
    from usermon import attributes as A
    from usermon.processor.export import finding_attributes
    from usermon.processor.model import Finding, Subject

    finding = Finding(
        id="f1",
        kind="brute_force",
        severity="high",
        subject=Subject("user", "0" * 64, "someone"),
        first_seen=0.0,
        last_seen=0.0,
        event_count=1,
        summary="",
        evidence={"trace_ids": [], "ips": [], "users": []},
    )
    contract = {
        value for name, value in vars(A).items() if name.isupper() and isinstance(value, str)
    } | set(finding_attributes(finding))
    body = "\n".join(
        line
        for line in (CONFIG_DIR / config).read_text().splitlines()
        if not line.lstrip().startswith("#")
    )
    used = set(re.findall(r'"((?:usermon|user)\.[a-z_.]+?)"', body))
    used |= set(re.findall(r"name == \"([a-z_.]+)\"", body))
    used |= set(re.findall(r"key: ((?:usermon|user)\.[a-z_.]+)", body))
    assert used, f"{config} names no usermon attribute at all"
    assert used <= contract, f"{config} uses names outside the contract: {used - contract}"


def test_manifest_pins_every_component_to_one_release() -> None:
    versions = re.findall(r"^\s*- gomod: (\S+) (v\S+)$", MANIFEST.read_text(), re.MULTILINE)
    components = {version for module, version in versions if "/confmap/provider/" not in module}
    providers = {version for module, version in versions if "/confmap/provider/" in module}
    assert len(versions) >= 12
    assert len(components) == 1, f"components from several releases: {sorted(components)}"
    assert len(providers) == 1, f"providers from several releases: {sorted(providers)}"


@pytest.mark.collector
@pytest.mark.parametrize("config", CONFIGS)
def test_config_passes_otelcol_validate(otelcol_binary: str, config: str, tmp_path: Path) -> None:
    result = _validate(otelcol_binary, CONFIG_DIR / config, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.collector
def test_otelcol_validate_rejects_a_config_with_an_unknown_component(
    otelcol_binary: str, tmp_path: Path
) -> None:
    """The check above can fail: validation really resolves components against the build."""
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        (CONFIG_DIR / "gateway.yaml")
        .read_text()
        .replace("filter/usermon_spans:", "no_such_processor/usermon_spans:")
        .replace(
            "[memory_limiter, filter/usermon_spans",
            "[memory_limiter, no_such_processor/usermon_spans",
        )
    )
    result = _validate(otelcol_binary, broken, tmp_path)
    assert result.returncode != 0
    assert "no_such_processor" in result.stdout + result.stderr


@pytest.mark.parametrize("config", CONFIGS)
def test_config_takes_the_collectors_own_metrics_address_from_the_environment(config: str) -> None:
    """Jaeger v2 is a Collector too and serves its metrics on localhost:8888 as well: on one host,
    the second to start would fail unless the address can be moved, or the metrics turned off."""
    text = (CONFIG_DIR / config).read_text()
    for setting in (
        "level: ${env:USERMON_COLLECTOR_METRICS_LEVEL:-normal}",
        "host: ${env:USERMON_COLLECTOR_METRICS_HOST:-localhost}",
        "port: ${env:USERMON_COLLECTOR_METRICS_PORT:-8888}",
    ):
        assert setting in text, f"{config} lacks {setting}"


@pytest.mark.collector
def test_the_collector_serves_its_own_metrics_where_the_environment_says(
    otelcol_binary: str, backends: Backends, tmp_path: Path
) -> None:
    # run_collector gives USERMON_COLLECTOR_METRICS_PORT a free port of its own.
    with (
        run_collector(otelcol_binary, "gateway.yaml", backends.env(), tmp_path) as collector,
        urllib.request.urlopen(collector.metrics_url, timeout=5) as response,  # noqa: S310 - loopback
    ):
        page = response.read().decode()
    assert "otelcol_process_uptime" in page


@pytest.mark.collector
def test_metrics_level_none_turns_the_collectors_own_metrics_off(
    otelcol_binary: str, backends: Backends, tmp_path: Path
) -> None:
    env = {**backends.env(), "USERMON_COLLECTOR_METRICS_LEVEL": "none"}
    with run_collector(otelcol_binary, "gateway.yaml", env, tmp_path) as collector:
        assert not http_ok(collector.metrics_url)
        assert "Internal metrics telemetry disabled" in collector.log.read_text()
