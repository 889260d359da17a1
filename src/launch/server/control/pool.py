"""Ready workers per endpoint, in memory: what the request path needs to pick a worker without I/O."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from launch.server.domain.tasks import Task


@dataclass(eq=False)
class WorkerRef:
    worker_id: str
    address: str
    generation: int
    capacity: int
    inflight: int = 0
    draining: bool = False  # the reconciler is stopping it (scale-down, rollout, deletion)
    broken: bool = False  # a connection to it failed: never picked again; the reconciler replaces it
    retiring: bool = False  # it refused work because it was told to stop from outside; removed once it exits

    @property
    def usable(self) -> bool:
        return not (self.draining or self.broken or self.retiring)


class DirectStart(Protocol):
    """Starting a task at its submission (``Dispatcher``): a worker slot is reserved before the task is
    inserted RUNNING, then the task is adopted; a reservation that is not used is given back."""

    def reserve(self) -> WorkerRef | None: ...

    def adopt(self, task: Task, worker: WorkerRef) -> None: ...

    def unreserve(self, worker: WorkerRef) -> None: ...


@dataclass
class EndpointPool:
    """The serving workers of one endpoint and its current demand."""

    endpoint_id: str
    workers: list[WorkerRef] = field(default_factory=list)
    waiting: int = 0  # sync requests waiting for a worker (demand the autoscaler sees)
    waiters: int = 0  # coroutines blocked in wait_for (whom notify must wake)
    last_busy: float = field(default_factory=time.monotonic)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    remote_demand_until: float = 0.0  # another gateway waits for a worker of this endpoint until then
    direct: DirectStart | None = None  # the endpoint's dispatcher in this process, while it runs

    @property
    def inflight(self) -> int:
        remote = 1 if self.remote_demand_until > time.monotonic() else 0
        return sum(w.inflight for w in self.workers) + self.waiting + remote

    @property
    def serving(self) -> list[WorkerRef]:
        return [w for w in self.workers if w.usable]

    def pick(self) -> WorkerRef | None:
        """The least busy serving worker (newest generation first on ties), or None."""
        best: WorkerRef | None = None
        for worker in self.workers:
            if not worker.usable:
                continue
            if best is None or (worker.inflight, -worker.generation) < (best.inflight, -best.generation):
                best = worker
        return best

    def pick_with_capacity(self, keep: WorkerRef | None = None) -> WorkerRef | None:
        """The serving worker with the most spare capacity (capacities differ after a per_worker edit); one
        slot of ``keep`` counts as taken (the dispatcher keeps it for the message it awaits)."""
        best: WorkerRef | None = None
        best_spare = 0
        for worker in self.workers:
            spare = worker.capacity - worker.inflight - (worker is keep)
            if worker.usable and spare > best_spare:
                best, best_spare = worker, spare
        return best

    async def notify(self) -> None:
        if not self.waiters:  # nobody waits: skip the condition's lock
            return
        async with self.changed:
            self.changed.notify_all()

    async def wait_for(self, timeout: float, need_capacity: bool = False) -> WorkerRef | None:
        """Wait until a worker (with spare capacity if asked) serves, up to ``timeout`` seconds."""
        chooser = self.pick_with_capacity if need_capacity else self.pick
        worker = chooser()
        if worker is not None:
            return worker
        deadline = time.monotonic() + timeout
        self.waiters += 1
        try:
            async with self.changed:
                while (worker := chooser()) is None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return None
                    try:
                        await asyncio.wait_for(self.changed.wait(), remaining)
                    except TimeoutError:
                        return None
        finally:
            self.waiters -= 1
        return worker


class Pools:
    """All endpoint pools, by endpoint id."""

    def __init__(self) -> None:
        self._pools: dict[str, EndpointPool] = {}

    def get(self, endpoint_id: str) -> EndpointPool:
        pool = self._pools.get(endpoint_id)
        if pool is None:
            pool = self._pools[endpoint_id] = EndpointPool(endpoint_id)
        return pool

    def drop(self, endpoint_id: str) -> None:
        self._pools.pop(endpoint_id, None)

    def ids(self) -> list[str]:
        return list(self._pools)

    def clear_workers(self) -> None:
        """Forget every worker (the control loop changed hands)."""
        for pool in self._pools.values():
            pool.workers = []
