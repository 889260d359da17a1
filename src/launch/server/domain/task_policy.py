"""The pure rules of the task lifecycle: states, what a failed attempt leads to, and how a task is shown.

No I/O here: ``domain.tasks`` applies these decisions to the database, and the unit tests check them in
microseconds.

    PENDING ──claim──▶ RUNNING ──finish──▶ SUCCESS | FAILURE
       │                  │  └──release (retry_decision)──▶ PENDING | FAILURE
       │                  └──cancel──▶ CANCELLED
       ├──cancel──▶ CANCELLED
       └──queue TTL passed──▶ EXPIRED
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class TaskState(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"  # shown as STARTED
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"


TERMINAL = frozenset({TaskState.SUCCESS, TaskState.FAILURE, TaskState.CANCELLED, TaskState.EXPIRED})
PUBLIC_STATES = ("PENDING", "STARTED", "SUCCESS", "FAILURE", "CANCELLED", "EXPIRED")


def public_state(state: TaskState) -> str:
    """The state as the API names it (Launch and Celery say STARTED for a task a worker runs)."""
    return "STARTED" if state is TaskState.RUNNING else state.value


def internal_state(name: str) -> TaskState:
    """The stored state for an API state name (a filter on ``GET /v1/async-tasks``); ValueError if unknown."""
    return TaskState.RUNNING if name == "STARTED" else TaskState(name)


class Cause(StrEnum):
    """Why an attempt ended without an outcome from the predict function."""

    NOT_SENT = "not_sent"  # the request never reached a worker (refused, connection failed before sending)
    WORKER_LOST = "worker_lost"  # the worker died or broke the connection while it had the task
    LEASE_EXPIRED = "lease_expired"  # the dispatcher holding the lease stopped heartbeating (crash, hang)
    SERVER_STOPPING = "server_stopping"  # this server shut down while the task ran
    TIMED_OUT = "timed_out"  # the task ran past its time limit


@dataclass(frozen=True)
class RetryDecision:
    retry: bool
    attempt: int  # the attempt count to store (given back when the attempt never ran)
    reason: str


def retry_decision(cause: Cause, attempt: int, max_attempts: int, detail: str) -> RetryDecision:
    """What a task whose attempt ``attempt`` ended by ``cause`` becomes.

    - An attempt that never ran does not count: the task goes back to the queue with its count given back.
    - A time-out is final: the predict function itself is slow or hung, running it again would hang again.
    - Infrastructure failures (worker lost, lease expired, server stopping) are retried while attempts
      remain; the last one fails the task, saying which attempt it was.
    """
    if cause is Cause.NOT_SENT:
        return RetryDecision(True, max(0, attempt - 1), detail)
    if cause is Cause.TIMED_OUT:
        return RetryDecision(False, attempt, f"task timed out on attempt {attempt}: {detail}")
    if attempt >= max_attempts:
        return RetryDecision(False, attempt, f"task failed after {attempt} attempts; last error: {detail}")
    return RetryDecision(True, attempt, detail)


def callback_backoff(attempts: int, base: float, cap: float = 300.0) -> float:
    """Seconds to wait before callback delivery number ``attempts + 1`` (exponential, capped)."""
    return float(min(cap, base * 2 ** max(0, attempts - 1)))
