"""usermon says once, loudly, when its events have no exporter to leave the process by."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from opentelemetry._logs import NoOpLoggerProvider
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.trace import NoOpTracerProvider, ProxyTracerProvider

from usermon.export_check import export_problem
from usermon.settings import EventSignal

WARNING = "usermon: login and signup events will NOT be exported"


def _sdk_tracer_provider() -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    return provider


def test_no_sdk_tracer_provider_is_a_problem() -> None:
    for provider in (ProxyTracerProvider(), NoOpTracerProvider()):
        problem = export_problem(EventSignal.SPAN, tracer_provider=provider)
        assert problem is not None
        assert type(provider).__name__ in problem


def test_an_sdk_tracer_provider_without_a_span_processor_is_a_problem() -> None:
    problem = export_problem(EventSignal.SPAN, tracer_provider=TracerProvider())
    assert problem is not None
    assert "no span processor" in problem


def test_an_sdk_tracer_provider_with_an_exporter_is_fine() -> None:
    assert export_problem(EventSignal.SPAN, tracer_provider=_sdk_tracer_provider()) is None


def test_log_events_need_a_logger_provider() -> None:
    assert export_problem(EventSignal.LOGS, logger_provider=NoOpLoggerProvider()) is not None
    assert export_problem(EventSignal.LOGS, logger_provider=LoggerProvider()) is None


def test_with_both_signals_one_working_provider_is_enough() -> None:
    working = export_problem(
        EventSignal.BOTH,
        tracer_provider=ProxyTracerProvider(),
        logger_provider=LoggerProvider(),
    )
    broken = export_problem(
        EventSignal.BOTH,
        tracer_provider=ProxyTracerProvider(),
        logger_provider=NoOpLoggerProvider(),
    )
    assert working is None
    assert broken is not None
    assert "tracer" in broken
    assert "logger" in broken


_APP = textwrap.dedent(
    """
    import usermon
    usermon.signup_track({"email": "ada@example.com"})
    usermon.auth_track(False, {"email": "ada@example.com"})
    usermon.auth_track(True, {"email": "ada@example.com"})
    """
)


def _run_under_the_launcher(tmp_path: Path, traces_exporter: str) -> str:
    script = tmp_path / "app.py"
    script.write_text(_APP)
    launcher = Path(sys.executable).with_name("opentelemetry-instrument")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "USERMON_"))},
        "OTEL_TRACES_EXPORTER": traces_exporter,
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }
    result = subprocess.run(
        [str(launcher), sys.executable, str(script)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stderr


@pytest.mark.integration
def test_a_launcher_whose_exporter_is_missing_gets_one_loud_warning(tmp_path: Path) -> None:
    """The issue's trap: opentelemetry-instrument asked for an exporter that is not installed
    (the distro's gRPC default with only the HTTP exporter), logged a RuntimeError and went on
    with no SDK at all. The application's own calls are the first usermon sees of it."""
    stderr = _run_under_the_launcher(tmp_path, "usermon_test_not_installed")

    assert "not found in entry point 'opentelemetry_traces_exporter'" in stderr
    assert stderr.count(WARNING) == 1
    assert "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf" in stderr


@pytest.mark.integration
def test_a_working_launcher_gets_no_warning(tmp_path: Path) -> None:
    stderr = _run_under_the_launcher(tmp_path, "console")

    assert WARNING not in stderr
