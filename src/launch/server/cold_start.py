"""The cold-start timeline of one worker start, from the timestamps the placement and the worker report:
environment (build or cache hit) → process start → imports → ``load_model`` → ready. Pure functions."""

from __future__ import annotations

from typing import Any

from launch.worker.logs import timestamp

PHASES = ("environment", "process_start", "imports", "load_model", "ready")


def phases(timeline: dict[str, float], environment_seconds: float) -> dict[str, float]:
    """Seconds per phase; a phase whose timestamps are missing is left out."""
    out = {"environment": max(0.0, environment_seconds)}
    steps = (("process_start", "spawned", "started"), ("imports", "started", "imported"),
             ("load_model", "imported", "loaded"), ("ready", "loaded", "ready"))
    for name, begin, end in steps:
        if begin in timeline and end in timeline:
            out[name] = max(0.0, timeline[end] - timeline[begin])
    return out


def record(worker_id: str, generation: int, timeline: dict[str, float], environment: str,
           environment_seconds: float) -> dict[str, Any]:
    """One start as the dashboard and the API show it."""
    split = phases(timeline, environment_seconds)
    began = timeline.get("spawned", 0.0) - environment_seconds
    return {
        "worker_id": worker_id, "generation": generation, "started_at": began, "environment": environment,
        "phases": split, "total": sum(split.values()),
    }


def describe(start: dict[str, Any]) -> str:
    """One line for the endpoint's creation logs."""
    environment = start["environment"] or "unknown"
    parts = [f"{name.replace('_', ' ')} {seconds:.2f}s" + (f" ({environment})" if name == "environment" else "")
             for name, seconds in start["phases"].items()]
    return (f"{timestamp(start['started_at'])} cold start of worker {start['worker_id']} "
            f"(generation {start['generation']}): {', '.join(parts)}; total {start['total']:.2f}s")
