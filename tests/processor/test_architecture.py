"""The processor's dependencies point one way: service -> engine -> state protocol <- backends.

Read from the source with ``scripts/deps`` (ast, nothing imported), so a test fails the moment a
store imports the engine or a detector imports a backend, whatever the import would do at run
time. ``scripts/deps`` prints the same graph.
"""

from __future__ import annotations

import runpy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
_deps: dict[str, Any] = runpy.run_path(str(ROOT / "scripts" / "deps"), run_name="deps")
graph: Callable[[], dict[str, dict[str, str]]] = _deps["graph"]

P = "usermon.processor."
GRAPH = graph()
BACKENDS = {
    P + "storage.memory",
    P + "storage.sqlite",
    P + "storage.redis",
    P + "storage.postgresql",
    P + "storage.state.memory",
    P + "storage.state.redis",
}


def _under(prefix: str) -> list[str]:
    return [name for name in GRAPH if name == prefix or name.startswith(prefix + ".")]


def _imports(module: str) -> set[str]:
    """What ``module`` imports of the processor, at import time, lazily or for typing alike."""
    return set(GRAPH[module])


def test_the_graph_covers_the_processor() -> None:
    for module in ("engine", "service", "storage.base", "storage.state.base", "findings"):
        assert P + module in GRAPH


@pytest.mark.parametrize("module", _under(P + "storage"))
def test_storage_imports_nothing_above_it(module: str) -> None:
    """A store or a state backend may use the data model, the findings' merge rule and the rest
    of storage: never the engine, aggregation, the detectors, the service or the API."""
    allowed = {P + "model", P + "findings"}
    above = {
        dep for dep in _imports(module) if dep not in allowed and not dep.startswith(P + "storage")
    }
    assert not above, f"{module} imports {sorted(above)}"


@pytest.mark.parametrize("module", _under(P + "storage.state"))
def test_the_state_knows_no_store(module: str) -> None:
    """The engine's state is below the stores: its backends share errors and the Redis helpers
    with them, nothing else."""
    allowed = {P + "storage.errors", P + "storage.redis_common"}
    stores = {
        dep
        for dep in _imports(module)
        if dep.startswith(P + "storage")
        and not dep.startswith(P + "storage.state")
        and dep not in allowed
    }
    assert not stores, f"{module} imports {sorted(stores)}"


@pytest.mark.parametrize(
    "module",
    [P + "engine", P + "aggregation", P + "findings", *_under(P + "detectors")],
)
def test_the_engine_sees_the_state_protocol_not_a_backend(module: str) -> None:
    """The engine, aggregation and the detectors work on any state: they import the protocol,
    never a backend or a store."""
    backends = _imports(module) & (BACKENDS | {P + "storage.base"})
    assert not backends, f"{module} imports {sorted(backends)}"


def test_nothing_below_the_service_imports_it() -> None:
    above = {P + "service", P + "server", P + "grpc_receiver", P + "runner", P + "serve"}
    # The dashboard is part of the HTTP side, beside the server that mounts it.
    allowed = above | set(_under(P + "dashboard"))
    offenders = {
        module: sorted(_imports(module) & above) for module in GRAPH if module not in allowed
    }
    assert {m: deps for m, deps in offenders.items() if deps} == {}


def test_a_store_importing_the_engine_is_caught(tmp_path: Path) -> None:
    """The rule can fail: the same reading of a tree where a store imports the engine."""
    package = tmp_path / "usermon" / "processor" / "storage"
    package.mkdir(parents=True)
    for folder in (tmp_path / "usermon", tmp_path / "usermon" / "processor", package):
        (folder / "__init__.py").write_text("")
    (tmp_path / "usermon" / "processor" / "engine.py").write_text("")
    (package / "bad.py").write_text("from usermon.processor.engine import Engine\n")
    read: Callable[[Path], dict[str, dict[str, str]]] = _deps["graph"]
    assert P + "engine" in read(tmp_path)[P + "storage.bad"]
