"""Recent activity kept for the dashboard: status changes, failures per owner, cold starts."""

from __future__ import annotations

import json

from launch.server.activity import Activity
from launch.server.logs import format_entry


def test_status_history_records_changes_only() -> None:
    activity = Activity()
    for status in ("UPDATE_PENDING", "UPDATE_PENDING", "UPDATE_IN_PROGRESS", "READY", "READY"):
        activity.saw_status("e1", status, None)
    assert [h["status"] for h in activity.status_history("e1")] == ["UPDATE_PENDING", "UPDATE_IN_PROGRESS", "READY"]
    activity.forget("e1")
    assert activity.status_history("e1") == []


def test_failures_are_scoped_to_their_owner_newest_first() -> None:
    activity = Activity()
    activity.failed("alice", "e1", "sync", "r1", "Traceback: a")
    activity.failed("bob", "e2", "task", "t1", "Traceback: b")
    activity.failed("alice", "e1", "sync", "r2", "Traceback: c")
    assert [f["request_id"] for f in activity.recent_failures("alice")] == ["r2", "r1"]
    assert [f["request_id"] for f in activity.recent_failures(None)] == ["r2", "t1", "r1"]
    assert [f["request_id"] for f in activity.recent_failures(None, "e2")] == ["t1"]


def test_access_log_entries_as_text_and_json() -> None:
    entry = (1_800_000_000.5, "127.0.0.1", "POST", "/v1/sync-tasks", 200, 0.0123, "r1", "alice", "echo")
    text = format_entry(entry, as_json=False)
    assert '"POST /v1/sync-tasks" 200 12.30ms request_id=r1 owner=alice endpoint=echo' in text
    forged = (1.0, "c", "GET", '/v1/async-tasks/x"\n2026 fake', 404, 0.0, 'x"\nfake', "", "")
    assert "\n" not in format_entry(forged, as_json=False) and '"GET /v1/async-tasks/x%22%0A2026%20fake"' in \
        format_entry(forged, as_json=False)
    data = json.loads(format_entry(entry, as_json=True))
    assert data["request_id"] == "r1" and data["status"] == 200 and data["duration_ms"] == 12.3
