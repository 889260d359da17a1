"""Async-task load in two phases, printed as one `BENCH_JSON {...}` line.

1. Burst: C submitters submit as fast as they can (up to N tasks or W seconds) while C pollers collect the
   results: accepted tasks/s and completion rate (tasks finished per second, until the last one).
2. Closed loop: C clients each submit one task and poll it until done (2 ms, backing off to 20 ms), for L s:
   submit-to-result p50/p90/p99 without a backlog.
Backends: `redis` (F3, the floor: RPUSH + GET) and `http` (a platform's submit/status API).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import redis.asyncio as redis
import uvloop

from launch_bench.stats import percentile

OK = {"SUCCESS", "COMPLETED"}
DONE = OK | {"FAILURE", "FAILED", "ERROR", "CANCELLED"}
POLL_INTERVAL_S = 0.002  # first poll 2 ms after submit, then backing off by 1.5x up to 20 ms
POLL_BACKOFF = 1.5
MAX_POLL_INTERVAL_S = 0.02
CLOSED_GRACE_S = 5.0  # after the closed-loop window, how long a client still waits for its last task


class Backend(Protocol):
    async def submit(self, args: dict[str, Any]) -> str: ...
    async def status(self, task_id: str) -> str | None: ...
    async def close(self) -> None: ...


class RedisBackend:
    def __init__(self, port: int, pool: int) -> None:
        self.client = redis.Redis(host="127.0.0.1", port=port, max_connections=pool)

    async def submit(self, args: dict[str, Any]) -> str:
        task_id = uuid.uuid4().hex
        await self.client.rpush("bench:tasks", json.dumps({"id": task_id, "args": args}))
        return task_id

    async def status(self, task_id: str) -> str | None:
        raw = await self.client.get("bench:result:" + task_id)
        return None if raw is None else str(json.loads(raw)["status"])

    async def close(self) -> None:
        await self.client.aclose()


class HttpBackend:
    def __init__(self, args: argparse.Namespace, pool: int) -> None:
        headers = {"Authorization": args.authorization} if args.authorization else {}
        self.session = aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=pool))
        self.submit_url, self.status_url = args.submit_url, args.status_url
        self.wrap = args.body_style == "launch"

    async def submit(self, args: dict[str, Any]) -> str:
        body = {"args": args, "return_pickled": False} if self.wrap else args
        async with self.session.post(self.submit_url, json=body) as resp:
            resp.raise_for_status()
            return str((await resp.json())["task_id"])

    async def status(self, task_id: str) -> str | None:
        async with self.session.get(self.status_url.format(task_id=task_id)) as resp:
            resp.raise_for_status()
            return str((await resp.json())["status"]).upper()

    async def close(self) -> None:
        await self.session.close()


@dataclass
class Task:
    task_id: str
    submitted: float
    last_poll: float
    interval: float = POLL_INTERVAL_S


@dataclass
class Tally:
    submit_latency: list[float] = field(default_factory=list)
    result_latency: list[float] = field(default_factory=list)
    submit_errors: int = 0
    failed: int = 0
    poll_errors: int = 0
    last_submit: float = 0.0
    last_result: float = 0.0


async def submit_one(backend: Backend, tally: Tally) -> Task | None:
    start = time.perf_counter()
    try:
        task_id = await backend.submit({"x": 1})
    except Exception:
        tally.submit_errors += 1
        return None
    now = time.perf_counter()
    tally.submit_latency.append(now - start)
    tally.last_submit = now
    return Task(task_id, start, now)


async def poll_once(backend: Backend, task: Task, tally: Tally) -> bool:
    """Poll one task after its poll interval; True (and recorded) once it is done."""
    wait = task.last_poll + task.interval - time.perf_counter()
    if wait > 0:
        await asyncio.sleep(wait)
    try:
        status = await backend.status(task.task_id)
    except Exception:
        tally.poll_errors += 1
        status = None
    now = time.perf_counter()
    task.last_poll = now
    if status not in DONE:
        task.interval = min(task.interval * POLL_BACKOFF, MAX_POLL_INTERVAL_S)
        return False
    tally.result_latency.append(now - task.submitted)
    tally.failed += status not in OK
    tally.last_result = now
    return True


@dataclass
class Burst:
    budget: int
    stop_at: float
    submitting: int = 0
    pending: collections.deque[Task] = field(default_factory=collections.deque)

    @property
    def open(self) -> bool:
        return self.budget > 0 and time.perf_counter() < self.stop_at


async def burst_submitter(backend: Backend, state: Burst, tally: Tally) -> None:
    while state.open:
        state.budget -= 1
        state.submitting += 1
        task = await submit_one(backend, tally)
        state.submitting -= 1
        if task is not None:
            state.pending.append(task)


async def burst_poller(backend: Backend, state: Burst, tally: Tally, deadline: float) -> None:
    while time.perf_counter() < deadline:
        if not state.pending:
            if not state.open and not state.submitting:
                return
            await asyncio.sleep(POLL_INTERVAL_S / 2)
            continue
        task = state.pending.popleft()
        if not await poll_once(backend, task, tally):
            state.pending.append(task)


async def burst(
    backend: Backend, tasks: int, concurrency: int, window_s: float, timeout_s: float
) -> dict[str, float]:
    """Submit as fast as C submitters can (up to `tasks` or `window_s`) while C pollers drain the results."""
    tally = Tally()
    start = time.perf_counter()
    state = Burst(budget=tasks, stop_at=start + window_s)
    work = [burst_submitter(backend, state, tally) for _ in range(concurrency)]
    work += [burst_poller(backend, state, tally, start + timeout_s) for _ in range(concurrency)]
    await asyncio.gather(*work)
    accepted, done = len(tally.submit_latency), len(tally.result_latency)
    return {
        "accepted": accepted,
        "completed": done,
        "failed": tally.failed,
        "submit_errors": tally.submit_errors,
        "poll_errors": tally.poll_errors,
        "incomplete": accepted - done,
        "accepted_per_s": accepted / max(tally.last_submit - start, 1e-9),
        "completed_per_s": done / max(tally.last_result - start, 1e-9),
        "completion_ratio": done / accepted if accepted else 0.0,
        "submit_p50_ms": percentile([v * 1e3 for v in tally.submit_latency], 50),
    }


async def closed_client(backend: Backend, stop_at: float, tally: Tally) -> None:
    while time.perf_counter() < stop_at:
        task = await submit_one(backend, tally)
        while task is not None and time.perf_counter() < stop_at + CLOSED_GRACE_S:
            if await poll_once(backend, task, tally):
                break


async def closed_loop(backend: Backend, concurrency: int, window_s: float) -> dict[str, float]:
    """C clients, each: submit, poll until done, repeat. Submit-to-result latency without a backlog."""
    tally = Tally()
    start = time.perf_counter()
    await asyncio.gather(*(closed_client(backend, start + window_s, tally) for _ in range(concurrency)))
    ms = [v * 1e3 for v in tally.result_latency]
    return {
        "closed_tasks": len(ms),
        "closed_tasks_per_s": len(ms) / (time.perf_counter() - start),
        "closed_failed": tally.failed,
        "closed_errors": tally.submit_errors + tally.poll_errors,
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
    }


async def run(backend: Backend, args: argparse.Namespace) -> dict[str, float]:
    try:
        result = await burst(backend, args.tasks, args.concurrency, args.window, args.timeout)
        if args.latency_window > 0:
            result |= await closed_loop(backend, args.concurrency, args.latency_window)
    finally:
        await backend.close()
    return result


def make_backend(args: argparse.Namespace) -> Backend:
    pool = 2 * args.concurrency + 2
    if args.backend == "redis":
        return RedisBackend(args.redis_port, pool)
    return HttpBackend(args, pool)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=["redis", "http"], required=True)
    parser.add_argument("--tasks", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--window", type=float, required=True, help="submission window, seconds")
    parser.add_argument("--latency-window", type=float, default=0.0, help="closed-loop phase, seconds")
    parser.add_argument("--timeout", type=float, default=60.0, help="for the burst to drain, seconds")
    parser.add_argument("--redis-port", type=int, default=0)
    parser.add_argument("--submit-url", default="")
    parser.add_argument("--status-url", default="", help="with {task_id}")
    parser.add_argument("--authorization", default="")
    parser.add_argument(
        "--body-style",
        choices=["launch", "plain"],
        default="launch",
        help='launch: {"args": ARGS, "return_pickled": false}; plain: ARGS',
    )
    args = parser.parse_args()

    async def go() -> dict[str, float]:
        return await run(make_backend(args), args)

    print("BENCH_JSON " + json.dumps(uvloop.run(go())), flush=True)


if __name__ == "__main__":
    main()
