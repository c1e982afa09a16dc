"""scripts/build-jaeger: the Jaeger release is pinned in one place, a cached build of it costs
nothing, and a machine without a suitable Go gets a clear message instead of a half-built Jaeger."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from .harness import REPO

SCRIPT = REPO / "scripts" / "build-jaeger"


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args],
        env={"PATH": os.environ["PATH"], "HOME": env.get("HOME", "/nonexistent"), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _pinned() -> str:
    result = _run({}, "--version")
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _fake_go(tmp_path: Path, version: str) -> Path:
    go = tmp_path / "fake-go"
    go.write_text(f'#!/bin/sh\n[ "$1 $2" = "env GOVERSION" ] && echo {version} && exit 0\nexit 3\n')
    go.chmod(0o755)
    return go


def test_the_version_is_pinned_once_in_the_script() -> None:
    assert re.fullmatch(r"v1\.\d+\.\d+", _pinned())
    text = SCRIPT.read_text()
    assert text.count(_pinned()) == 1


def test_a_cached_build_of_the_pinned_version_is_returned_without_building(tmp_path: Path) -> None:
    cached = tmp_path / "jaeger" / _pinned() / "jaeger"
    cached.parent.mkdir(parents=True)
    cached.write_text("#!/bin/sh\n")
    cached.chmod(0o755)

    # A Go that cannot run: any attempt to build would fail the script.
    result = _run({"USERMON_CACHE_DIR": str(tmp_path), "GO": str(tmp_path / "no-go")})

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == str(cached)
    assert "cached build" in result.stderr


def test_a_build_of_another_version_is_not_a_hit(tmp_path: Path) -> None:
    stale = tmp_path / "jaeger" / "v1.0.0" / "jaeger"
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
    assert "USERMON_TEST_JAEGER" in result.stderr


def test_a_go_older_than_jaegers_is_refused_before_building(tmp_path: Path) -> None:
    go = _fake_go(tmp_path, "go1.22.5")

    result = _run({"USERMON_CACHE_DIR": str(tmp_path), "GO": str(go)})

    assert result.returncode == 1
    assert result.stdout == ""
    assert "go1.22.5" in result.stderr
    assert "needs Go >=" in result.stderr
    assert not (tmp_path / "jaeger").exists()
