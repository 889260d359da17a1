"""Measurement records: one JSON line each, to stdout and results/<run>.jsonl; median-round summaries."""

from __future__ import annotations

import json
import math
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launch_bench.stats import median

PRIMARY = {
    "sync": "rps",
    "stream": "items_per_s",
    "async": "completed_per_s",
    "startup": "ready_s",
    "scale_from_zero": "first_result_s",
    "control_plane": "idle_cpu_pct",
}


class Recorder:
    """Appends every measurement to the run's JSONL file and echoes it on stdout."""

    def __init__(self, path: Path, run_id: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.run_id = run_id
        self.records: list[dict[str, Any]] = []

    def emit(self, **fields: Any) -> dict[str, Any]:
        record = {"run_id": self.run_id, "ts": round(time.time(), 3), **fields}
        line = json.dumps(_clean(record), default=str)
        with self.path.open("a") as fh:
            fh.write(line + "\n")
        print(line, flush=True)
        self.records.append(json.loads(line))
        return record


def _clean(record: dict[str, Any]) -> dict[str, Any]:
    """NaN/inf are not JSON: write them as null."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}


@dataclass(frozen=True)
class Summary:
    """The median round of one (target, kind, model, concurrency) and the spread of its primary metric."""

    target: str
    group: str
    kind: str
    model: str
    concurrency: int
    median_round: dict[str, Any]
    rounds: int
    spread_pct: float  # (max - min) / median of the primary metric, over rounds

    def get(self, key: str) -> float:
        value = self.median_round.get(key)
        return float(value) if isinstance(value, int | float) else math.nan


def _key(r: dict[str, Any]) -> tuple[str, str, str, str, int]:
    return r["target"], r["group"], r["kind"], r.get("model", ""), int(r.get("concurrency", 0))


def summarise(records: list[dict[str, Any]]) -> list[Summary]:
    groups: dict[tuple[str, str, str, str, int], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if "error" not in record and record.get("kind") in PRIMARY:
            groups[_key(record)].append(record)
    return [_summary(key, rows) for key, rows in groups.items()]


def _summary(key: tuple[str, str, str, str, int], rows: list[dict[str, Any]]) -> Summary:
    metric = PRIMARY[key[2]]
    values = [float(r.get(metric) or math.nan) for r in rows]
    ordered = sorted(zip(values, range(len(rows)), strict=True))
    mid = ordered[(len(ordered) - 1) // 2][1]
    centre = median(values)
    spread = 100 * (max(values) - min(values)) / centre if centre else math.nan
    return Summary(*key, median_round=rows[mid], rounds=len(rows), spread_pct=spread)


def log(message: str) -> None:
    print(f"# {message}", file=sys.stderr, flush=True)
