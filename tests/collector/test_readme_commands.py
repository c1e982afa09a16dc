"""The README's zero-code commands, exactly as written, on a fresh machine.

The commands are read from README.md itself, so this test breaks when the README drifts: its
``pip install`` line runs in a new virtual environment beside a checkout named ``usermon`` (as the
README's Install section clones it), then its ``opentelemetry-instrument flask --app app run``
commands start the Flask-Login example, once into the real Collector (gateway.yaml) and once
straight into the processor. Only the host and port of ``OTEL_EXPORTER_OTLP_ENDPOINT`` are
replaced (the README's ``collector:4318`` is this test's Collector; ``127.0.0.1:4400`` this test's
processor), and Flask's port is given by ``FLASK_RUN_PORT``. A few hermetic tests check that every
zero-code command in the README, docs/ and examples/ agrees on protocol and ports.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import Backends
from .harness import REPO, free_port, run_collector, run_processor, wait_until

README = REPO / "README.md"
EXAMPLE = REPO / "examples" / "flask_login"
FLASK_RUN = ["opentelemetry-instrument", "flask", "--app", "app", "run"]
NOT_EXPORTED = "usermon: login and signup events will NOT be exported"
ASSIGNMENT = re.compile(r"[A-Z][A-Z0-9_]*=")


@dataclass(frozen=True)
class Command:
    env: dict[str, str]
    argv: list[str]


def shell_commands(markdown: str) -> list[Command]:
    """Every command of the ``sh`` / ``bash`` blocks, continuation lines joined, split into its
    leading ``VAR=value`` assignments and its argv (comments dropped)."""
    commands = []
    for block in re.findall(r"```(?:sh|bash|console)\n(.*?)```", markdown, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            env = {}
            while words and ASSIGNMENT.match(words[0]):
                name, _, value = words.pop(0).partition("=")
                env[name] = value
            if words:
                commands.append(Command(env, words))
    return commands


def readme_flask_runs() -> dict[str, Command]:
    """The README's Flask zero-code runs, by the port their endpoint names."""
    runs = [c for c in shell_commands(README.read_text()) if c.argv == FLASK_RUN]
    return {str(urllib.parse.urlsplit(c.env["OTEL_EXPORTER_OTLP_ENDPOINT"]).port): c for c in runs}


def readme_flask_install() -> list[str]:
    [install] = [
        c.argv
        for c in shell_commands(README.read_text())
        if c.argv[:2] == ["pip", "install"] and "opentelemetry-instrumentation-flask" in c.argv
    ]
    return install


# -- hermetic: what the documents say -------------------------------------------------------------


def _documents() -> list[Path]:
    return [README, *sorted((REPO / "docs").glob("*.md")), *sorted(REPO.glob("examples/*/*.md"))]


def test_the_readme_has_the_collector_and_the_processor_paths() -> None:
    runs = readme_flask_runs()

    assert set(runs) == {"4318", "4400"}
    assert urllib.parse.urlsplit(runs["4400"].env["OTEL_EXPORTER_OTLP_ENDPOINT"]).hostname in (
        "127.0.0.1",
        "localhost",
    )
    assert readme_flask_install()[2].startswith("./usermon[")


def test_every_zero_code_command_sends_otlp_http_to_an_http_port() -> None:
    """opentelemetry-distro defaults to gRPC: a command that names an endpoint must also name
    the protocol, and the port must be one that speaks OTLP/HTTP (the Collector's 4318 or the
    processor's 4400)."""
    checked = 0
    for document in _documents():
        for command in shell_commands(document.read_text()):
            endpoint = command.env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
            if "opentelemetry-instrument" not in command.argv or endpoint is None:
                continue
            checked += 1
            where = f"{document.relative_to(REPO)}: {shlex.join(command.argv)}"
            assert command.env.get("OTEL_EXPORTER_OTLP_PROTOCOL") == "http/protobuf", where
            assert urllib.parse.urlsplit(endpoint).port in (4318, 4400), where
    assert checked >= 5


def test_the_sdk_extra_brings_the_otlp_exporter_of_both_protocols() -> None:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    sdk = project["optional-dependencies"]["sdk"]

    assert any(re.match(r"opentelemetry-exporter-otlp\b(?!-)", dep) for dep in sdk), sdk


