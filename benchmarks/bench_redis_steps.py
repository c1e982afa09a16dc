"""Where the Redis server's time per event goes in ``apply.lua``: bench_scale.py's traffic runs
once through ``Engine(RedisState(...), default_detectors())``, every plan it sends
(:meth:`RedisState.apply_many`: the records put and each event's steps) is captured, and the
captured plans are then replayed, a fresh key prefix each round, as ``RedisState._encode`` spells
them, through ``apply.lua`` on the Redis of ``--redis-url`` (records first, as ``SETEX``, so they
are told apart from the scripts' own ``SET``). Each round runs between ``CONFIG RESETSTAT`` and
``INFO commandstats``, and prints per event: the ``EVALSHA`` microseconds (inclusive of the
commands the script calls), those nested commands' microseconds and calls, the server's CPU
(``used_cpu``), and the client's microseconds to encode the plans and decode the replies.

``--kinds`` also replays with one kind of step left out (``c`` claims, ``w`` add_windows, ``d``
add_distinct, ``n`` count, ``k`` distinct count, ``i`` incr_fields, ``f`` fields, ``g`` get,
``s`` folds, ``r`` only the folds' read-back): what the full replay costs more is what that kind
costs. ``--compare OTHER_SRC`` replays the same steps through another tree's ``RedisState`` and
``apply.lua`` too (each side in its own process, ``PYTHONPATH`` = its ``src``), rounds
alternating, and checks that every reply, as ``_decode`` returns it, is the same on both sides
(and says whether the raw script replies are too): for a change of the Lua alone, same plans,
same replies. Only the plans are replayed: the engine's direct calls (``open_episode``,
``keep``, ...) are not.
``--steps FILE`` keeps the captured plans (written the first time, read afterwards), so that
runs, and trees, compare the same plans; ``--capture-url`` runs the engine on another Redis for
the capture (one not under Valgrind: the engine's reads are slow there); ``--only KINDS`` replays
only those kinds of step (``--only s``: the folds and their read-back).

    redis-server --port 6392 --save "" --appendonly no --daemonize yes
    python benchmarks/bench_redis_steps.py --redis-url redis://127.0.0.1:6392/0 --kinds
    git worktree add --detach /tmp/main main
    python benchmarks/bench_redis_steps.py --redis-url redis://127.0.0.1:6392/0 \\
        --compare /tmp/main/src --rounds 6

Timings on a shared machine vary by tens of percent from run to run; ``--callgrind`` also counts
the instructions the server runs for the replay, the same from run to run to a tenth of a
percent, when the Redis of ``--redis-url`` runs on this machine under Valgrind (its counters are
zeroed and read with ``callgrind_control``):

    valgrind --tool=callgrind --callgrind-out-file=/tmp/redis.%p.out \\
        redis-server --port 6399 --save "" --appendonly no &
    python benchmarks/bench_redis_steps.py --redis-url redis://127.0.0.1:6399/0 \\
        --compare /tmp/main/src --rounds 2 --callgrind

Results: docs/performance.md, *Scale-out*.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import pickle
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
THIS = str(HERE.parent / "src")
KINDS = "cwdnkifgsr"
_NOT_NESTED = {"evalsha", "eval", "script", "setex", "info", "config", "ping", "hello", "client"}

Call = tuple[list[list[Any]], list[tuple[str, Any, float, float]]]


def capture(redis_url: str, events: int, batch: int) -> list[Call]:
    """Every ``apply_many`` (and ``apply``) call the engine makes on bench_scale's traffic."""
    from bench_scale import traffic

    from usermon.processor.detectors import default_detectors
    from usermon.processor.engine import Engine
    from usermon.processor.storage.state.redis import RedisState

    calls: list[Call] = []
    apply_many, apply = RedisState.apply_many, RedisState.apply

    def spy_many(self: RedisState, plans: Any, records: Any = ()) -> list[list[Any]]:
        calls.append(([list(p) for p in plans], [tuple(r) for r in records]))
        return apply_many(self, plans, records)

    def spy(self: RedisState, steps: Any) -> list[Any]:
        calls.append(([list(steps)], []))
        return apply(self, steps)

    state = RedisState.from_url(redis_url, prefix=f"usermon_steps_{uuid.uuid4().hex[:8]}:")
    RedisState.apply_many, RedisState.apply = spy_many, spy  # type: ignore[method-assign]
    try:
        engine = Engine(state, default_detectors())
        stream = traffic(events)
        for i in range(0, len(stream), batch):
            engine.process(stream[i : i + batch])
    finally:
        RedisState.apply_many, RedisState.apply = apply_many, apply  # type: ignore[method-assign]
        state.clear()
    return calls


