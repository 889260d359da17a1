"""The cold-start timeline from the placement's and the worker's timestamps."""

from __future__ import annotations

from launch.server import cold_start


def test_phases_from_timestamps() -> None:
    timeline = {"spawned": 100.0, "started": 100.2, "imported": 100.5, "loaded": 103.5, "listening": 103.6,
                "ready": 103.7}
    phases = cold_start.phases(timeline, environment_seconds=20.0)
    assert list(phases) == ["environment", "process_start", "imports", "load_model", "ready"]
    assert phases["environment"] == 20.0
    assert abs(phases["process_start"] - 0.2) < 1e-6
    assert abs(phases["imports"] - 0.3) < 1e-6
    assert abs(phases["load_model"] - 3.0) < 1e-6
    assert abs(phases["ready"] - 0.2) < 1e-6


def test_missing_timestamps_leave_phases_out_and_the_line_reads_well() -> None:
    start = cold_start.record("w1", 3, {"spawned": 10.0, "ready": 11.0}, "cached", 0.5)
    assert set(start["phases"]) == {"environment"}
    assert start["started_at"] == 9.5
    line = cold_start.describe(cold_start.record("w1", 3, {"spawned": 10.0, "started": 10.1, "imported": 10.4,
                                                           "loaded": 12.4, "ready": 12.5}, "built", 30.0))
    assert "cold start of worker w1 (generation 3)" in line
    assert "environment 30.00s (built)" in line and "load model 2.00s" in line and "total 32.50s" in line
