"""The pure rules of the task lifecycle: retry decisions, public states, callback backoff."""

from __future__ import annotations

import pytest

from launch.server.domain.task_policy import (
    Cause,
    TaskState,
    callback_backoff,
    internal_state,
    public_state,
    retry_decision,
)


def test_an_attempt_that_never_ran_is_given_back() -> None:
    decision = retry_decision(Cause.NOT_SENT, attempt=3, max_attempts=3, detail="refused")
    assert decision.retry and decision.attempt == 2 and decision.reason == "refused"


def test_a_lost_worker_is_retried_while_attempts_remain() -> None:
    decision = retry_decision(Cause.WORKER_LOST, attempt=1, max_attempts=3, detail="connection reset")
    assert decision.retry and decision.attempt == 1


@pytest.mark.parametrize("cause", [Cause.WORKER_LOST, Cause.LEASE_EXPIRED, Cause.SERVER_STOPPING])
def test_the_last_attempt_fails_saying_which(cause: Cause) -> None:
    decision = retry_decision(cause, attempt=3, max_attempts=3, detail="boom")
    assert not decision.retry
    assert decision.reason == "task failed after 3 attempts; last error: boom"


def test_a_time_out_is_final_even_with_attempts_left() -> None:
    decision = retry_decision(Cause.TIMED_OUT, attempt=1, max_attempts=3, detail="ran longer than 2 s")
    assert not decision.retry and decision.attempt == 1
    assert "timed out on attempt 1" in decision.reason


def test_public_state_names() -> None:
    assert public_state(TaskState.RUNNING) == "STARTED"
    assert [public_state(s) for s in (TaskState.PENDING, TaskState.CANCELLED)] == ["PENDING", "CANCELLED"]
    assert internal_state("STARTED") is TaskState.RUNNING
    with pytest.raises(ValueError):
        internal_state("RETRY")


def test_callback_backoff_doubles_up_to_a_cap() -> None:
    assert [callback_backoff(n, 0.5) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert callback_backoff(30, 1.0) == 300.0
