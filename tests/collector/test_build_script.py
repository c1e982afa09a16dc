"""scripts/build-collector: a cached build costs nothing, and a machine without Go gets a clear
message instead of a half-built Collector."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from .harness import CONFIG_DIR, REPO

SCRIPT = REPO / "scripts" / "build-collector"


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT)],
        env={"PATH": os.environ["PATH"], "HOME": env.get("HOME", "/nonexistent"), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_cached_build_of_the_manifest_is_returned_without_building(tmp_path: Path) -> None:
    digest = hashlib.sha256((CONFIG_DIR / "builder-config.yaml").read_bytes()).hexdigest()
    cached = tmp_path / "otelcol" / digest / "otelcol-usermon"
    cached.parent.mkdir(parents=True)
    cached.write_text("#!/bin/sh\n")
    cached.chmod(0o755)

    # A Go that cannot run: any attempt to build would fail the script.
    result = _run({"USERMON_CACHE_DIR": str(tmp_path), "GO": str(tmp_path / "no-go")})

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == str(cached)
    assert "cached build" in result.stderr


def test_the_cache_key_is_the_manifest_so_another_manifest_is_not_a_hit(tmp_path: Path) -> None:
    stale = tmp_path / "otelcol" / ("0" * 64) / "otelcol-usermon"
    stale.parent.mkdir(parents=True)
    stale.write_text("#!/bin/sh\n")
    stale.chmod(0o755)

    result = _run({"USERMON_CACHE_DIR": str(tmp_path), "GO": str(tmp_path / "no-go")})

    assert result.returncode != 0
    assert result.stdout == ""


def test_without_go_it_fails_loudly_and_prints_no_path(tmp_path: Path) -> None:
    result = _run({"USERMON_CACHE_DIR": str(tmp_path), "GO": str(tmp_path / "no-go")})

    assert result.returncode == 1
    assert result.stdout == ""
    assert "Go is not installed" in result.stderr
    assert "USERMON_TEST_OTELCOL" in result.stderr


def test_the_cache_defaults_to_xdg_cache_home(tmp_path: Path) -> None:
    digest = hashlib.sha256((CONFIG_DIR / "builder-config.yaml").read_bytes()).hexdigest()
    cached = tmp_path / "usermon" / "otelcol" / digest / "otelcol-usermon"
    cached.parent.mkdir(parents=True)
    cached.write_text("#!/bin/sh\n")
    cached.chmod(0o755)

    result = _run({"XDG_CACHE_HOME": str(tmp_path), "GO": str(tmp_path / "no-go")})

    assert result.stdout.splitlines()[-1] == str(cached)
