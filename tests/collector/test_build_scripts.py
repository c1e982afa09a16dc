"""scripts/build-collector and scripts/build-jaeger: each builds its Go program once, cached under
what pins it (the manifest's sha256, the Jaeger version), waits on a lock instead of building twice,
and a machine without a suitable Go gets a clear message instead of a half-built binary.

Both share scripts/lib/go-program.sh; the table below runs every behaviour against both. The
builds themselves run a stand-in Go (a shell script that answers the few commands the scripts
call), so the build path is covered here without a 10-minute compile; CI builds the real ones.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from .harness import CONFIG_DIR, REPO


@dataclass(frozen=True)
class Script:
    name: str
    cache_dir: str  # below the usermon cache folder
    binary_name: str
    prebuilt_var: str
    kept_beside: str  # a file a build publishes next to the binary

    @property
    def path(self) -> Path:
        return REPO / "scripts" / self.name

    def key(self) -> str:
        """What a build is cached under."""
        if self.name == "build-collector":
            return hashlib.sha256((CONFIG_DIR / "builder-config.yaml").read_bytes()).hexdigest()
        return _run(self, {}, "--version").stdout.strip()

    def cached(self, usermon_cache: Path, key: str | None = None) -> Path:
        return usermon_cache / self.cache_dir / (key or self.key()) / self.binary_name


COLLECTOR = Script(
    "build-collector", "otelcol", "otelcol-usermon", "USERMON_TEST_OTELCOL", "builder-config.yaml"
)
JAEGER = Script("build-jaeger", "jaeger", "jaeger", "USERMON_TEST_JAEGER", "go.mod")


@pytest.fixture(params=[COLLECTOR, JAEGER], ids=lambda s: s.name)
def script(request: pytest.FixtureRequest) -> Script:
    return request.param  # type: ignore[no-any-return]


def _env(env: dict[str, str]) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "HOME": env.get("HOME", "/nonexistent"), **env}


def _run(script: Script, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(script.path), *args],
        env=_env(env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _plant(binary: Path) -> None:
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)


# A stand-in for Go: reports a version, and does what `go install` (of the Collector builder),
# `go mod init`, `go get -tool` and `go build -o` would leave behind, logging each call.
_FAKE_BUILDER = r"""#!/bin/sh
echo "builder $*" >>"$FAKE_GO_LOG"
cfg=$3
out=$(sed -n 's/^[[:space:]]*output_path:[[:space:]]*//p' "$cfg")
mkdir -p "$out" && printf '#!/bin/sh\n' >"$out/otelcol-usermon" && chmod +x "$out/otelcol-usermon"
"""
_FAKE_GO = r"""#!/bin/sh
[ "$1 $2" = "env GOVERSION" ] && echo "$FAKE_GO_VERSION" && exit 0
echo "go $* GOTOOLCHAIN=$GOTOOLCHAIN" >>"$FAKE_GO_LOG"
case "$1" in
install) mkdir -p "$GOBIN" && cp "$FAKE_BUILDER" "$GOBIN/builder" ;;
mod) echo "module $3" >go.mod ;;
get) ;;
build) while [ $# -gt 0 ]; do [ "$1" = -o ] && out=$2; shift; done
       printf '#!/bin/sh\n' >"$out" && chmod +x "$out" ;;
*) exit 3 ;;
esac
"""


@pytest.fixture
def fake_go(tmp_path: Path) -> dict[str, str]:
    """The environment of a run with the stand-in Go (GO, and where it logs)."""
    go, builder = tmp_path / "fake-go", tmp_path / "fake-builder"
    go.write_text(_FAKE_GO)
    builder.write_text(_FAKE_BUILDER)
    go.chmod(0o755)
    builder.chmod(0o755)
    return {
        "GO": str(go),
        "FAKE_GO_VERSION": "go1.99.0",
        "FAKE_BUILDER": str(builder),
        "FAKE_GO_LOG": str(tmp_path / "go.log"),
    }


def test_a_cached_build_is_returned_without_building(script: Script, tmp_path: Path) -> None:
    cached = script.cached(tmp_path)
    _plant(cached)

    # A Go that cannot run: any attempt to build would fail the script.
    result = _run(script, {"USERMON_CACHE_DIR": str(tmp_path), "GO": str(tmp_path / "no-go")})

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == str(cached)
    assert "cached build" in result.stderr


def test_the_cache_defaults_to_xdg_cache_home(script: Script, tmp_path: Path) -> None:
    cached = script.cached(tmp_path / "usermon")
    _plant(cached)

    result = _run(script, {"XDG_CACHE_HOME": str(tmp_path), "GO": str(tmp_path / "no-go")})

    assert result.stdout.splitlines()[-1] == str(cached)


def test_a_build_under_another_key_is_not_a_hit(script: Script, tmp_path: Path) -> None:
    _plant(script.cached(tmp_path, key="0" * 64 if script is COLLECTOR else "v1.0.0"))

    result = _run(script, {"USERMON_CACHE_DIR": str(tmp_path), "GO": str(tmp_path / "no-go")})

    assert result.returncode != 0
    assert result.stdout == ""


def test_without_go_it_fails_loudly_and_prints_no_path(script: Script, tmp_path: Path) -> None:
    result = _run(script, {"USERMON_CACHE_DIR": str(tmp_path), "GO": str(tmp_path / "no-go")})

    assert result.returncode == 1
    assert result.stdout == ""
    assert "Go is not installed" in result.stderr
    assert script.prebuilt_var in result.stderr


def test_a_go_too_old_is_refused_before_building(
    script: Script, tmp_path: Path, fake_go: dict[str, str]
) -> None:
    env = {**fake_go, "USERMON_CACHE_DIR": str(tmp_path), "FAKE_GO_VERSION": "go1.22.5"}

    result = _run(script, env)

    assert result.returncode == 1
    assert result.stdout == ""
    assert "go1.22.5" in result.stderr
    assert "needs Go >=" in result.stderr
    assert not (tmp_path / script.cache_dir).exists()


def test_a_build_is_published_under_its_key_and_then_served_from_the_cache(
    script: Script, tmp_path: Path, fake_go: dict[str, str]
) -> None:
    env = {**fake_go, "USERMON_CACHE_DIR": str(tmp_path)}

    built = _run(script, env)
    again = _run(script, env)

    assert built.returncode == 0, built.stderr
    cached = script.cached(tmp_path)
    assert built.stdout.splitlines()[-1] == str(cached)
    assert os.access(cached, os.X_OK)
    assert (cached.parent / script.kept_beside).is_file()
    # Go never fetches another toolchain, and the scratch build folder is gone.
    assert "GOTOOLCHAIN=local" in Path(fake_go["FAKE_GO_LOG"]).read_text()
    assert not list((tmp_path / script.cache_dir).glob(".build.*"))
    assert again.stdout.splitlines()[-1] == str(cached)
    assert "cached build" in again.stderr


def test_a_run_waits_for_the_build_lock_and_returns_what_the_other_run_built(
    script: Script, tmp_path: Path, fake_go: dict[str, str]
) -> None:
    cache = tmp_path / script.cache_dir
    cache.mkdir()
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run, building
        waiting = subprocess.Popen(
            [str(script.path)],
            env=_env({**fake_go, "USERMON_CACHE_DIR": str(tmp_path)}),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert waiting.stderr is not None
        while "waiting for the build lock" not in (line := waiting.stderr.readline()):
            assert line, "the script ended before it took the lock"
        _plant(script.cached(tmp_path))  # what the other run publishes before it lets go
    out, err = waiting.communicate(timeout=60)

    assert waiting.returncode == 0, err
    assert out.splitlines()[-1] == str(script.cached(tmp_path))
    assert "built meanwhile" in err
    assert not Path(fake_go["FAKE_GO_LOG"]).exists()  # it built nothing itself


def test_the_jaeger_version_is_pinned_once_in_its_script() -> None:
    pinned = JAEGER.key()
    assert re.fullmatch(r"v1\.\d+\.\d+", pinned)
    assert JAEGER.path.read_text().count(pinned) == 1
