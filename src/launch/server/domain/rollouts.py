"""Rollouts that cannot hurt (pure decisions; ``endpoints`` writes them, the reconciler acts on them).

An edit that changes an endpoint's bundle or resources starts a new *generation*. Its workers must become
ready before the old generation is drained, so the generation that last became ready (the *serving* one) keeps
answering meanwhile. When the new generation cannot start, the endpoint rolls back to the serving generation
(bundle and resources; the scaling settings of the edit stay), records the failed rollout with its reason and
stays usable. Only an endpoint with nothing to serve (it never became ready, or its serving generation itself
fails) refuses requests.

Failures that repeat identically (requirements that do not install, a loader that raises, hardware this host
lacks, a bundle whose bytes are gone) end a rollout at once; a crash at start may be bad luck and is retried
a few times with backoff.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# Fields whose change needs new workers (a new generation, rolled out); the rest only rescale.
RESOURCE_FIELDS = ("cpus", "memory", "storage", "gpus", "gpu_type")
ROLLOUT_FIELDS = ("bundle_id", *RESOURCE_FIELDS)


@dataclass(frozen=True)
class FailedRollout:
    """A generation that could not start: what it asked for and why it failed."""

    generation: int
    bundle_name: str
    reason: str
    failed_at: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> FailedRollout | None:
        if not data:
            return None
        return cls(int(data["generation"]), str(data["bundle_name"]), str(data["reason"]), float(data["failed_at"]))


@dataclass(frozen=True)
class Record:
    """The columns of an endpoint row these decisions read."""

    generation: int
    bundle_id: str
    bundle_name: str
    settings: dict[str, Any]
    serving_generation: int | None
    serving_bundle_id: str | None
    serving_bundle_name: str | None
    serving_settings: dict[str, Any] | None
    failed_rollout: FailedRollout | None


def gives_up(deterministic: bool, failures: int, limit: int) -> bool:
    """Whether a generation that failed to start ``failures`` times has failed for good."""
    return deterministic or failures >= limit


def next_generation(record: Record) -> int:
    """The number of a new rollout: never one a failed rollout already used (late workers of that one
    must never count as the new generation's)."""
    failed = record.failed_rollout.generation if record.failed_rollout else 0
    return max(record.generation, failed) + 1


def usable(status_failed: bool, generation: int, failed: FailedRollout | None) -> bool:
    """Whether requests are accepted: always, unless the generation the endpoint is at has failed (a
    rolled-back endpoint is at its serving generation, which did not fail)."""
    return not status_failed or (failed is not None and failed.generation != generation)


def needs_proof(generation: int, serving_generation: int | None) -> bool:
    """A generation that never served must start one worker (even with no traffic) to prove it loads."""
    return serving_generation != generation


def on_ready(record: Record, generation: int) -> dict[str, Any]:
    """Column values once a worker of ``generation`` serves: it becomes the serving generation."""
    if generation != record.generation or record.serving_generation == generation:
        return {}
    return {"serving_generation": generation, "serving_bundle_id": record.bundle_id,
            "serving_bundle_name": record.bundle_name, "serving_settings": dict(record.settings),
            "failed_rollout": None}


def on_failure(record: Record, generation: int, reason: str, now: float) -> dict[str, Any]:
    """Column values once ``generation`` failed for good (empty when a newer edit superseded it).

    With a serving generation to fall back to, the endpoint rolls back to it: bundle and resources of the
    serving generation, the scaling settings of the edit, the serving generation's number (its workers are
    the current ones again). The failed rollout and its reason stay on the record until a later edit.
    """
    if generation != record.generation:
        return {}
    failed = FailedRollout(generation, record.bundle_name, reason, now)
    values: dict[str, Any] = {"failed_rollout": failed.to_dict(), "status_reason": reason}
    if record.serving_generation is None or record.serving_generation == generation:
        return values
    assert record.serving_bundle_id is not None and record.serving_bundle_name is not None
    serving = record.serving_settings or {}
    settings = {**record.settings, **{f: serving.get(f) for f in RESOURCE_FIELDS if f in serving}}
    values.update(
        generation=record.serving_generation, bundle_id=record.serving_bundle_id,
        bundle_name=record.serving_bundle_name, settings=settings,
        status_reason=(f"the rollout of bundle {record.bundle_name!r} (generation {generation}) failed; still "
                       f"serving bundle {record.serving_bundle_name!r} (generation {record.serving_generation}). "
                       f"{reason}"),
    )
    return values
