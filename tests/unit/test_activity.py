"""Recent activity kept for the dashboard: status changes, failures per owner, cold starts."""

from __future__ import annotations

import json
from pathlib import Path

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


def test_access_log_is_written_in_batches_and_rotated(tmp_path: Path) -> None:
    import asyncio

    from launch.server.logs import AccessLog

    target = tmp_path / "access.log"
    log = AccessLog(str(target), rotate_bytes=2000)

    async def run() -> None:
        log.start()
        for i in range(40):
            log.record((1_800_000_000.0 + i, "127.0.0.1", "POST", "/v1/sync-tasks", 200, 0.001, f"r{i}", "a", "e"))
        await log.flush()
        log.record((1_800_000_100.0, "127.0.0.1", "GET", "/healthz", 200, 0.001, "last", "", ""))
        await log.stop()

    asyncio.run(run())
    rotated = (tmp_path / "access.log.1").read_text().splitlines()
    assert len(rotated) == 40 and "request_id=r0 " in rotated[0] and "request_id=r39 " in rotated[-1]
    assert "request_id=last" in target.read_text()