def _without(steps: list[Any], drop: str | None) -> list[Any]:
    """``steps`` with the kind ``drop`` left out (``r``: the folds no longer read back)."""
    from usermon.processor.storage.state import steps as s

    if drop is None:
        return steps
    if drop == "r":
        return [dataclasses.replace(x, read=None) if isinstance(x, s.Fold) else x for x in steps]
    kind = {
        "c": s.Claim,
        "w": s.AddWindows,
        "d": s.AddDistinct,
        "n": s.Count,
        "k": s.DistinctCount,
        "i": s.IncrFields,
        "f": s.Fields,
        "g": s.Get,
        "s": s.Fold,
    }[drop]
    return [x for x in steps if not isinstance(x, kind)]


def _only(steps: list[Any], kinds: str) -> list[Any]:
    """``steps`` without every kind not in ``kinds`` (``r`` is not a kind of its own here)."""
    for kind in KINDS.replace("r", ""):
        if kind not in kinds:
            steps = _without(steps, kind)
    return steps


def _instructions(pid: int, zero: bool = False) -> int:
    """The instructions Valgrind counted in process ``pid`` (all threads); ``zero`` resets them."""
    if zero:
        subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True)
        return 0
    out = subprocess.run(
        ["callgrind_control", "-e", "Ir", str(pid)], check=True, capture_output=True, text=True
    ).stdout
    return sum(int(m.replace(",", "")) for m in re.findall(r"^\s*Th \d+\s+([\d,]+)", out, re.M))


def replay(
    redis_url: str,
    calls: list[Call],
    events: int,
    drop: str | None,
    dump: str | None,
    callgrind: bool = False,
) -> dict[str, Any]:
    """One round: the captured calls replayed under a fresh prefix; the server's figures."""
    import redis

    from usermon.processor.storage.state.redis import RedisState

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    state = RedisState(client, prefix=f"usermon_steps_{uuid.uuid4().hex[:8]}:")
    started = time.perf_counter()
    # As apply_many sends them: a tree whose state sends a segment's claim-free plans as one
    # call (_merged) is replayed that way, the calls cut as they were before a kind of step was
    # left out (leaving out the claims must not merge the events' own plans); an older tree, a
    # call per plan.
    merged = getattr(sys.modules[RedisState.__module__], "_merged", None)
    encoded = []
    for plans, records in calls:
        plans = [p for p in plans if p]
        kept = [_without(p, drop) for p in plans]
        if merged is None:
            kept = [p for p in kept if p]
            encoded.append((kept, None, [state._encode(p) for p in kept], records))
        else:
            groups = merged(plans)
            texts = [state._encode([x for p in kept[a:b] for x in p]) for a, b in groups]
            encoded.append((kept, groups, texts, records))
    encode = time.perf_counter() - started
    state._apply(keys=[], args=[state._encode([])])  # loaded before the figures start
    cpu0 = client.info("cpu")
    pid = int(client.info("server")["process_id"])
    client.config_resetstat()
    if callgrind:
        _instructions(pid, zero=True)
    raw: list[Any] = []
    for _plans, _groups, texts, records in encoded:
        pipe = client.pipeline(transaction=False)
        for key, value, _t, ttl in records:
            pipe.setex(
                state._key(key, "r"),
                max(1, math.ceil(ttl)),
                json.dumps(value, separators=(",", ":")),
            )
        for text in texts:
            pipe.evalsha(state._apply.sha, 0, text)
        raw.append(pipe.execute()[len(records) :])
    instructions = _instructions(pid) if callgrind else 0
    stats = client.info("commandstats")
    cpu1 = client.info("cpu")
    started = time.perf_counter()
    decoded = []
    for (plans, groups, _texts, _records), replies in zip(encoded, raw, strict=True):
        if groups is None:
            decoded.append([state._decode(p, r) for p, r in zip(plans, replies, strict=True)])
        else:
            decoded.append(state._decode_many(plans, groups, replies))
    decode = time.perf_counter() - started
    state.clear()
    n = events  # an event planned again after a rejected segment counts once
    commands = {k.removeprefix("cmdstat_"): v for k, v in stats.items()}
    nested = {k: v for k, v in commands.items() if k not in _NOT_NESTED}
    evalsha = commands.get("evalsha", {"usec": 0, "calls": 0})
    if dump:
        with open(dump, "wb") as f:
            pickle.dump({"raw": raw, "decoded": decoded}, f)
    used = sum(float(cpu1[k]) - float(cpu0[k]) for k in ("used_cpu_user", "used_cpu_sys"))
    return {
        "events": n,
        "evalsha_us": evalsha["usec"] / n,
        "nested_us": sum(v["usec"] for v in nested.values()) / n,
        "nested_calls": sum(v["calls"] for v in nested.values()) / n,
        "server_cpu_us": used * 1e6 / n,
        "encode_us": encode * 1e6 / n,
        "decode_us": decode * 1e6 / n,
        "instructions": instructions / n,
        "per_command": {k: (v["calls"] / n, v["usec"] / n) for k, v in nested.items()},
    }


