"""Prometheus metrics, cheap on the request path.

Everything that happens per request or per task bumps plain ints and ``launch.histogram.Histogram`` buckets on
the event loop's thread (no locks, no label lookups in prometheus-client); ``MetricsCollector`` turns them
into Prometheus families only when ``/metrics`` is scraped, together with the gauges of a ``PlatformSnapshot``
(workers, queue depths, statuses) read at that moment. Labels stay bounded: route, endpoint (owner and name,
resolved from the endpoint id; "" for requests refused before their endpoint was known), outcome, phase,
state — never a task or request id.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from launch.histogram import LATENCY_BUCKETS, Histogram
from launch.server.cold_start import PHASES

BUILD_BUCKETS: tuple[float, ...] = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
POLL_ROUTES = frozenset({"get_task", "legacy_endpoint_task", "legacy_task_result"})  # not predictions


def outcome_of(status: int, body: bytes) -> str:
    """A bounded outcome for a prediction response: what a dashboard or alert cares about."""
    if status == 200:
        # worker frames start with {"status":"SUCCESS"|"FAILURE" (orjson, no spaces); legacy answers end with
        # "state":"FAILURE"}
        if body.startswith(b'{"status":"'):
            return "failure" if body.startswith(b'{"status":"FAILURE"') else "success"
        return "failure" if body.endswith(b'"state":"FAILURE"}') else "success"
    if status == 429:
        return "throttled"
    if status == 504:
        return "timeout"
    if status == 503:
        return "unavailable"
    if 400 <= status < 500:
        return "client_error"
    return "server_error"


@dataclass
class EndpointGauges:
    """One endpoint as the control plane sees it right now (read at scrape time)."""

    endpoint_id: str
    owner: str
    name: str
    status: str
    inflight: int
    queued: int
    desired_workers: int | None
    workers: dict[str, int] = field(default_factory=dict)  # state -> count


@dataclass
class PlatformSnapshot:
    endpoints: list[EndpointGauges] = field(default_factory=list)
    batch_jobs: dict[str, int] = field(default_factory=dict)  # status -> count


class Metrics:
    """The platform's counters. Only the event loop's thread writes them."""

    def __init__(self) -> None:
        self.inflight = 0
        # (route, endpoint id, outcome) -> latencies: its count is the request counter, so a request costs one
        # dict lookup and one bucket increment
        self.requests: dict[tuple[str, str, str], Histogram] = {}
        self.names: dict[str, tuple[str, str]] = {}  # endpoint id -> (owner, name)
        self.tasks: dict[tuple[str, str], int] = {}  # (endpoint id, outcome) -> count
        self.queue_wait: dict[str, Histogram] = {}
        self.task_duration: dict[str, Histogram] = {}
        self.compute: dict[str, Histogram] = {}  # endpoint id -> worker compute time (from workers' STATS)
        self.autoscaler: dict[tuple[str, str], int] = {}  # (endpoint id, direction) -> decisions
        self.worker_starts: dict[tuple[str, str], int] = {}  # (endpoint id, outcome) -> count
        self.environments: dict[str, int] = {}  # outcome -> count
        self.environment_seconds = Histogram(BUILD_BUCKETS)
        self.cold_start: dict[tuple[str, str], Histogram] = {}  # (endpoint id, phase) -> seconds
        self.callbacks: dict[tuple[str, str], int] = {}  # (endpoint id, outcome) -> deliveries
        self.callback_seconds: dict[str, Histogram] = {}

    # -- the request path (keep these cheap) ----------------------------------------------------------------
    def request(self, route: str, endpoint_id: str, outcome: str, seconds: float) -> None:
        key = (route, endpoint_id, outcome)
        hist = self.requests.get(key)
        if hist is None:
            hist = self.requests[key] = Histogram(LATENCY_BUCKETS)
        hist.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1  # Histogram.observe, inlined
        hist.sum += seconds

    def by_route(self) -> dict[tuple[str, str], tuple[dict[str, int], Histogram]]:
        """(route, endpoint id) -> (requests by outcome, latencies of all of them): scrape time only."""
        out: dict[tuple[str, str], tuple[dict[str, int], Histogram]] = {}
        for (route, endpoint_id, outcome), hist in list(self.requests.items()):
            entry = out.get((route, endpoint_id))
            if entry is None:
                entry = out[(route, endpoint_id)] = ({}, Histogram(LATENCY_BUCKETS))
            entry[0][outcome] = hist.count
            entry[1].add(hist)
        return out

    def name(self, endpoint_id: str, owner: str, name: str) -> None:
        """Remember the labels of an endpoint id (done when a snapshot or a request first sees it)."""
        self.names[endpoint_id] = (owner, name)

    def endpoint_ids(self) -> set[str]:
        """Every endpoint id something was counted for (scrape time only)."""
        ids = {endpoint_id for _, endpoint_id, _ in list(self.requests)}
        for table in (self.tasks, self.autoscaler, self.worker_starts, self.cold_start, self.callbacks):
            ids.update(endpoint_id for endpoint_id, _ in list(table))
        for hists in (self.queue_wait, self.task_duration, self.compute, self.callback_seconds):
            ids.update(list(hists))
        return ids

    # -- tasks -----------------------------------------------------------------------------------------------
    def task(self, endpoint_id: str, outcome: str) -> None:
        """An async task attempt ended: success, failure (the predict function raised), retried, lost."""
        key = (endpoint_id, outcome)
        self.tasks[key] = self.tasks.get(key, 0) + 1

    def task_started(self, endpoint_id: str, waited: float) -> None:
        _hist(self.queue_wait, endpoint_id).observe(max(0.0, waited))

    def task_ran(self, endpoint_id: str, seconds: float) -> None:
        _hist(self.task_duration, endpoint_id).observe(seconds)

    # -- control plane ---------------------------------------------------------------------------------------
    def autoscaled(self, endpoint_id: str, direction: str, workers: int = 1) -> None:
        key = (endpoint_id, direction)
        self.autoscaler[key] = self.autoscaler.get(key, 0) + workers

    def worker_started(self, endpoint_id: str, ok: bool) -> None:
        key = (endpoint_id, "ready" if ok else "failed")
        self.worker_starts[key] = self.worker_starts.get(key, 0) + 1

    def environment(self, outcome: str, seconds: float | None = None) -> None:
        """An environment was needed: ``built``, ``cached``, ``server`` (the server's own) or ``failed``."""
        self.environments[outcome] = self.environments.get(outcome, 0) + 1
        if seconds is not None:
            self.environment_seconds.observe(seconds)

    def cold_start_phases(self, endpoint_id: str, phases: dict[str, float]) -> None:
        for phase, seconds in phases.items():
            if phase in PHASES:
                key = (endpoint_id, phase)
                hist = self.cold_start.get(key)
                if hist is None:
                    hist = self.cold_start[key] = Histogram(BUILD_BUCKETS)
                hist.observe(max(0.0, seconds))

    def callback(self, endpoint_id: str, outcome: str, seconds: float | None = None) -> None:
        """One callback delivery attempt ended (``delivered``, ``retrying``, ``failed``): the hook for callbacks."""
        key = (endpoint_id, outcome)
        self.callbacks[key] = self.callbacks.get(key, 0) + 1
        if seconds is not None:
            _hist(self.callback_seconds, endpoint_id).observe(seconds)

    def worker_compute(self, endpoint_id: str, histogram: Histogram) -> None:
        """Replace an endpoint's compute histogram with the sum its workers reported (see ``status``)."""
        self.compute[endpoint_id] = histogram


def _hist(table: dict[str, Histogram], key: str) -> Histogram:
    hist = table.get(key)
    if hist is None:
        hist = table[key] = Histogram(LATENCY_BUCKETS)
    return hist


class MetricsCollector(Collector):
    """Exports ``Metrics`` and the latest ``PlatformSnapshot`` in Prometheus' text format."""

    def __init__(self, metrics: Metrics, snapshot: Callable[[], PlatformSnapshot]) -> None:
        self.metrics = metrics
        self.snapshot = snapshot

    def _labels(self, endpoint_id: str) -> list[str]:
        owner, name = self.metrics.names.get(endpoint_id, ("", endpoint_id))
        return [owner, name]

    def collect(self) -> Iterator[Any]:
        m = self.metrics
        ep = ["owner", "endpoint"]
        requests = CounterMetricFamily("launch_requests", "HTTP requests by route (the prediction routes' names; "
                                       "other for the rest), endpoint and outcome.", labels=["route", *ep, "outcome"])
        latency = HistogramMetricFamily("launch_request_duration_seconds",
                                        "Gateway time from request to response, by route and endpoint.",
                                        labels=["route", *ep])
        for (route, endpoint_id), (outcomes, hist) in m.by_route().items():
            labels = self._labels(endpoint_id)
            for outcome, n in outcomes.items():
                requests.add_metric([route, *labels, outcome], n)
            latency.add_metric([route, *labels], hist.cumulative(), hist.sum)
        yield requests
        yield latency
        yield GaugeMetricFamily("launch_requests_in_flight", "Requests the gateway is answering now.",
                                value=m.inflight)
        yield self._counter("launch_tasks", "Async task attempts that ended, by endpoint and outcome.",
                            m.tasks, "outcome")
        yield self._histograms("launch_task_queue_wait_seconds", "Time async tasks waited before a worker took them.",
                               m.queue_wait)
        yield self._histograms("launch_task_duration_seconds",
                               "Gateway round trip of async tasks to their worker.", m.task_duration)
        yield self._histograms("launch_worker_compute_seconds",
                               "Time predict functions ran in the workers, as the workers measured it.", m.compute)
        yield self._counter("launch_autoscaler_decisions", "Workers the autoscaler added (up) or removed (down).",
                            m.autoscaler, "direction")
        yield self._counter("launch_worker_starts", "Worker starts by outcome (ready, failed).",
                            m.worker_starts, "outcome")
        builds = CounterMetricFamily("launch_environment_builds",
                                     "Environments a worker start needed: built, cached, server, failed.",
                                     labels=["outcome"])
        for outcome, n in m.environments.items():
            builds.add_metric([outcome], n)
        yield builds
        build_seconds = HistogramMetricFamily("launch_environment_build_seconds",
                                              "Duration of environment builds (uv venv + install).")
        build_seconds.add_metric([], m.environment_seconds.cumulative(), m.environment_seconds.sum)
        yield build_seconds
        cold = HistogramMetricFamily("launch_cold_start_phase_seconds",
                                     "Worker cold start by phase: environment, process_start, imports, "
                                     "load_model, ready.", labels=[*ep, "phase"])
        for (endpoint_id, phase), hist in list(m.cold_start.items()):
            cold.add_metric([*self._labels(endpoint_id), phase], hist.cumulative(), hist.sum)
        yield cold
        yield self._counter("launch_callback_deliveries", "Task callback delivery attempts by outcome.",
                            m.callbacks, "outcome")
        yield self._histograms("launch_callback_delivery_seconds", "Duration of callback deliveries.",
                               m.callback_seconds)
        yield from self._gauges(self.snapshot())

    def _counter(self, name: str, doc: str, table: dict[tuple[str, str], int], label: str) -> CounterMetricFamily:
        family = CounterMetricFamily(name, doc, labels=["owner", "endpoint", label])
        for (endpoint_id, value), n in list(table.items()):
            family.add_metric([*self._labels(endpoint_id), value], n)
        return family

    def _histograms(self, name: str, doc: str, table: dict[str, Histogram]) -> HistogramMetricFamily:
        family = HistogramMetricFamily(name, doc, labels=["owner", "endpoint"])
        for endpoint_id, hist in list(table.items()):
            family.add_metric(self._labels(endpoint_id), hist.cumulative(), hist.sum)
        return family

    def _gauges(self, snapshot: PlatformSnapshot) -> Iterator[Any]:
        ep = ["owner", "endpoint"]
        inflight = GaugeMetricFamily("launch_endpoint_in_flight",
                                     "Requests and tasks an endpoint's workers run or wait for now.", labels=ep)
        queued = GaugeMetricFamily("launch_queue_depth", "Async tasks queued for an endpoint.", labels=ep)
        workers = GaugeMetricFamily("launch_workers", "Workers by state.", labels=[*ep, "state"])
        desired = GaugeMetricFamily("launch_autoscaler_desired_workers",
                                    "Workers the autoscaler asked for at its last pass.", labels=ep)
        status = GaugeMetricFamily("launch_endpoint_status", "1 for the endpoint's current status.",
                                   labels=[*ep, "status"])
        for e in snapshot.endpoints:
            labels = [e.owner, e.name]
            inflight.add_metric(labels, e.inflight)
            queued.add_metric(labels, e.queued)
            for state, n in e.workers.items():
                workers.add_metric([*labels, state], n)
            if e.desired_workers is not None:
                desired.add_metric(labels, e.desired_workers)
            status.add_metric([*labels, e.status], 1)
        jobs = GaugeMetricFamily("launch_batch_jobs", "Batch jobs by status.", labels=["status"])
        for state, n in snapshot.batch_jobs.items():
            jobs.add_metric([state], n)
        yield from (inflight, queued, workers, desired, status, jobs)


def registry_for(metrics: Metrics, snapshot: Callable[[], PlatformSnapshot]) -> CollectorRegistry:
    """A registry of its own (not the global one): several apps in one process never collide."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MetricsCollector(metrics, snapshot))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
