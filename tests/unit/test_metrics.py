"""Metrics: the cheap histogram, outcome labels, and the collector's Prometheus exposition."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from launch.histogram import Histogram
from launch.server.metrics import EndpointGauges, Metrics, PlatformSnapshot, exposition, outcome_of, registry_for


def samples(metrics: Metrics, snapshot: PlatformSnapshot | None = None) -> dict[tuple[str, frozenset], float]:
    text = exposition(registry_for(metrics, lambda: snapshot or PlatformSnapshot())).decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_histogram_buckets_sum_and_quantiles() -> None:
    hist = Histogram((0.1, 1.0, 10.0))
    for value in (0.05, 0.5, 0.5, 5.0, 50.0):
        hist.observe(value)
    assert hist.counts == [1, 2, 1, 1]
    assert hist.count == 5
    assert abs(hist.sum - 56.05) < 1e-9
    assert hist.cumulative() == [("0.1", 1), ("1.0", 3), ("10.0", 4), ("+Inf", 5)]
    median = hist.quantile(0.5)
    assert median is not None and 0.1 <= median <= 1.0
    assert Histogram().quantile(0.5) is None
    copy = Histogram.from_dict(hist.to_dict())
    copy.add(hist)
    assert copy.counts == [2, 4, 2, 2]


def test_outcomes_are_a_small_fixed_set() -> None:
    assert outcome_of(200, b'{"status":"SUCCESS","result":"1"}') == "success"
    assert outcome_of(200, b'{"status":"FAILURE","traceback":"x"}') == "failure"
    assert outcome_of(200, b'{"task_id":"abc"}') == "success"
    assert outcome_of(404, b"") == "client_error"
    assert outcome_of(429, b"") == "throttled"
    assert outcome_of(503, b"") == "unavailable"
    assert outcome_of(504, b"") == "timeout"
    assert outcome_of(500, b"") == "server_error"


def test_request_counters_and_latency_are_exported_with_endpoint_names() -> None:
    metrics = Metrics()
    metrics.name("e1", "alice", "echo")
    for _ in range(3):
        metrics.request("sync_task", "e1", "success", 0.002)
    metrics.request("sync_task", "e1", "failure", 0.004)
    metrics.request("sync_task", "", "client_error", 0.0001)
    got = samples(metrics)
    labels = {"route": "sync_task", "owner": "alice", "endpoint": "echo"}
    assert got[("launch_requests_total", frozenset({**labels, "outcome": "success"}.items()))] == 3
    assert got[("launch_requests_total", frozenset({**labels, "outcome": "failure"}.items()))] == 1
    assert got[("launch_request_duration_seconds_count", frozenset(labels.items()))] == 4
    assert got[("launch_request_duration_seconds_bucket", frozenset({**labels, "le": "0.0025"}.items()))] == 3
    assert got[("launch_request_duration_seconds_bucket", frozenset({**labels, "le": "+Inf"}.items()))] == 4
    unknown = {"route": "sync_task", "owner": "", "endpoint": "", "outcome": "client_error"}
    assert got[("launch_requests_total", frozenset(unknown.items()))] == 1


def test_control_plane_and_snapshot_gauges() -> None:
    metrics = Metrics()
    metrics.name("e1", "bob", "ep")
    metrics.task("e1", "success")
    metrics.task_started("e1", 0.3)
    metrics.autoscaled("e1", "up", 2)
    metrics.environment("built", 12.0)
    metrics.environment("cached")
    metrics.cold_start_phases("e1", {"load_model": 1.5, "imports": 0.2, "bogus": 1.0})
    metrics.callback("e1", "delivered", 0.01)
    snapshot = PlatformSnapshot([EndpointGauges("e1", "bob", "ep", "READY", inflight=3, queued=7,
                                                desired_workers=2, workers={"serving": 2, "starting": 1})],
                                {"RUNNING": 1})
    got = samples(metrics, snapshot)
    ep = {"owner": "bob", "endpoint": "ep"}
    assert got[("launch_tasks_total", frozenset({**ep, "outcome": "success"}.items()))] == 1
    assert got[("launch_task_queue_wait_seconds_count", frozenset(ep.items()))] == 1
    assert got[("launch_autoscaler_decisions_total", frozenset({**ep, "direction": "up"}.items()))] == 2
    assert got[("launch_environment_builds_total", frozenset({"outcome": "built"}.items()))] == 1
    assert got[("launch_environment_build_seconds_count", frozenset())] == 1
    assert got[("launch_cold_start_phase_seconds_count", frozenset({**ep, "phase": "load_model"}.items()))] == 1
    assert not any(name == "launch_cold_start_phase_seconds_count" and ("phase", "bogus") in labels
                   for name, labels in got)
    assert got[("launch_callback_deliveries_total", frozenset({**ep, "outcome": "delivered"}.items()))] == 1
    assert got[("launch_queue_depth", frozenset(ep.items()))] == 7
    assert got[("launch_endpoint_in_flight", frozenset(ep.items()))] == 3
    assert got[("launch_workers", frozenset({**ep, "state": "serving"}.items()))] == 2
    assert got[("launch_autoscaler_desired_workers", frozenset(ep.items()))] == 2
    assert got[("launch_endpoint_status", frozenset({**ep, "status": "READY"}.items()))] == 1
    assert got[("launch_batch_jobs", frozenset({"status": "RUNNING"}.items()))] == 1


def test_request_id_is_spliced_into_the_forwarded_body_without_reserialising() -> None:
    import orjson

    from launch.server.inputs import with_request_id

    body = b'  {"args": {"x": [1, 2]}, "return_pickled": false}'
    spliced = with_request_id(body, "abc-1f")
    assert orjson.loads(spliced) == {"request_id": "abc-1f", "args": {"x": [1, 2]}, "return_pickled": False}
    assert spliced.endswith(body.lstrip()[1:])  # the client's bytes, untouched
