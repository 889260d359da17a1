"""The control-plane and memory phase (Launch only, once per run, after the rounds).

On a fresh server (core 0) with an always-on echo endpoint and a *parked* async endpoint (its one worker
held by a ten-minute task, so submissions queue):

1. create 1,000 endpoints (min_workers=0, the echo bundle) one after another: create latency;
2. list them: list latency; then the server's CPU while idle with 1,000 endpoints;
3. echo requests (wrk, c=8) with and without another client creating and editing endpoints meanwhile
   (20 changes a second);
4. 100,000 submissions to the parked endpoint: the server's memory with them queued; then 10,000
   long-polls held open on them: the server's memory with the connections open;
5. delete the parked endpoint (its tasks end as FAILURE: 100,000 finished tasks), then the server's CPU
   while idle with 1,000 endpoints and 100,000 finished tasks.

Memory is the gateway process alone (RSS and PSS); CPU is the whole tree (server and workers).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from typing import Any

import aiohttp

from launch_bench import procs
from launch_bench.loadgen import HttpCall, run_wrk
from launch_bench.metrics import Recorder, log
from launch_bench.scenarios import Mode
from launch_bench.stats import median, percentile
from launch_bench.targets.base import RunContext
from launch_bench.targets.floors import FAILURE_MARKER, LAUNCH_BODY
from launch_bench.targets.launch import Launch

ENDPOINTS = 1000
TASKS = 100_000
LONG_POLLS = 10_000
IDLE_WINDOW_S = 10.0
SETTLE_S = 3.0
LIST_SAMPLES = 20
SUBMITTERS = 64
CHURN_PER_S = 20
CHURN_ALTERNATIONS = 3
ENV = {"LAUNCH_WORKER_DRAIN_SECONDS": "1"}


def _percentile(values: list[float], q: float) -> float:
    return percentile(values, 100 * q)


class ControlPlane:
    def __init__(self, target: Launch) -> None:
        self.target = target
        self.base = target.url("")
        self.headers = {"Authorization": target.authorization, "Content-Type": "application/json"}

    def endpoint_body(self, name: str) -> dict[str, Any]:
        # the echo endpoint's bundle and resources: already proven to load, so READY without a worker start
        return {"name": name, "bundle_name": "bench-echo-ep", "endpoint_type": "sync", "min_workers": 0,
                "max_workers": 1, "per_worker": 8, "cpus": 1, "memory": "1Gi"}

    async def create_all(self, session: aiohttp.ClientSession) -> list[float]:
        latencies = []
        for i in range(ENDPOINTS):
            start = time.perf_counter()
            async with session.post(f"{self.base}/v1/model-endpoints", json=self.endpoint_body(f"cp-{i:04d}"),
                                    headers=self.headers) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"create cp-{i:04d}: HTTP {resp.status}")
            latencies.append(1e3 * (time.perf_counter() - start))
        return latencies

    async def list_endpoints(self, session: aiohttp.ClientSession) -> tuple[list[float], list[dict[str, Any]]]:
        latencies, endpoints = [], []
        for _ in range(LIST_SAMPLES):
            start = time.perf_counter()
            async with session.get(f"{self.base}/v1/model-endpoints", headers=self.headers) as resp:
                body = await resp.read()
            latencies.append(1e3 * (time.perf_counter() - start))
            endpoints = json.loads(body)["endpoints"]
        return latencies, endpoints

    async def wait_ready(self, session: aiohttp.ClientSession, timeout_s: float = 120) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            async with session.get(f"{self.base}/v1/model-endpoints", headers=self.headers) as resp:
                endpoints = json.loads(await resp.read())["endpoints"]
            cp = [e for e in endpoints if e["name"].startswith("cp-")]
            if len(cp) >= ENDPOINTS and all(e["status"] == "READY" for e in cp):
                return time.monotonic() - start
            await asyncio.sleep(0.2)
        raise TimeoutError("the created endpoints did not all become READY")

    async def submit_all(self, session: aiohttp.ClientSession) -> tuple[list[str], float]:
        ids: list[str] = []
        url = f"{self.base}/v1/async-tasks?model_endpoint_name=park-ep"
        per = TASKS // SUBMITTERS

        async def submitter(n: int) -> None:
            for _ in range(n):
                async with session.post(url, data=LAUNCH_BODY, headers=self.headers) as resp:
                    body = await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"submit: HTTP {resp.status}: {body[:200]!r}")
                    ids.append(json.loads(body)["task_id"])

        start = time.monotonic()
        counts = [per + (1 if i < TASKS - per * SUBMITTERS else 0) for i in range(SUBMITTERS)]
        await asyncio.gather(*(submitter(n) for n in counts))
        return ids, time.monotonic() - start

    async def hold_long_polls(self, ids: list[str]) -> dict[str, float]:
        """Open LONG_POLLS long-polls on queued tasks, measure the server with them open, then close them."""
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=90)) as session:

            async def poll(task_id: str) -> None:
                async with session.get(f"{self.base}/v1/async-tasks/{task_id}?wait=60", headers=self.headers) as r:
                    await r.read()

            polls = [asyncio.create_task(poll(task_id)) for task_id in ids[:LONG_POLLS]]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and _connections(self.target.servers[0].pid) < LONG_POLLS:
                await asyncio.sleep(0.5)
            await asyncio.sleep(1.0)
            held = _connections(self.target.servers[0].pid)
            rss, pss = procs.process_memory_mb(self.target.servers[0].pid)
            finished = sum(1 for p in polls if p.done())
            for p in polls:
                p.cancel()
            await asyncio.gather(*polls, return_exceptions=True)
        return {"longpoll_connections": held, "longpoll_rss_mb": rss, "longpoll_pss_mb": pss,
                "longpoll_answered_early": finished}

    async def delete_parked(self, session: aiohttp.ClientSession, timeout_s: float = 120) -> float:
        start = time.monotonic()
        async with session.delete(f"{self.base}/v1/model-endpoints/park-ep", headers=self.headers) as resp:
            await resp.read()
        while time.monotonic() - start < timeout_s:
            async with session.get(f"{self.base}/v1/model-endpoints/park-ep", headers=self.headers) as resp:
                await resp.read()
                if resp.status == 404:
                    return time.monotonic() - start
            await asyncio.sleep(0.2)
        raise TimeoutError("the parked endpoint was not deleted")

    def idle_cpu_pct(self) -> float:
        time.sleep(SETTLE_S)
        cpu0, t0 = procs.cpu_seconds(self.target.pids), time.monotonic()
        time.sleep(IDLE_WINDOW_S)
        return 100 * (procs.cpu_seconds(self.target.pids) - cpu0) / (time.monotonic() - t0)

    def requests_under_churn(self, mode: Mode) -> dict[str, float]:
        """wrk on the echo endpoint, quiet and then while another client creates and edits endpoints."""
        call = HttpCall(self.target.url("/v1/sync-tasks?model_endpoint_name=echo-ep"), LAUNCH_BODY,
                        self.target.authorization, FAILURE_MARKER)
        run_wrk(call, 8, mode.warmup_s)
        quiet, busy, churn = [], [], []
        for _ in range(CHURN_ALTERNATIONS):  # alternated: a shared machine's drift hits both alike
            quiet.append(run_wrk(call, 8, mode.window_s))
            stop = threading.Event()
            thread = threading.Thread(target=asyncio.run, args=(self._churn(stop, churn),), daemon=True)
            thread.start()
            time.sleep(0.2)
            busy.append(run_wrk(call, 8, mode.window_s))
            stop.set()
            thread.join(timeout=60)
        return {
            "quiet_rps": median([r.rps for r in quiet]), "quiet_p99_ms": median([r.p99_ms for r in quiet]),
            "churn_rps": median([r.rps for r in busy]), "churn_p99_ms": median([r.p99_ms for r in busy]),
            "churn_changes": len(churn), "churn_change_p50_ms": _percentile(churn, 0.5),
            "churn_errors": sum(r.errors for r in busy),
        }

    async def _churn(self, stop: threading.Event, latencies: list[float]) -> None:
        """CHURN_PER_S changes a second (a busy operator or CI), alternating creates and edits."""
        async with aiohttp.ClientSession() as session:
            i = 0
            began = time.monotonic()
            while not stop.is_set():
                await asyncio.sleep(max(0.0, began + i / CHURN_PER_S - time.monotonic()))
                start = time.perf_counter()
                if i % 2:
                    url, method, body = f"{self.base}/v1/model-endpoints/cp-{i % ENDPOINTS:04d}", "PUT", {
                        "per_worker": 8 + i % 5, "metadata": {"edit": i}}
                else:
                    url, method, body = f"{self.base}/v1/model-endpoints", "POST", self.endpoint_body(f"churn-{i}")
                async with session.request(method, url, json=body, headers=self.headers) as resp:
                    await resp.read()
                latencies.append(1e3 * (time.perf_counter() - start))
                i += 1


def _connections(pid: int) -> int:
    """Open sockets of one process."""
    count = 0
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                    count += 1
            except OSError:
                pass
    except OSError:
        pass
    return count


def run_control_plane(ctx: RunContext, mode: Mode, rec: Recorder) -> None:
    target = Launch()
    base: dict[str, Any] = {"round": 0, "target": "launch", "group": "ours", "kind": "control_plane",
                            "model": "echo", "concurrency": 0}
    try:
        target.prepare()
        phase_ctx = RunContext(run_dir=ctx.run_dir, round_index=99, wanted=frozenset({("sync", "echo"),
                                                                                       ("sync", "submit")}))
        target.start(phase_ctx, extra_env=ENV)
        rec.emit(**base, **_measure(ControlPlane(target), mode))
    except Exception as exc:
        log(f"control plane phase failed: {exc}")
        rec.emit(**base, error=f"{type(exc).__name__}: {exc}")
    finally:
        target.stop()


def _measure(cp: ControlPlane, mode: Mode) -> dict[str, Any]:
    fields: dict[str, Any] = {}

    async def setup() -> None:
        async with aiohttp.ClientSession() as session:
            log(f"control plane: creating {ENDPOINTS} endpoints")
            creates = await cp.create_all(session)
            fields.update(create_p50_ms=median(creates), create_p99_ms=_percentile(creates, 0.99),
                          create_last100_p50_ms=median(creates[-100:]))
            fields["all_ready_s"] = await cp.wait_ready(session)
            lists, endpoints = await cp.list_endpoints(session)
            fields.update(list_p50_ms=median(lists), list_p99_ms=_percentile(lists, 0.99), listed=len(endpoints))

    asyncio.run(setup())
    fields["idle_cpu_endpoints_pct"] = cp.idle_cpu_pct()
    fields["idle_server_rss_mb"], fields["idle_server_pss_mb"] = procs.process_memory_mb(cp.target.servers[0].pid)
    log("control plane: requests while endpoints are created and edited")
    fields.update(cp.requests_under_churn(mode))

    async def queue() -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=SUBMITTERS)) as session:
            log(f"control plane: queueing {TASKS} tasks")
            ids, seconds = await cp.submit_all(session)
            fields["queued"] = len(ids)
            fields["submit_per_s"] = len(ids) / seconds
            await asyncio.sleep(1.0)
            fields["queued_rss_mb"], fields["queued_pss_mb"] = procs.process_memory_mb(cp.target.servers[0].pid)
            log(f"control plane: {LONG_POLLS} long-polls")
            fields.update(await cp.hold_long_polls(ids))
            fields["delete_parked_s"] = await cp.delete_parked(session)

    asyncio.run(queue())
    fields["idle_cpu_pct"] = cp.idle_cpu_pct()
    fields["final_server_rss_mb"], fields["final_server_pss_mb"] = procs.process_memory_mb(cp.target.servers[0].pid)
    return fields
