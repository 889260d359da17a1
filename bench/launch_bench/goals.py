"""The issue's performance targets, evaluated on the summaries of one run (printed, never asserted)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from launch_bench.metrics import Summary

OURS = "launch"


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


def stream_first_item(get: Lookup) -> Check:
    ours = get(OURS, "stream", "tokens", 1)
    v = _values((ours, "ttfi_p50_ms"), (ours, "own_first_yield_ms"))
    observed = "missing"
    if v:
        observed = f"{v[0] - v[1]:+.3f} ms (first item {v[0]:.3f} ms; the generator alone {v[1]:.4f} ms"
        floor = _values((get("F1", "stream", "tokens", 1), "ttfi_p50_ms"))
        observed += f"; F1's first item {floor[0]:.3f} ms)" if floor else ")"
    return Check("stream first item, added over the generator's own first yield, c=1", observed, "≤ 2 ms",
                 _verdict(None if v is None else v[0] - v[1] <= 2.0))


def stream_rate(get: Lookup) -> Check:
    v = _values((get(OURS, "stream", "tokens", 1), "stream_items_per_s_p50"))
    observed = f"{v[0]:.0f} items/s" if v else "missing"
    return Check(
        "stream items/s over one stream", observed, "≥ 10,000", _verdict(None if v is None else v[0] >= 10_000)
    )


def stream_vs_litserve(get: Lookup) -> Check:
    v = _values((get(OURS, "stream", "tokens", 1), "stream_items_per_s_p50"),
                (get("litserve", "stream", "tokens", 1), "stream_items_per_s_p50"))
    observed = f"{v[0] / v[1]:.1f}x ({v[0]:.0f} vs {v[1]:.0f} items/s)" if v else "missing"
    return Check("stream items/s over one stream vs LitServe", observed, "≥ 5x",
                 _verdict(None if v is None else v[0] >= 5 * v[1]))


# -- every route as fast as the fastest, real work, control plane, memory, start -------------------------------
ROUTE_NAMES = {"echo": "native sync", "echo@legacy": "legacy sync",
               "echo@legacy-pickled": "legacy sync, pickled result (0.3.3 default)", "submit": "native async submit",
               "submit@legacy": "legacy async submit", "poll": "native task poll",
               "poll@legacy": "legacy task poll"}


def route_checks(get: Lookup) -> list[Check]:
    """Each prediction route against F2's echo (the split floor) at the same concurrency."""
    checks = []
    for model, label in ROUTE_NAMES.items():
        f2_64, f2_1 = get("F2", "sync", "echo", 64), get("F2", "sync", "echo", 1)
        v = _values((get(OURS, "sync", model, 64), "rps"), (f2_64, "rps"))
        checks.append(Check(f"{label} req/s vs F2, c=64",
                            f"{100 * v[0] / v[1]:.0f} % ({v[0]:.0f} vs {v[1]:.0f})" if v else "missing",
                            "≥ 90 %", _verdict(None if v is None else v[0] >= 0.9 * v[1])))
        v = _values((get(OURS, "sync", model, 1), "p50_ms"), (f2_1, "p50_ms"))
        checks.append(Check(f"{label} p50 over F2, c=1",
                            f"{v[0] - v[1]:+.3f} ms ({v[0]:.3f} vs {v[1]:.3f})" if v else "missing",
                            "≤ +0.15 ms", _verdict(None if v is None else v[0] - v[1] <= 0.15)))
        v = _values((get(OURS, "sync", model, 64), "p99_ms"), (f2_64, "p99_ms"))
        checks.append(Check(f"{label} p99 vs F2, c=64",
                            f"{v[0] / v[1]:.2f}x ({v[0]:.2f} vs {v[1]:.2f} ms)" if v else "missing",
                            "≤ 1.5x", _verdict(None if v is None else v[0] <= 1.5 * v[1])))
    return checks


def payload_checks(get: Lookup) -> list[Check]:
    checks = []
    for model in ("echo-4k", "echo-64k", "echo-1m"):
        levels = sorted({c for c in (1, 8, 64) if get(OURS, "sync", model, c) and get("F2", "sync", model, c)})
        c = levels[-1] if levels else 8
        v = _values((get(OURS, "sync", model, c), "rps"), (get("F2", "sync", model, c), "rps"))
        checks.append(Check(f"payload {model[5:]} req/s vs F2 (same body), c={c}",
                            f"{100 * v[0] / v[1]:.0f} % ({v[0]:.0f} vs {v[1]:.0f})" if v else "missing",
                            "≥ 80 %", _verdict(None if v is None else v[0] >= 0.8 * v[1])))
    return checks


