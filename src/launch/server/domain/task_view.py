"""A task as the API (and its callbacks) show it: the public state and what goes with it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from launch.server.domain.task_policy import TaskState, public_state
from launch.server.domain.tasks import Task


def task_view(task: Task, result_url: Callable[[str], str], position: int | None = None) -> dict[str, Any]:
    """``status`` is PENDING (with ``queue_position`` when known), STARTED (with ``attempt``), SUCCESS
    (``result`` or ``result_url``), FAILURE (``traceback`` and the ``attempt`` it failed on), CANCELLED or
    EXPIRED (with a ``reason``)."""
    view: dict[str, Any] = {"task_id": task.id, "status": public_state(task.state), "attempts": task.attempt,
                            "attempt": task.attempt}
    if task.state is TaskState.SUCCESS:
        if task.result_key:
            view["result_url"] = result_url(task.result_key)
        else:
            view["result"] = task.result
    elif task.state is TaskState.FAILURE:
        view["traceback"] = task.traceback
        view["reason"] = _exception_line(task.traceback)
    elif task.state in (TaskState.CANCELLED, TaskState.EXPIRED):
        view["reason"] = task.traceback
    elif task.state is TaskState.PENDING and position is not None:
        view["queue_position"] = position
    if task.callback is not None:
        view["callback"] = {"url": task.callback["url"], "state": task.callback_state,
                            "attempts": task.callback_attempts, "error": task.callback_error}
    return view


def task_summary(task: Task) -> dict[str, Any]:
    """A list row: no result, no traceback (fetch the task for those)."""
    return {"task_id": task.id, "status": public_state(task.state), "attempt": task.attempt,
            "priority": task.priority, "created_at": task.created_at, "started_at": task.started_at,
            "finished_at": task.finished_at, "callback_state": task.callback_state,
            "reason": None if task.state in (TaskState.SUCCESS, TaskState.PENDING) else _exception_line(task.traceback)}


def _exception_line(text: str | None) -> str | None:
    """The last non-empty line of a traceback (the exception), or the reason itself."""
    if not text:
        return text
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else text
