"""The line a worker prints once its bundle is loaded: ``LAUNCH_WORKER_READY <address> [cold-start timestamps as
JSON]`` (``worker/main.py`` writes it; local and Ray placement read it)."""

from __future__ import annotations

import json

READY_PREFIX = b"LAUNCH_WORKER_READY "


def parse_ready_line(line: bytes) -> tuple[str, dict[str, float]] | None:
    """(address, cold-start timestamps) of a ready line; None for any other line."""
    if not line.startswith(READY_PREFIX):
        return None
    address, _, rest = line[len(READY_PREFIX):].strip().decode().partition(" ")
    return address, _timeline(rest)


def _timeline(text: str) -> dict[str, float]:
    """The worker's cold-start timestamps (empty when it sent none, or not a JSON object of numbers)."""
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: float(v) for k, v in data.items() if isinstance(v, int | float)}
