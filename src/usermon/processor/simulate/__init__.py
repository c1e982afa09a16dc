"""Synthetic login traffic with ground truth, to evaluate detection and to drive demos.

:func:`generate` turns a seeded :class:`Scenario` into :class:`Traffic`: events on their own
event time (a benign population with realistic noise, plus labelled campaigns of every finding
kind), each event's ground truth beside it, and the synthetic :class:`World` whose
``lookup(ip)`` answers threat-intelligence questions about every address used (or writes the
files a processor loads). :func:`batches` encodes the events as OTLP export requests;
:func:`score` measures findings against the ground truth. ``benchmarks/bench_detection.py``
puts them together; ``docs/detection.md`` ("Evaluation") reports the figures.

    from usermon.processor.simulate import Scenario, generate, score
    traffic = generate(Scenario(seed=7))
    ...  # run traffic.events through the engine with traffic.world as its enricher
    print(score(traffic, findings).table())
"""

from __future__ import annotations

from usermon.processor.simulate.scoring import ClassScore, KindScore, Report, score
from usermon.processor.simulate.traffic import Campaign, Scenario, Traffic, generate
from usermon.processor.simulate.world import World

__all__ = [
    "Campaign",
    "ClassScore",
    "KindScore",
    "Report",
    "Scenario",
    "Traffic",
    "World",
    "batches",
    "generate",
    "score",
]


def __getattr__(name: str) -> object:
    # The OTLP encoder needs protobuf; load it only when asked for.
    if name == "batches":
        from usermon.processor.simulate.otlp import batches

        return batches
    raise AttributeError(name)
