"""Worker placement: where worker processes run. ``local://`` (child processes) or ``ray://head:10001``.
Placement owns getting a bundle to its workers: a spec names the bundle's object key, and each engine ships it
its own way."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from launch.stores.objects import ObjectStore


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs to serve one endpoint generation. Workers get no store credentials."""

    worker_id: str
    endpoint_id: str
    generation: int
    python: str
    bundle_key: str  # object key of the bundle's bytes
    runtime: dict[str, Any] = field(default_factory=dict)
    log_path: str = ""
    start_timeout: float = 300.0
    cpus: float | None = None  # CPU quota (cores); None: unbounded
    memory: str | None = None  # memory limit as the endpoint states it ("512Mi"); None: unbounded
    environment: str = ""  # how its interpreter was had: server, cached, built (for the cold-start timeline)
    environment_seconds: float = 0.0
    gpus: int = 0
    # for a placement that builds environments where workers run (``python`` is then unused): the bundle's
    # requirements and the Python minor that pickled it
    requirements: tuple[str, ...] = ()
    python_minor: str | None = None


@dataclass(frozen=True)
class WorkerHandle:
    worker_id: str
    address: str
    pid: int | None = None
    # wall-clock times of the start: spawned (placement), started, imported, loaded, listening (the worker),
    # ready (placement saw the worker's ready line); missing keys when a placement cannot tell
    timeline: dict[str, float] = field(default_factory=dict)
    # how the worker's environment was had and how long that took, when the placement built it (else "")
    environment: str = ""
    environment_seconds: float = 0.0


class WorkerStartError(Exception):
    """The worker exited or timed out before it was ready; ``log_tail`` says why. ``deterministic``: the
    placement knows it would fail the same way on every attempt (e.g. its environment cannot be built)."""

    def __init__(self, message: str, log_tail: str = "", deterministic: bool = False) -> None:
        super().__init__(message)
        self.log_tail = log_tail
        self.deterministic = deterministic


class Placement(Protocol):
    gpus: bool
    """Workers can be given GPUs (the engine places them on hosts that have them free)."""
    builds_environments: bool
    """Bundle environments are built where the workers run, from the spec's ``requirements`` (else the
    gateway builds them and the spec's ``python`` is the interpreter to run)."""

    async def start(self, spec: WorkerSpec) -> WorkerHandle:
        """Start a worker and return once it serves; raises ``WorkerStartError``."""
        ...

    async def stop(self, worker_id: str, grace: float) -> None:
        """SIGTERM-like stop: the worker drains for up to ``grace`` seconds, then is killed."""
        ...

    def alive(self, worker_id: str) -> bool: ...

    def exit_reason(self, worker_id: str) -> str | None:
        """Why a worker died when the platform knows (e.g. its memory limit), else None."""
        ...

    def describe(self) -> list[str]:
        """The protections in force for workers, one line each (logged at start)."""
        ...

    async def close(self) -> None: ...


def log_tail(path: str, limit: int = 4000) -> str:
    """The last ``limit`` bytes of a log file as text (empty if it does not exist)."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return ""
    return data[-limit:].decode("utf-8", "replace")


def open_placement(url: str, objects: ObjectStore, options: Any = None) -> Placement:
    """The placement engine for ``url``, shipping bundles from ``objects``; ``options`` are the engine's own
    (``LocalOptions`` for local://)."""
    scheme = url.partition("://")[0]
    if scheme == "local":
        from launch.stores.placement.local import LocalPlacement

        return LocalPlacement(options, objects)
    if scheme == "ray":
        from launch.stores.placement.ray import RayPlacement

        return RayPlacement(url, objects, options)
    raise ValueError(f"unsupported placement scheme {scheme!r}; use local:// or ray://HOST:PORT")