def worker(redis_url: str, steps_file: str, callgrind: bool) -> None:
    """A side of --compare (or the only side): rounds asked for on stdin, figures on stdout."""
    import usermon

    with open(steps_file, "rb") as f:
        events, calls = pickle.load(f)  # noqa: S301 - written by this benchmark's parent
    print(json.dumps({"usermon": usermon.__file__}), flush=True)
    for line in sys.stdin:
        ask = json.loads(line)
        print(
            json.dumps(replay(redis_url, calls, events, ask["drop"], ask["dump"], callgrind)),
            flush=True,
        )


class _Side:
    def __init__(self, src: str, redis_url: str, steps_file: str, callgrind: bool) -> None:
        path = os.pathsep.join((src, str(HERE)))
        more = ["--callgrind"] if callgrind else []
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--redis-url", redis_url, "--worker", steps_file, *more],
            env={**os.environ, "PYTHONPATH": path},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.module = self._read()["usermon"]

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit("a replay process failed")
        result: dict[str, Any] = json.loads(line)
        return result

    def round(self, drop: str | None = None, dump: str | None = None) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"drop": drop, "dump": dump}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


def _line(name: str, rounds: list[dict[str, Any]], callgrind: bool) -> str:
    def med(k: str) -> float:
        return statistics.median(r[k] for r in rounds)

    def best(k: str) -> float:
        return min(r[k] for r in rounds)

    return (
        f"  {name:6s} EVALSHA {med('evalsha_us'):6.1f} us/event (best {best('evalsha_us'):.1f}), "
        f"nested commands {med('nested_us'):5.1f} us and {med('nested_calls'):5.2f} calls/event, "
        f"server CPU {med('server_cpu_us'):6.1f} (best {best('server_cpu_us'):.1f}) us/event; "
        + (f"{med('instructions') / 1e6:.3f} M instructions/event; " if callgrind else "")
        + f"client encode "
        f"{med('encode_us'):5.1f} us, decode {med('decode_us'):5.1f} us/event"
    )


