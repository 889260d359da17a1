"""The autoscaler's pure decision: scale up at once, down only after a delay, to zero only after longer."""

from __future__ import annotations

import pytest

from launch.server.control.autoscaler import Load, Policy, decide, needed

POLICY = Policy(scale_down_after=30.0, scale_to_zero_after=60.0)


def load(*, current: int, inflight: int = 0, queued: int = 0, min_workers: int = 0, max_workers: int = 10,
         per_worker: int = 4, idle: float = 0.0) -> Load:
    return Load(min_workers=min_workers, max_workers=max_workers, per_worker=per_worker, inflight=inflight,
                queued=queued, current=current, seconds_since_busy=idle)


@pytest.mark.parametrize(("inflight", "queued", "per_worker", "expected"), [
    (0, 0, 4, 0), (1, 0, 4, 1), (4, 0, 4, 1), (5, 0, 4, 2), (3, 6, 4, 3), (0, 17, 4, 5), (7, 0, 1, 7),
])
def test_needed_is_demand_divided_by_per_worker_rounded_up(inflight: int, queued: int, per_worker: int,
                                                           expected: int) -> None:
    assert needed(load(current=0, inflight=inflight, queued=queued, per_worker=per_worker)) == expected


def test_needed_treats_per_worker_below_one_as_one() -> None:
    assert needed(load(current=0, inflight=3, per_worker=0)) == 3


def test_scales_up_at_once_even_when_just_busy() -> None:
    assert decide(load(current=1, inflight=12, idle=0.0), POLICY) == 3


def test_scales_up_from_zero_at_once() -> None:
    assert decide(load(current=0, queued=1), POLICY) == 1


def test_scale_up_is_clamped_to_max_workers() -> None:
    assert decide(load(current=1, queued=1000, max_workers=5), POLICY) == 5


def test_never_below_min_workers() -> None:
    assert decide(load(current=2, min_workers=2, idle=10_000), POLICY) == 2
    assert decide(load(current=0, min_workers=3), POLICY) == 3


def test_steady_demand_keeps_current_count() -> None:
    assert decide(load(current=2, inflight=8), POLICY) == 2


def test_scale_down_waits_for_the_delay() -> None:
    busy_then_quiet = load(current=4, inflight=4, min_workers=1)  # needs 1
    assert decide(busy_then_quiet, POLICY) == 4
    assert decide(load(current=4, inflight=4, min_workers=1, idle=29.9), POLICY) == 4
    assert decide(load(current=4, inflight=4, min_workers=1, idle=30.0), POLICY) == 1


def test_scale_down_goes_straight_to_the_target_not_one_by_one() -> None:
    assert decide(load(current=6, inflight=5, idle=31), POLICY) == 2


def test_scale_to_zero_waits_for_scale_to_zero_after_not_scale_down_after() -> None:
    assert decide(load(current=1, idle=45.0), POLICY) == 1  # past scale_down_after, not scale_to_zero_after
    assert decide(load(current=1, idle=59.9), POLICY) == 1
    assert decide(load(current=1, idle=60.0), POLICY) == 0


def test_policy_values_are_used() -> None:
    fast = Policy(scale_down_after=1.0, scale_to_zero_after=2.0)
    assert decide(load(current=3, inflight=1, idle=1.0), fast) == 1
    assert decide(load(current=1, idle=1.5), fast) == 1
    assert decide(load(current=1, idle=2.0), fast) == 0


def test_lowered_max_workers_is_obeyed_at_once() -> None:
    # an edit lowered max_workers below the running count while demand is high: the endpoint must not keep
    # running more workers than its maximum (the reconciler reports such a load with seconds_since_busy=0,
    # so waiting for the scale-down delay would never shrink a busy endpoint)
    assert decide(load(current=5, queued=100, max_workers=2, idle=0), POLICY) == 2
