"""Markdown report: per-scenario tables with Launch's numbers as ratios to every floor and peer, the targets'
PASS/FAIL, startup and scale-from-zero, and the measurements that failed."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from launch_bench.goals import OURS, evaluate
from launch_bench.metrics import Summary, log, summarise
from launch_bench.plot import plot_latency
from launch_bench.scenarios import ROUTES, Mode
from launch_bench.targets import ALL, PEERS

Column = tuple[str, Callable[[Summary], str]]


def fmt(value: float, digits: int = 2) -> str:
    if math.isnan(value):
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _metric(key: str, digits: int = 2) -> Callable[[Summary], str]:
    return lambda s: fmt(s.get(key), digits)


def _ratio(key: str, ours: Summary | None) -> Callable[[Summary], str]:
    """Launch's value divided by this row's value (x suffix)."""

    def cell(s: Summary) -> str:
        if ours is None or s.target == OURS:
            return "-"
        theirs = s.get(key)
        return f"{ours.get(key) / theirs:.2f}x" if theirs else "-"

    return cell


def _memory(s: Summary) -> str:
    return f"{fmt(s.get('rss_idle_mb'), 0)} → {fmt(s.get('rss_loaded_mb'), 0)}"


def _spread(s: Summary) -> str:
    return f"±{s.spread_pct / 2:.0f} % ({s.rounds})" if not math.isnan(s.spread_pct) else "-"


def table(rows: list[Summary], columns: list[Column]) -> list[str]:
    lines = [
        "| target | " + " | ".join(name for name, _ in columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for s in rows:
        lines.append(f"| {s.target} | " + " | ".join(cell(s) for _, cell in columns) + " |")
    return lines


def sync_columns(ours: Summary | None) -> list[Column]:
    return [
        ("req/s", _metric("rps", 0)),
        ("p50 ms", _metric("p50_ms", 3)),
        ("p90 ms", _metric("p90_ms", 3)),
        ("p99 ms", _metric("p99_ms", 3)),
        ("errors", _metric("errors_total", 0)),
        ("CPU ms/req", _metric("cpu_ms_per_req", 3)),
        ("RSS MiB idle → loaded", _memory),
        ("spread req/s", _spread),
        ("core-0 foreign %", _metric("core0_foreign_pct", 0)),
        ("launch req/s ÷", _ratio("rps", ours)),
        ("launch p50 ÷", _ratio("p50_ms", ours)),
        ("launch p99 ÷", _ratio("p99_ms", ours)),
    ]


def async_columns(ours: Summary | None) -> list[Column]:
    return [
        ("accepted/s", _metric("accepted_per_s", 0)),
        ("completed/s", _metric("completed_per_s", 0)),
        ("completed %", lambda s: fmt(100 * s.get("completion_ratio"), 0)),
        ("submit→result p50 ms", _metric("p50_ms")),
        ("p99 ms", _metric("p99_ms")),
        ("errors", _metric("errors_total", 0)),
        ("CPU ms/task", _metric("cpu_ms_per_task", 3)),
        ("RSS MiB idle → loaded", _memory),
        ("spread completed/s", _spread),
        ("core-0 foreign %", _metric("core0_foreign_pct", 0)),
        ("launch completed/s ÷", _ratio("completed_per_s", ours)),
        ("launch p50 ÷", _ratio("p50_ms", ours)),
    ]


def stream_columns(ours: Summary | None) -> list[Column]:
    return [
        ("items/s", _metric("items_per_s", 0)),
        ("first item p50 ms", _metric("ttfi_p50_ms")),
        ("first item p99 ms", _metric("ttfi_p99_ms")),
        ("per-stream items/s", _metric("stream_items_per_s_p50", 0)),
        ("errors", _metric("errors_total", 0)),
        ("CPU ms/item", _metric("cpu_ms_per_item", 4)),
        ("spread items/s", _spread),
        ("launch items/s ÷", _ratio("items_per_s", ours)),
    ]


def startup_columns() -> list[Column]:
    return [
        ("process → healthy s", _metric("startup_s")),
        ("→ endpoints READY s", _metric("ready_s")),
        ("endpoint create → READY s", _metric("endpoint_ready_s")),
        ("RSS idle MiB", _metric("rss_idle_mb", 0)),
        ("PSS idle MiB", _metric("pss_idle_mb", 0)),
        ("spread", _spread),
    ]


COLUMNS = {"sync": sync_columns, "async": async_columns, "stream": stream_columns}
TITLES = {"sync": "sync", "async": "async tasks", "stream": "streaming"}


def _ordered(rows: list[Summary]) -> list[Summary]:
    return sorted(rows, key=lambda s: ALL.index(s.target) if s.target in ALL else len(ALL))


def scenario_sections(summaries: list[Summary], mode: Mode) -> list[str]:
    lines: list[str] = []
    for sc in mode.scenarios:
        rows = _ordered(
            [s for s in summaries if (s.kind, s.model, s.concurrency) == (sc.kind, sc.model, sc.concurrency)]
        )
        if not rows:
            continue
        if sc.model in ROUTES:  # Launch's other routes, against the split floor's echo
            rows += [dataclasses.replace(s, target="F2 (echo)") for s in summaries
                     if (s.target, s.kind, s.model, s.concurrency) == ("F2", "sync", "echo", sc.concurrency)]
        ours = next((s for s in rows if s.target == OURS), None)
        columns = COLUMNS[sc.kind](ours)
        lines += ["", f"### {TITLES[sc.kind]} `{sc.model}`, concurrency {sc.concurrency}", ""]
        if ours is None:
            columns = [c for c in columns if "÷" not in c[0]]
            lines += ["(no Launch row: not measured, or Launch has no such endpoint)", ""]
        lines += table(rows, columns)
    return lines


def startup_section(summaries: list[Summary]) -> list[str]:
    rows = _ordered([s for s in summaries if s.kind == "startup"])
    zero = [s for s in summaries if s.kind == "scale_from_zero"]
    lines = ["", "### Cold start (median round)", "", *table(rows, startup_columns())]
    if zero:
        lines += ["", "### Scale from zero (Launch: idle endpoint with min_workers=0 → first result)", ""]
        lines += table(
            zero,
            [
                ("endpoint", lambda s: str(s.median_round.get("endpoint_type"))),
                ("first result s", _metric("first_result_s")),
                ("spread", _spread),
            ],
        )
    return lines


CONTROL_PLANE = (
    ("create p50 / p99 ms (1,000, one after another)", ("create_p50_ms", "create_p99_ms")),
    ("create p50 ms, last 100", ("create_last100_p50_ms",)),
    ("list p50 / p99 ms (1,000 endpoints)", ("list_p50_ms", "list_p99_ms")),
    ("idle CPU % of a core: 1,000 endpoints / + 100,000 finished tasks", ("idle_cpu_endpoints_pct", "idle_cpu_pct")),
    ("echo req/s quiet / while endpoints change (c=8)", ("quiet_rps", "churn_rps")),
    ("echo p99 ms quiet / while endpoints change", ("quiet_p99_ms", "churn_p99_ms")),
    ("endpoint changes meanwhile / their p50 ms", ("churn_changes", "churn_change_p50_ms")),
    ("submissions/s while queueing 100,000 (64 clients)", ("submit_per_s",)),
    ("server RSS / PSS MiB: idle with 1,000 endpoints", ("idle_server_rss_mb", "idle_server_pss_mb")),
    ("server RSS / PSS MiB: 100,000 queued tasks", ("queued_rss_mb", "queued_pss_mb")),
    ("server RSS / PSS MiB: + long-polls held open", ("longpoll_rss_mb", "longpoll_pss_mb")),
    ("long-poll connections held", ("longpoll_connections",)),
    ("server RSS / PSS MiB: 100,000 finished tasks, idle", ("final_server_rss_mb", "final_server_pss_mb")),
)


def control_plane_section(summaries: list[Summary]) -> list[str]:
    cp = next((s for s in summaries if s.kind == "control_plane"), None)
    start = next((s for s in summaries if s.kind == "startup" and s.target == OURS), None)
    lines: list[str] = []
    if start is not None:
        lines += ["", "### Launch's processes, idle after start (median round)", "",
                  "| gateway RSS / PSS MiB | largest worker RSS / PSS MiB |", "|---|---|",
                  f"| {fmt(start.get('server_rss_mb'), 0)} / {fmt(start.get('server_pss_mb'), 0)} | "
                  f"{fmt(start.get('worker_rss_mb'), 0)} / {fmt(start.get('worker_pss_mb'), 0)} |"]
    if cp is None:
        return lines
    lines += ["", "### Control plane and memory (Launch, one fresh server after the rounds)", "",
              "| measurement | value |", "|---|---|"]
    for label, keys in CONTROL_PLANE:
        lines.append(f"| {label} | {' / '.join(fmt(cp.get(k), 1) for k in keys)} |")
    return lines


def goals_section(summaries: list[Summary]) -> list[str]:
    lines = [
        "",
        "## Targets (printed, never asserted)",
        "",
        "| target | observed | limit | result |",
        "|---|---|---|---|",
    ]
    for check in evaluate(summaries, list(PEERS)):
        lines.append(f"| {check.name} | {check.observed} | {check.limit} | **{check.verdict}** |")
    return lines


def failures_section(records: list[dict[str, Any]]) -> list[str]:
    failed = [r for r in records if "error" in r]
    if not failed:
        return []
    lines = ["", "## Failed measurements", ""]
    for r in failed:
        where = (
            f"round {r['round']} {r['target']} {r['kind']} {r.get('model', '')} c={r.get('concurrency', '')}"
        )
        lines.append(f"- {where}: {str(r['error'])[:300]}")
    return lines


def header(mode: Mode, run_id: str, records: list[dict[str, Any]]) -> list[str]:
    load = os.getloadavg()[0]
    foreign = [float(r["core0_foreign_pct"]) for r in records if r.get("core0_foreign_pct") is not None]
    worst = max(foreign, default=0.0)
    return [
        f"# Launch benchmark {run_id}",
        "",
        f"Mode {mode.name}: {mode.rounds} rounds (targets interleaved), warm-up {mode.warmup_s} s, window "
        f"{mode.window_s} s; server on core 0, load generator on core 1. Each cell is the median round "
        "(by the section's throughput); spread is ±half the range over rounds. Ratios are launch ÷ row: "
        "above 1 is better for req/s, below 1 is better for latency.",
        "",
        f"Other processes used up to {worst:.0f} % of the server core during a timed window (median "
        f"{sorted(foreign)[len(foreign) // 2] if foreign else 0:.0f} %); load average at the end {load:.2f}. "
        "Anything above a few % means other work on the machine skewed these numbers.",
    ]


def with_totals(summaries: list[Summary], records: list[dict[str, Any]]) -> list[Summary]:
    """Add errors_total (sum over rounds) to each summary's median round."""
    for s in summaries:
        total = sum(
            int(r.get("errors") or 0)
            for r in records
            if "error" not in r
            and (r["target"], r["kind"], r.get("model", ""), int(r.get("concurrency", 0)))
            == (s.target, s.kind, s.model, s.concurrency)
        )
        s.median_round["errors_total"] = total
    return summaries


def render(records: list[dict[str, Any]], mode: Mode, run_id: str) -> str:
    summaries = with_totals(summarise(records), records)
    lines = header(mode, run_id, records) + goals_section(summaries) + ["", "## Results"]
    lines += scenario_sections(summaries, mode) + startup_section(summaries) + control_plane_section(summaries)
    lines += failures_section(records)
    return "\n".join(lines) + "\n"


def write_outputs(records: list[dict[str, Any]], mode: Mode, results_dir: Path, run_id: str) -> None:
    markdown = render(records, mode, run_id)
    (results_dir / f"{run_id}.md").write_text(markdown)
    summaries = summarise(records)
    (results_dir / f"{run_id}.summary.json").write_text(
        json.dumps([asdict(s) for s in summaries], indent=1, default=str)
    )
    png = plot_latency(summaries, results_dir / f"{run_id}.png")
    print(markdown, flush=True)
    log(f"wrote {results_dir / run_id}.jsonl, .md, .summary.json" + (f" and {png}" if png else ""))
