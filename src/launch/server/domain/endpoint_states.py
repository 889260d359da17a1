"""The endpoint lifecycle as one state machine (pure; the reconciler and services apply it).

    UPDATE_PENDING ──start──▶ UPDATE_IN_PROGRESS ──ready──▶ READY
          ▲                         │  failed                 │ edit
          │ edit                    ▼                         ▼
          └──────────────────── UPDATE_FAILED          UPDATE_PENDING
    any ──delete──▶ DELETE_IN_PROGRESS ──(workers stopped)──▶ row removed

A READY endpoint stays READY while a rolling update or an autoscaling change is under way (old workers keep
serving). UPDATE_FAILED says the last rollout failed: with a generation that served before, the endpoint is
rolled back to it and keeps serving (``rollouts``); only one that never served refuses requests. A worker
that does not fit on the host (``waiting``) leaves the status as it is and says why in ``status_reason``.
"""

from __future__ import annotations

from enum import StrEnum


class EndpointStatus(StrEnum):
    UPDATE_PENDING = "UPDATE_PENDING"
    UPDATE_IN_PROGRESS = "UPDATE_IN_PROGRESS"
    READY = "READY"
    UPDATE_FAILED = "UPDATE_FAILED"
    DELETE_IN_PROGRESS = "DELETE_IN_PROGRESS"


class Event(StrEnum):
    EDITED = "edited"
    STARTING = "starting"
    WORKER_READY = "worker_ready"
    FAILED = "failed"
    DELETE = "delete"
    WAITING = "waiting"  # a worker does not fit on the host now; the status keeps the reason


class IllegalTransition(Exception):
    pass


_TABLE: dict[tuple[EndpointStatus, Event], EndpointStatus] = {
    (EndpointStatus.UPDATE_PENDING, Event.STARTING): EndpointStatus.UPDATE_IN_PROGRESS,
    (EndpointStatus.UPDATE_PENDING, Event.WORKER_READY): EndpointStatus.READY,
    (EndpointStatus.UPDATE_PENDING, Event.FAILED): EndpointStatus.UPDATE_FAILED,
    (EndpointStatus.UPDATE_PENDING, Event.EDITED): EndpointStatus.UPDATE_PENDING,
    (EndpointStatus.UPDATE_IN_PROGRESS, Event.STARTING): EndpointStatus.UPDATE_IN_PROGRESS,
    (EndpointStatus.UPDATE_IN_PROGRESS, Event.WORKER_READY): EndpointStatus.READY,
    (EndpointStatus.UPDATE_IN_PROGRESS, Event.FAILED): EndpointStatus.UPDATE_FAILED,
    (EndpointStatus.UPDATE_IN_PROGRESS, Event.EDITED): EndpointStatus.UPDATE_PENDING,
    (EndpointStatus.READY, Event.STARTING): EndpointStatus.READY,
    (EndpointStatus.READY, Event.WORKER_READY): EndpointStatus.READY,
    (EndpointStatus.READY, Event.FAILED): EndpointStatus.UPDATE_FAILED,
    (EndpointStatus.READY, Event.EDITED): EndpointStatus.UPDATE_PENDING,
    (EndpointStatus.UPDATE_FAILED, Event.EDITED): EndpointStatus.UPDATE_PENDING,
    (EndpointStatus.UPDATE_FAILED, Event.FAILED): EndpointStatus.UPDATE_FAILED,
    (EndpointStatus.UPDATE_PENDING, Event.WAITING): EndpointStatus.UPDATE_PENDING,
    (EndpointStatus.UPDATE_IN_PROGRESS, Event.WAITING): EndpointStatus.UPDATE_IN_PROGRESS,
    (EndpointStatus.READY, Event.WAITING): EndpointStatus.READY,
}


def transition(current: EndpointStatus, event: Event) -> EndpointStatus:
    """The status after ``event``; raises ``IllegalTransition`` for impossible moves."""
    if event is Event.DELETE:
        return EndpointStatus.DELETE_IN_PROGRESS
    if current is EndpointStatus.DELETE_IN_PROGRESS:
        raise IllegalTransition(f"endpoint is being deleted; cannot apply {event}")
    try:
        return _TABLE[(current, event)]
    except KeyError:
        raise IllegalTransition(f"cannot apply {event} to an endpoint in {current}") from None