# -- the commands, run ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FreshMachine:
    home: Path  # holds the checkout ./usermon and the venv
    venv: Path

    def env(self) -> dict[str, str]:
        """The shell of someone who just activated the venv: none of our variables."""
        clean = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("OTEL_", "USERMON_", "PYTHON", "VIRTUAL_ENV", "FLASK_"))
        }
        clean["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{clean.get('PATH', '')}"
        clean["VIRTUAL_ENV"] = str(self.venv)
        return clean


@pytest.fixture(scope="module")
def fresh_machine(tmp_path_factory: pytest.TempPathFactory) -> FreshMachine:
    """A new venv with what the README's Flask ``pip install`` line installs, from a copy of this
    checkout named ``usermon`` (pip's cache may serve the downloads)."""
    home = tmp_path_factory.mktemp("fresh")
    checkout = home / "usermon"
    checkout.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, checkout / name)
    shutil.copytree(
        REPO / "src",
        checkout / "src",
        ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyd", "*.egg-info"),
    )
    venv = home / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    machine = FreshMachine(home, venv)
    install = readme_flask_install()
    assert install[0] == "pip"
    done = subprocess.run(
        [str(venv / "bin" / "pip"), *install[1:], "--quiet", "--disable-pip-version-check"],
        cwd=home,
        env=machine.env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return machine


def _post(url: str, **form: str) -> int:
    data = urllib.parse.urlencode(form).encode()
    try:
        with urllib.request.urlopen(url, data=data, timeout=10) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


@contextlib.contextmanager
def _run_example(
    machine: FreshMachine, command: Command, endpoint: str, workdir: Path
) -> Iterator[tuple[str, list[str]]]:
    """Start the README's command in a copy of examples/flask_login; yields the app's URL and,
    once the block is left and the app stopped with Ctrl-C (which flushes its exporters), its
    output lines in the list."""
    app_dir = workdir / "flask_login"
    shutil.copytree(EXAMPLE, app_dir, ignore=shutil.ignore_patterns("__pycache__"))
    port = free_port()
    env = {**machine.env(), **command.env, "FLASK_RUN_PORT": str(port)}
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    log = workdir / f"app-{port}.log"
    output: list[str] = []
    with log.open("wb") as out:
        process = subprocess.Popen(
            command.argv, cwd=app_dir, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: process.poll() is not None or _answers(url),
            timeout=60,
            what="the example app to answer",
        )
        assert process.poll() is None, log.read_text(errors="replace")
        yield url, output
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        output.extend(log.read_text(errors="replace").splitlines())


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/me", timeout=1):  # noqa: S310 - loopback test URL
            return True
    except urllib.error.HTTPError:
        return True  # 401: Flask is serving
    except OSError:
        return False


def _play(url: str) -> None:
    assert _post(url + "/signup", email="ada@example.com", password="correct horse") == 201
    assert _post(url + "/login", email="ada@example.com", password="wrong") == 401
    assert _post(url + "/login", email="ada@example.com", password="correct horse") == 200


def _assert_ada_arrived(users: object) -> None:
    assert isinstance(users, dict)
    ada = users.get("ada@example.com")
    assert ada is not None, f"the processor has no ada@example.com; users: {sorted(users)}"
    assert ada["signups"]["24h"] == 1
    assert ada["failures"]["24h"] == 1
    assert ada["successes"]["24h"] == 1


def _assert_exported_cleanly(output: list[str]) -> None:
    text = "\n".join(output)
    for trouble in (NOT_EXPORTED, "Failed to export", "not found in entry point", "Traceback"):
        assert trouble not in text, text


@pytest.mark.collector
@pytest.mark.slow
def test_the_readme_commands_straight_into_the_processor(
    fresh_machine: FreshMachine, tmp_path: Path
) -> None:
    command = readme_flask_runs()["4400"]
    with run_processor(tmp_path) as processor:
        with _run_example(fresh_machine, command, processor.url, tmp_path) as (url, output):
            _play(url)
            wait_until(
                lambda: "ada@example.com" in processor.users(),
                timeout=30,
                what="ada's events at the processor",
            )
        _assert_ada_arrived(processor.users())
    _assert_exported_cleanly(output)


@pytest.mark.collector
@pytest.mark.slow
def test_the_readme_commands_through_the_collector(
    fresh_machine: FreshMachine, otelcol_binary: str, backends: Backends, tmp_path: Path
) -> None:
    command = readme_flask_runs()["4318"]
    with contextlib.ExitStack() as stack:
        processor = stack.enter_context(run_processor(tmp_path))
        env = {**backends.env(), "USERMON_PROCESSOR_ENDPOINT": processor.url}
        collector = stack.enter_context(
            run_collector(otelcol_binary, "gateway.yaml", env, tmp_path)
        )
        with _run_example(fresh_machine, command, collector.http_url, tmp_path) as (url, output):
            _play(url)
            wait_until(
                lambda: "ada@example.com" in processor.users(),
                timeout=30,
                what="ada's events at the processor, through the Collector",
            )
        _assert_ada_arrived(processor.users())
    _assert_exported_cleanly(output)
