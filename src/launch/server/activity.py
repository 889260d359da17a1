"""What happened recently, in memory, for the dashboard: endpoint status history, recent failures with their
tracebacks, and the cold-start timeline of recent worker starts. Bounded ring buffers; a restart forgets them
(the durable record is the database and the logs)."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

HISTORY = 50
FAILURES = 200
STARTS = 20
TRACEBACK_CHARS = 8000


class Activity:
    def __init__(self) -> None:
        self.statuses: dict[str, deque[dict[str, Any]]] = {}
        self.failures: deque[dict[str, Any]] = deque(maxlen=FAILURES)
        self.cold_starts: dict[str, deque[dict[str, Any]]] = {}

    def saw_status(self, endpoint_id: str, status: str, reason: str | None) -> None:
        """Record the status an endpoint has now, if it changed since the last time it was seen."""
        history = self.statuses.get(endpoint_id)
        if history is None:
            history = self.statuses[endpoint_id] = deque(maxlen=HISTORY)
        if history and history[-1]["status"] == status and history[-1]["reason"] == reason:
            return
        history.append({"at": time.time(), "status": status, "reason": reason})

    def status_history(self, endpoint_id: str) -> list[dict[str, Any]]:
        return list(self.statuses.get(endpoint_id, ()))

    def failed(self, owner: str, endpoint_id: str, kind: str, request_id: str, traceback: str | None) -> None:
        """A prediction or task whose predict function raised (or that the platform could not run)."""
        self.failures.append({"at": time.time(), "owner": owner, "endpoint_id": endpoint_id, "kind": kind,
                              "request_id": request_id, "traceback": (traceback or "")[-TRACEBACK_CHARS:]})

    def recent_failures(self, owner: str | None, endpoint_id: str | None = None, limit: int = 50
                        ) -> list[dict[str, Any]]:
        found = [f for f in reversed(self.failures)
                 if (owner is None or f["owner"] == owner) and (endpoint_id is None or f["endpoint_id"] == endpoint_id)]
        return found[:limit]

    def started(self, endpoint_id: str, start: dict[str, Any]) -> None:
        starts = self.cold_starts.get(endpoint_id)
        if starts is None:
            starts = self.cold_starts[endpoint_id] = deque(maxlen=STARTS)
        starts.append(start)

    def starts(self, endpoint_id: str) -> list[dict[str, Any]]:
        return list(self.cold_starts.get(endpoint_id, ()))

    def forget(self, endpoint_id: str) -> None:
        self.statuses.pop(endpoint_id, None)
        self.cold_starts.pop(endpoint_id, None)
