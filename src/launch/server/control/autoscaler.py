"""How many workers an endpoint should have (pure: no I/O, unit-tested in milliseconds)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Load:
    min_workers: int
    max_workers: int
    per_worker: int
    inflight: int
    queued: int
    current: int
    seconds_since_busy: float


@dataclass(frozen=True)
class Policy:
    scale_down_after: float = 30.0
    scale_to_zero_after: float = 60.0


def needed(load: Load) -> int:
    """Workers that would carry the current demand at ``per_worker`` concurrent requests each."""
    return math.ceil((load.inflight + load.queued) / max(1, load.per_worker))


def decide(load: Load, policy: Policy) -> int:
    """Target worker count: scale up at once, down only after demand stayed lower for a while."""
    target = max(load.min_workers, min(load.max_workers, needed(load)))
    if target >= load.current:
        return target
    wait = policy.scale_to_zero_after if target == 0 else policy.scale_down_after
    ceiling = min(load.current, load.max_workers)  # a lowered max_workers applies at once
    return target if load.seconds_since_busy >= wait else max(target, ceiling)