def _same(a: str, b: str) -> tuple[bool, bool, str]:
    with open(a, "rb") as f:
        x = pickle.load(f)  # noqa: S301 - written by this benchmark's workers
    with open(b, "rb") as f:
        y = pickle.load(f)  # noqa: S301 - written by this benchmark's workers
    first = ""
    for i, (p, q) in enumerate(zip(x["decoded"], y["decoded"], strict=True)):
        if p != q and not first:
            for j, (u, v) in enumerate(zip(p, q, strict=True)):
                if u != v:
                    first = f"call {i}, plan {j}: {u!r:.300} != {v!r:.300}"
                    break
    return x["decoded"] == y["decoded"], x["raw"] == y["raw"], first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6392/0")
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=4, help="replays per side")
    parser.add_argument("--kinds", action="store_true", help="also replay without each kind")
    parser.add_argument("--compare", metavar="OTHER_SRC", help="another tree's src directory")
    parser.add_argument(
        "--callgrind", action="store_true", help="count the server's instructions (Valgrind)"
    )
    parser.add_argument(
        "--capture-url",
        help="run the engine on this Redis to capture the plans (default: --redis-url; a Redis"
        " under Valgrind takes minutes to run the engine)",
    )
    parser.add_argument(
        "--steps",
        metavar="FILE",
        help="keep the captured plans in FILE: written when it does not exist, read (no"
        " capture) when it does, so that runs compare the same plans",
    )
    parser.add_argument(
        "--only",
        metavar="KINDS",
        help="replay only these kinds of step (letters as for --kinds, e.g. s: the folds)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.redis_url, args.worker, args.callgrind)
        return
    if args.steps and os.path.exists(args.steps):
        with open(args.steps, "rb") as f:
            events, calls = pickle.load(f)  # noqa: S301 - written by this benchmark
        if events != args.events:
            raise SystemExit(f"{args.steps} holds {events} events, not {args.events}")
    else:
        calls = capture(args.capture_url or args.redis_url, args.events, args.batch)
        if args.steps:
            with open(args.steps, "wb") as f:
                pickle.dump((args.events, calls), f)
    if args.only:
        calls = [([_only(p, args.only) for p in plans], records) for plans, records in calls]
    plans = sum(len(p) for p, _ in calls)
    steps = sum(len(s) for p, _ in calls for s in p)
    print(f"{args.events} events in batches of {args.batch}: {len(calls)} round trips, ", end="")
    print(f"{plans} plans ({plans / args.events:.2f} per event), {steps / plans:.2f} steps each")
    with tempfile.TemporaryDirectory() as tmp:
        steps_file = os.path.join(tmp, "steps.pickle")
        with open(steps_file, "wb") as f:
            pickle.dump((args.events, calls), f)
        sides = {"this": _Side(THIS, args.redis_url, steps_file, args.callgrind)}
        if args.compare:
            sides["other"] = _Side(
                os.path.abspath(args.compare), args.redis_url, steps_file, args.callgrind
            )
        for name, side in sides.items():
            print(f"  {name}: {side.module}")
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
        names = list(sides)
        for r in range(args.rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                dump = os.path.join(tmp, f"{name}.pickle") if r < 2 else None
                rounds[name].append(sides[name].round(None, dump))
        print(f"Replay of every plan, {args.rounds} rounds per side (median):")
        for name in sides:
            print(_line(name, rounds[name], args.callgrind))
        top = sorted(rounds["this"][-1]["per_command"].items(), key=lambda kv: -kv[1][1])
        print(
            "  this, nested commands (calls/event, us/event): "
            + ", ".join(f"{k} {c:.2f} {u:.1f}" for k, (c, u) in top)
        )
        if args.compare:
            decoded, raw, first = _same(*(os.path.join(tmp, f"{n}.pickle") for n in names))
            print(
                f"replies: decoded {'IDENTICAL' if decoded else 'DIFFERENT'}, raw script "
                f"replies {'identical' if raw else 'different'}"
                + (f"; first: {first}" if first else "")
            )
            if args.compare and not decoded:
                sys.exit(1)
        if args.kinds:
            metric, unit = (
                ("instructions", "k instructions")
                if args.callgrind
                else ("evalsha_us", "EVALSHA us")
            )
            scale = 1e-3 if args.callgrind else 1.0
            print(
                f"Without one kind of step (this tree; {unit}/event it saves, median of "
                f"{args.rounds} rounds alternating with the full replay):"
            )
            cells = []
            for kind in KINDS:
                saved = []
                for _ in range(args.rounds):
                    full = sides["this"].round()[metric]
                    saved.append(full - sides["this"].round(kind)[metric])
                cells.append(f"{kind} {statistics.median(saved) * scale:.1f}")
            print("  " + ", ".join(cells))
        for side in sides.values():
            side.close()


if __name__ == "__main__":
    main()
