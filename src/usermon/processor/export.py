"""OTLP out: findings as log records, counters as metrics, to a configured OTLP/HTTP endpoint. This
module owns what the processor sends back into the team's pipeline. Each finding the engine opens or
grows becomes one LogRecord with ``event_name`` ``usermon.finding`` (its fields as
``usermon.finding.*`` attributes, the summary as body, a severity number), and each protection
decision made or removed one with ``event_name`` ``usermon.decision`` (``usermon.decision.*``
attributes). Counters go out as OTLP metrics: ``usermon.logins`` (by ``outcome``),
``usermon.signups``, ``usermon.findings`` (new findings, by ``kind``) and
``usermon.rejected_events``. No metric carries a per-user or per-address dimension: their
cardinality would be unbounded and they would leak identities. The OpenTelemetry SDK's batching
exporters do the sending, off the ingest path.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.util.types import AnyValue

from usermon import __version__
from usermon import attributes as A
from usermon.processor.model import Decision, Finding

__all__ = ["Exporter", "decision_attributes", "finding_attributes"]

_SEVERITY_NUMBERS = {"low": 9, "medium": 13, "high": 17, "critical": 21}  # INFO, WARN, ERROR, FATAL
_SEVERITY_TEXT = {"low": "INFO", "medium": "WARN", "high": "ERROR", "critical": "FATAL"}


def finding_attributes(finding: Finding) -> dict[str, AnyValue]:
    """A finding as log-record attributes (``usermon.finding.*``)."""
    out: dict[str, AnyValue] = {
        "usermon.finding.id": finding.id,
        "usermon.finding.kind": finding.kind,
        "usermon.finding.severity": finding.severity,
        "usermon.finding.subject.type": finding.subject.type,
        "usermon.finding.subject.id": finding.subject.id,
        "usermon.finding.first_seen": finding.first_seen,
        "usermon.finding.last_seen": finding.last_seen,
        "usermon.finding.event_count": finding.event_count,
        "usermon.finding.trace_ids": [str(t) for t in finding.evidence.get("trace_ids", [])],
        "usermon.finding.ips": [str(i) for i in finding.evidence.get("ips", [])],
        "usermon.finding.users": [str(u) for u in finding.evidence.get("users", [])],
    }
    if finding.subject.label:
        out["usermon.finding.subject.label"] = finding.subject.label
    return out


def decision_attributes(decision: Decision, change: str) -> dict[str, AnyValue]:
    """A decision as log-record attributes (``usermon.decision.*``); ``change`` is ``created``
    or ``removed``."""
    out: dict[str, AnyValue] = {
        "usermon.decision.change": change,
        "usermon.decision.id": decision.id,
        "usermon.decision.action": decision.action,
        "usermon.decision.scope": decision.scope,
        "usermon.decision.value": decision.value,
        "usermon.decision.until": decision.until,
        "usermon.decision.origin": decision.origin,
    }
    if decision.finding:
        out["usermon.decision.finding"] = decision.finding
    return out


class Exporter:
    """Sends findings and counters to ``endpoint`` (the OTLP/HTTP base URL, e.g.
    ``http://collector:4318``); ``headers`` for an Authorization header or the like."""

    def __init__(
        self,
        endpoint: str,
        *,
        headers: Mapping[str, str] | None = None,
        metric_interval: float = 10.0,
        service_name: str = "usermon-processor",
    ) -> None:
        resource = Resource.create({A.SERVICE_NAME: service_name, "service.version": __version__})
        base = endpoint.rstrip("/")
        self._logs = LoggerProvider(resource=resource)
        self._logs.add_log_record_processor(
            BatchLogRecordProcessor(
                OTLPLogExporter(endpoint=f"{base}/v1/logs", headers=dict(headers or {}))
            )
        )
        self._logger = self._logs.get_logger("usermon.processor", __version__)
        reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=f"{base}/v1/metrics", headers=dict(headers or {})),
            export_interval_millis=metric_interval * 1000,
        )
        self._meters = MeterProvider(resource=resource, metric_readers=[reader])
        meter = self._meters.get_meter("usermon.processor", __version__)
        self._logins = meter.create_counter("usermon.logins", "{login}", "Login attempts seen")
        self._signups = meter.create_counter("usermon.signups", "{signup}", "Signups seen")
        self._findings = meter.create_counter(
            "usermon.findings", "{finding}", "Findings opened, by kind"
        )
        self._rejected = meter.create_counter(
            "usermon.rejected_events", "{event}", "Events rejected (malformed, late, duplicate)"
        )
        self._last: dict[str, int] = {}
        self._last_kinds: dict[str, int] = {}

    def findings(self, findings: Sequence[Finding]) -> None:
        """One log record per finding (opened or grown) in this batch."""
        for finding in findings:
            self._logger.emit(
                timestamp=int(finding.last_seen * 1e9),
                severity_number=SeverityNumber(_SEVERITY_NUMBERS[finding.severity]),
                severity_text=_SEVERITY_TEXT[finding.severity],
                body=finding.summary,
                attributes={
                    **finding_attributes(finding),
                    "usermon.finding.evidence": json.dumps(finding.evidence, default=str),
                },
                event_name=A.FINDING_EVENT,
            )

    def decisions(self, decisions: Sequence[Decision], change: str) -> None:
        """One log record per decision ``created`` or ``removed``."""
        for decision in decisions:
            self._logger.emit(
                severity_number=SeverityNumber.WARN,
                severity_text="WARN",
                body=f"{change} {decision.action} {decision.scope} {decision.value}: "
                f"{decision.reason}",
                attributes=decision_attributes(decision, change),
                event_name=A.DECISION_EVENT,
            )

    def counters(self, stats: Mapping[str, int], findings_by_kind: Mapping[str, int]) -> None:
        """Add what the running totals grew by since the last call."""
        last = self._last

        def grew(name: str) -> int:
            delta = stats.get(name, 0) - last.get(name, 0)
            last[name] = stats.get(name, 0)
            return delta

        if n := grew("logins_success"):
            self._logins.add(n, {"outcome": "success"})
        if n := grew("logins_failure"):
            self._logins.add(n, {"outcome": "failure"})
        if n := grew("logins_blocked"):
            self._logins.add(n, {"outcome": "blocked"})
        if n := grew("signups"):
            self._signups.add(n)
        if n := grew("rejected"):
            self._rejected.add(n, {"reason": "invalid"})
        if n := grew("duplicates"):
            self._rejected.add(n, {"reason": "duplicate"})
        for kind, total in findings_by_kind.items():
            delta = total - self._last_kinds.get(kind, 0)
            self._last_kinds[kind] = total
            if delta:
                self._findings.add(delta, {"kind": kind})

    def shutdown(self) -> None:
        """Flush and stop both exporters."""
        self._logs.shutdown()
        self._meters.shutdown()
