"""The issue's performance targets, evaluated on the summaries of one run (printed, never asserted)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from launch_bench.metrics import Summary

OURS = "launch"
TASKS = "launch-tasks"  # the async path with callbacks and retention on


@dataclass(frozen=True)
class Check:
    name: str
    observed: str
    limit: str
    verdict: str  # PASS, FAIL or N/A


Lookup = Callable[[str, str, str, int], Summary | None]


def _lookup(summaries: list[Summary]) -> Lookup:
    index = {(s.target, s.kind, s.model, s.concurrency): s for s in summaries}
    return lambda target, kind, model, c: index.get((target, kind, model, c))


def _verdict(ok: bool | None) -> str:
    return "N/A" if ok is None else ("PASS" if ok else "FAIL")


def _values(*pairs: tuple[Summary | None, str]) -> list[float] | None:
    values = [s.get(key) if s is not None else math.nan for s, key in pairs]
    return None if any(math.isnan(v) for v in values) else values


def p50_overhead(get: Lookup) -> Check:
    v = _values((get(OURS, "sync", "echo", 1), "p50_ms"), (get("F1", "sync", "echo", 1), "p50_ms"))
    observed = f"{v[0] - v[1]:+.3f} ms ({v[0]:.3f} vs {v[1]:.3f})" if v else "missing"
    return Check(
        "sync echo p50 overhead over F1, c=1",
        observed,
        "≤ 0.3 ms",
        _verdict(None if v is None else v[0] - v[1] <= 0.3),
    )


def rps_vs_f1(get: Lookup) -> Check:
    v = _values((get(OURS, "sync", "echo", 64), "rps"), (get("F1", "sync", "echo", 64), "rps"))
    observed = f"{100 * v[0] / v[1]:.0f} % ({v[0]:.0f} vs {v[1]:.0f} req/s)" if v else "missing"
    return Check(
        "sync echo req/s vs F1, c=64", observed, "≥ 50 %", _verdict(None if v is None else v[0] >= 0.5 * v[1])
    )


def rps_vs_peers(get: Lookup, peers: list[str]) -> Check:
    ours = get(OURS, "sync", "echo", 64)
    found = [(p, s.get("rps")) for p in peers if (s := get(p, "sync", "echo", 64)) is not None]
    if ours is None or not found:
        return Check("sync echo req/s vs best peer, c=64", "missing", "≥ 5x", "N/A")
    best, rps = max(found, key=lambda pair: pair[1])
    ratio = ours.get("rps") / rps if rps else math.inf
    return Check(
        "sync echo req/s vs best peer, c=64",
        f"{ratio:.1f}x ({best}: {rps:.0f} req/s)",
        "≥ 5x",
        _verdict(ratio >= 5),
    )


def p99_vs_f2(get: Lookup) -> Check:
    v = _values((get(OURS, "sync", "echo", 64), "p99_ms"), (get("F2", "sync", "echo", 64), "p99_ms"))
    observed = f"{v[0] / v[1]:.2f}x ({v[0]:.2f} vs {v[1]:.2f} ms)" if v else "missing"
    return Check(
        "sync echo p99 vs F2, c=64", observed, "≤ 2x", _verdict(None if v is None else v[0] <= 2 * v[1])
    )


def async_vs_f3(get: Lookup) -> Check:
    levels = sorted({c for c in (8, 64) if get(OURS, "async", "noop", c) and get("F3", "async", "noop", c)})
    if not levels:
        return Check("async completion rate vs F3", "missing", "≥ 50 %", "N/A")
    c = levels[-1]
    v = _values(
        (get(OURS, "async", "noop", c), "completed_per_s"), (get("F3", "async", "noop", c), "completed_per_s")
    )
    observed = f"{100 * v[0] / v[1]:.0f} % at c={c} ({v[0]:.0f} vs {v[1]:.0f} tasks/s)" if v else "missing"
    return Check(
        "async completion rate vs F3", observed, "≥ 50 %", _verdict(None if v is None else v[0] >= 0.5 * v[1])
    )


def tasks_vs_f3(get: Lookup) -> Check:
    """Completed tasks/s with every task's callback delivered and retention sweeping, against the floor."""
    name = "async completions with callbacks + retention vs F3"
    levels = sorted({c for c in (8, 64) if get(TASKS, "async", "noop", c) and get("F3", "async", "noop", c)})
    if not levels:
        return Check(name, "missing", "≥ 1.0x", "N/A")
    c = levels[-1]
    v = _values((get(TASKS, "async", "noop", c), "completed_per_s"), (get("F3", "async", "noop", c), "completed_per_s"))
    observed = f"{v[0] / v[1]:.2f}x at c={c} ({v[0]:.0f} vs {v[1]:.0f} tasks/s)" if v else "missing"
    return Check(name, observed, "≥ 1.0x", _verdict(None if v is None else v[0] >= v[1]))


def idle_p50_vs_f3(get: Lookup, target: str) -> Check:
    """Submit-to-result p50 of one client at a time (no backlog), against the floor's."""
    v = _values((get(target, "async", "noop", 1), "p50_ms"), (get("F3", "async", "noop", 1), "p50_ms"))
    observed = f"{v[0] - v[1]:+.2f} ms ({v[0]:.2f} vs {v[1]:.2f} ms)" if v else "missing"
    return Check(f"async idle submit→result p50 vs F3 ({target})", observed, "≤ +0.5 ms",
                 _verdict(None if v is None else v[0] - v[1] <= 0.5))


def evaluate(summaries: list[Summary], peers: list[str]) -> list[Check]:
    get = _lookup(summaries)
    return [p50_overhead(get), rps_vs_f1(get), rps_vs_peers(get, peers), p99_vs_f2(get), async_vs_f3(get),
            tasks_vs_f3(get), idle_p50_vs_f3(get, OURS), idle_p50_vs_f3(get, TASKS)]
