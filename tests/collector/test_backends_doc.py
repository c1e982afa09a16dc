"""docs/backends.md: every name its queries use is a name the SDK, the Collector configs or the
processor actually produce, so a query copied from the page finds something."""

from __future__ import annotations

import re

from usermon import attributes as A

from .harness import CONFIG_DIR, REPO

DOC = (REPO / "docs" / "backends.md").read_text()
CONTRACT = {value for name, value in vars(A).items() if name.isupper() and isinstance(value, str)}
RESOURCE = {A.SERVICE_NAME}


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC, re.DOTALL)


def _attribute_known(name: str) -> bool:
    return name in CONTRACT or name.startswith(A.IDENTIFIER_PREFIX)


def test_traceql_queries_use_the_contracts_event_and_attribute_names() -> None:
    queries = _blocks("traceql")
    assert len(queries) >= 8
    for query in queries:
        for event in re.findall(r'event:name = "([^"]+)"', query):
            assert event in (A.LOGIN_EVENT, A.SIGNUP_EVENT), query
        for scope, name in re.findall(r"\b(event|span|resource)\.([a-z_.]+[a-z_])", query):
            if scope == "resource":
                assert name in RESOURCE, query
            else:
                assert _attribute_known(name), f"{scope}.{name} in {query}"


def test_jaeger_tags_use_the_contracts_names() -> None:
    section = DOC[DOC.index("## Jaeger") : DOC.index("## Prometheus")]
    table = "\n".join(line for line in section.splitlines() if line.startswith("|"))
    tags = re.findall(r"`((?:[a-z_.]+=[^ `]+ ?)+)`", table)
    assert tags
    for tag_list in tags:
        for key, value in (pair.split("=", 1) for pair in tag_list.split()):
            if key == "event":  # Jaeger's field for the event name
                assert value in (A.LOGIN_EVENT, A.SIGNUP_EVENT)
            else:
                assert _attribute_known(key), tag_list


def test_promql_metrics_are_what_the_collector_configs_count() -> None:
    counted = set(
        re.findall(
            r"^      (usermon\.collector\.[a-z_]+):$",
            (CONFIG_DIR / "gateway.yaml").read_text(),
            re.MULTILINE,
        )
    )
    assert counted == {"usermon.collector.logins", "usermon.collector.signups"}
    # Prometheus' default OTLP translation: dots to underscores, counters end in _total.
    translated = {name.replace(".", "_") + "_total" for name in counted}
    processor_counters = {"usermon_logins_total", "usermon_findings_total"}
    labels = {"service_name", "usermon_login_success", "kind", "outcome"}
    for query in _blocks("promql"):
        for metric in re.findall(r"\b(usermon_[a-z_]+_total)\b", query):
            assert metric in translated | processor_counters, query
        for label in re.findall(r"\b([a-z_]+)=\"", query) + re.findall(r"by \(([a-z_]+)\)", query):
            assert label in labels, query
    assert A.LOGIN_SUCCESS.replace(".", "_") in labels