def real_work_checks(get: Lookup, peers: list[str]) -> list[Check]:
    checks = []
    for model, label in (("sleep", "1 ms sleep"), ("matmul", "64x64 matmul")):
        v = _values((get(OURS, "sync", model, 64), "rps"), (get("F2", "sync", model, 64), "rps"))
        checks.append(Check(f"{label} req/s vs F2, c=64",
                            f"{100 * v[0] / v[1]:.0f} % ({v[0]:.0f} vs {v[1]:.0f})" if v else "missing",
                            "≥ 90 %", _verdict(None if v is None else v[0] >= 0.9 * v[1])))
        ours = get(OURS, "sync", model, 64)
        found = [(p, s.get("rps")) for p in peers if (s := get(p, "sync", model, 64)) is not None]
        if ours is None or not found:
            checks.append(Check(f"{label} req/s vs best peer, c=64", "missing", "≥ 5x", "N/A"))
            continue
        best, rps = max(found, key=lambda pair: pair[1])
        ratio = ours.get("rps") / rps if rps else math.inf
        checks.append(Check(f"{label} req/s vs best peer, c=64", f"{ratio:.1f}x ({best}: {rps:.0f} req/s)",
                            "≥ 5x", _verdict(ratio >= 5)))
    return checks


def _field(s: Summary | None, key: str) -> float | None:
    value = s.get(key) if s is not None else math.nan
    return None if math.isnan(value) else value


def _limit(name: str, s: Summary | None, key: str, limit: float, unit: str, digits: int = 1,
           below: bool = True) -> Check:
    value = _field(s, key)
    sign = "≤" if below else "≥"
    observed = "missing" if value is None else f"{value:.{digits}f} {unit}"
    ok = None if value is None else (value <= limit if below else value >= limit)
    return Check(name, observed, f"{sign} {limit:g} {unit}", _verdict(ok))


def control_plane_checks(get: Lookup) -> list[Check]:
    cp = get(OURS, "control_plane", "echo", 0)
    churn = None
    if cp is not None and _field(cp, "quiet_rps") and _field(cp, "churn_rps") is not None:
        churn = cp.get("churn_rps") / cp.get("quiet_rps")
    return [
        _limit("idle CPU, 1,000 endpoints + 100,000 finished tasks", cp, "idle_cpu_pct", 2, "% of a core", 2),
        _limit("idle CPU, 1,000 endpoints", cp, "idle_cpu_endpoints_pct", 2, "% of a core", 2),
        _limit("list endpoints p50 (1,000)", cp, "list_p50_ms", 50, "ms"),
        _limit("create endpoint p50 (up to 1,000)", cp, "create_p50_ms", 20, "ms"),
        Check("echo req/s while others' endpoints are created/edited",
              "missing" if churn is None else f"{100 * churn:.0f} % of quiet ({cp.get('churn_rps'):.0f} vs "
              f"{cp.get('quiet_rps'):.0f}; {cp.get('churn_changes'):.0f} changes)" if cp is not None else "missing",
              "≥ 90 %", _verdict(None if churn is None else churn >= 0.9)),
        _churn_p99(cp),
    ]


def _churn_p99(cp: Summary | None) -> Check:
    quiet, busy = _field(cp, "quiet_p99_ms"), _field(cp, "churn_p99_ms")
    if quiet is None or busy is None:
        return Check("echo p99 while others' endpoints are created/edited", "missing", "≤ 1.5x quiet", "N/A")
    return Check("echo p99 while others' endpoints are created/edited",
                 f"{busy / quiet:.2f}x ({busy:.2f} vs {quiet:.2f} ms)", "≤ 1.5x quiet", _verdict(busy <= 1.5 * quiet))


def memory_checks(get: Lookup) -> list[Check]:
    start = get(OURS, "startup", "", 0)
    cp = get(OURS, "control_plane", "echo", 0)
    return [
        _limit("idle server RSS (gateway process)", start, "server_rss_mb", 150, "MiB", 0),
        _limit("worker RSS before its model", start, "worker_rss_mb", 60, "MiB", 0),
        _limit("server RSS, 100,000 queued tasks", cp, "queued_rss_mb", 1024, "MiB", 0),
        _limit("server RSS, + 10,000 open long-polls", cp, "longpoll_rss_mb", 1024, "MiB", 0),
    ]


def start_checks(get: Lookup, summaries: list[Summary]) -> list[Check]:
    checks = [_limit("create → READY (environment cached)", get(OURS, "startup", "", 0), "endpoint_ready_s", 1,
                     "s", 2)]
    for s in summaries:
        if s.target == OURS and s.kind == "scale_from_zero":
            kind = s.median_round.get("endpoint_type", s.model)
            checks.append(_limit(f"scale from zero → first result ({kind})", s, "first_result_s", 2, "s", 2))
    return checks


TASKS = "launch-tasks"  # the async path with callbacks and retention on


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
    return [
        p50_overhead(get), rps_vs_f1(get), rps_vs_peers(get, peers), p99_vs_f2(get), async_vs_f3(get),
        tasks_vs_f3(get), idle_p50_vs_f3(get, OURS), idle_p50_vs_f3(get, TASKS),
        *route_checks(get), *payload_checks(get), *real_work_checks(get, peers), *control_plane_checks(get),
        *memory_checks(get), *start_checks(get, summaries),
        stream_first_item(get), stream_rate(get), stream_vs_litserve(get),
    ]
