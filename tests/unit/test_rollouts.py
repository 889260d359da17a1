"""``domain.rollouts``: a failed generation rolls back to the serving one, never reuses a number, and only an
endpoint with nothing to serve refuses requests."""

from __future__ import annotations

from dataclasses import replace

from launch.server.domain.rollouts import (
    FailedRollout,
    Record,
    gives_up,
    needs_proof,
    next_generation,
    on_failure,
    on_ready,
    usable,
)

GOOD = {"cpus": 1, "memory": "1Gi", "gpus": 0, "gpu_type": None, "storage": None, "min_workers": 1,
        "max_workers": 2, "per_worker": 4}
# generation 3 (bundle "bad", 2 GPUs, max_workers 5) rolls out while generation 2 (bundle "good") serves
ROLLING = Record(
    generation=3, bundle_id="b-bad", bundle_name="bad", settings={**GOOD, "gpus": 2, "gpu_type": "t4",
                                                                  "max_workers": 5},
    serving_generation=2, serving_bundle_id="b-good", serving_bundle_name="good", serving_settings=GOOD,
    failed_rollout=None,
)
NEVER_SERVED = replace(ROLLING, generation=1, serving_generation=None, serving_bundle_id=None,
                       serving_bundle_name=None, serving_settings=None)


def test_deterministic_failures_give_up_at_once_crashes_after_the_limit() -> None:
    assert gives_up(True, 1, 3)
    assert not gives_up(False, 1, 3) and not gives_up(False, 2, 3)
    assert gives_up(False, 3, 3)


def test_a_failed_rollout_rolls_back_to_the_serving_generation() -> None:
    values = on_failure(ROLLING, 3, "installing requirements failed", now=10.0)
    assert values["generation"] == 2 and values["bundle_id"] == "b-good" and values["bundle_name"] == "good"
    assert values["settings"]["gpus"] == 0 and values["settings"]["gpu_type"] is None  # resources roll back
    assert values["settings"]["max_workers"] == 5  # the edit's scaling stays
    assert values["failed_rollout"] == {"generation": 3, "bundle_name": "bad",
                                        "reason": "installing requirements failed", "failed_at": 10.0}
    assert "'bad'" in values["status_reason"] and "still serving bundle 'good'" in values["status_reason"]
    assert "installing requirements failed" in values["status_reason"]


def test_a_rolled_back_endpoint_stays_usable() -> None:
    failed = FailedRollout(3, "bad", "reason", 10.0)
    assert usable(status_failed=True, generation=2, failed=failed)  # at the serving generation again
    assert not usable(status_failed=True, generation=3, failed=failed)
    assert not usable(status_failed=True, generation=1, failed=None)
    assert usable(status_failed=False, generation=1, failed=None)


def test_with_nothing_serving_the_endpoint_fails_in_place() -> None:
    values = on_failure(NEVER_SERVED, 1, "loader raised", now=1.0)
    assert values == {"failed_rollout": {"generation": 1, "bundle_name": "bad", "reason": "loader raised",
                                         "failed_at": 1.0}, "status_reason": "loader raised"}


def test_a_superseded_generation_changes_nothing() -> None:
    assert on_failure(ROLLING, 2, "late", now=1.0) == {}
    assert on_ready(ROLLING, 2) == {}


def test_ready_makes_the_generation_the_serving_one() -> None:
    assert on_ready(ROLLING, 3) == {"serving_generation": 3, "serving_bundle_id": "b-bad",
                                    "serving_bundle_name": "bad", "serving_settings": ROLLING.settings,
                                    "failed_rollout": None}
    assert on_ready(replace(ROLLING, serving_generation=3), 3) == {}  # already serving: no write


def test_new_generations_never_reuse_a_failed_number() -> None:
    rolled_back = replace(ROLLING, generation=2, failed_rollout=FailedRollout(3, "bad", "r", 1.0))
    assert next_generation(rolled_back) == 4
    assert next_generation(ROLLING) == 4
    assert next_generation(NEVER_SERVED) == 2


def test_only_a_generation_that_never_served_needs_proof() -> None:
    assert needs_proof(3, 2) and needs_proof(1, None)
    assert not needs_proof(2, 2)
