"""A/B in instructions: ``Processor.ingest`` of bench_ingest.py's batches, in process, under
callgrind, for another source tree and for this one.

An instruction count does not move with the machine's load, so a change of a few per cent shows
where events per CPU-second on a shared machine vary by ±10 % from run to run. Each tree runs
twice in its own process (``PYTHONPATH`` = that tree's ``src``, hash seed fixed): ingesting
``--warm`` batches, then ``--warm`` + ``--batches``; the difference is what the measured batches
cost, start-up and imports left out. Decode, journal intake, engine, detectors and the service's
upkeep are all in it; HTTP is not. Repeated, counts agree to 0.1 %, though one in several has
come out 8 % off for no known reason: run it twice. Needs valgrind. For example, against main:

    git worktree add --detach /tmp/main main
    python benchmarks/ab_ingest_instructions.py /tmp/main/src
    python benchmarks/ab_ingest_instructions.py /tmp/main/src --detectors none

``--pure-python-decode`` runs the other tree with ``USERMON_PURE_PYTHON_DECODE=1``: a tree from
before the C walker's removal (a1e05f3, its walker built) then decodes as main does.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
from pathlib import Path

THIS = str(Path(__file__).resolve().parent.parent / "src")


def child(ingest: int, built: int, store: str, detectors: str) -> None:
    """Build ``built`` batches, ingest the first ``ingest``, exit without closing (closing
    checkpoints, which is not the measured work)."""
    import gc

    import bench_ingest

    from usermon.processor.service import Processor
    from usermon.processor.settings import resolve

    rng = random.Random(7)
    bodies = [
        bench_ingest.batch(512, rng, bench_ingest.T0 + b * 512 * 0.001, 20_000, 50_000)
        for b in range(built)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        url = "memory://" if store == "memory" else f"sqlite:///{tmp}/a.db"
        # No checkpoint by the clock: under callgrind it would land at other batches each run.
        settings = resolve({"store": url, "log_level": "warning", "checkpoint_interval": 1e9}, {})
        processor = Processor(settings, detectors=None if detectors == "default" else [])
        gc.freeze()  # as usermon serve does (runner._tune_gc)
        gc.set_threshold(100_000, 50, 100)
        for body in bodies[:ingest]:
            processor.ingest("traces", body, json_format=False)
        sys.stdout.flush()
        os._exit(0)


def instructions(
    src: str, ingest: int, built: int, store: str, detectors: str, pure: bool = False
) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("USERMON_")}
    env |= {"PYTHONPATH": src, "PYTHONHASHSEED": "0"}
    if pure:
        env["USERMON_PURE_PYTHON_DECODE"] = "1"
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={tmp}/callgrind.out",
                sys.executable,
                __file__,
                "--child",
                str(ingest),
                str(built),
                store,
                detectors,
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count from callgrind:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("other", help="the other tree's src directory")
    parser.add_argument("--warm", type=int, default=10, help="batches before the measured ones")
    parser.add_argument("--batches", type=int, default=20, help="measured batches of 512 events")
    parser.add_argument("--store", choices=("sqlite", "memory"), default="sqlite")
    parser.add_argument("--detectors", choices=("default", "none"), default="default")
    parser.add_argument(
        "--pure-python-decode", action="store_true", help="the other tree without its C walker"
    )
    args = parser.parse_args()
    built = args.warm + args.batches
    events = args.batches * 512
    per_event = {}
    for label, src in (("other", os.path.abspath(args.other)), ("this", THIS)):
        pure = args.pure_python_decode and label == "other"
        warm = instructions(src, args.warm, built, args.store, args.detectors, pure)
        full = instructions(src, built, built, args.store, args.detectors, pure)
        per_event[label] = (full - warm) / events
    print(
        f"Processor.ingest, {args.store}, detectors {args.detectors}: batches {args.warm + 1}-"
        f"{built} ({events} events), instructions per event: other {per_event['other']:,.0f}, "
        f"this {per_event['this']:,.0f}, this/other {per_event['this'] / per_event['other']:.3f}"
    )


if __name__ == "__main__":
    main()
