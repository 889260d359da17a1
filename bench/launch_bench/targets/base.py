"""The Target interface: how the runner starts a server, addresses its models and stops it."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from launch_bench.loadgen import HttpCall
from launch_bench.server import ServerProcess


@dataclass
class RunContext:
    """Where a run writes its logs and scratch data."""

    run_dir: Path
    round_index: int = 0
    wanted: frozenset[tuple[str, str]] = frozenset()  # (kind, model) pairs this run measures
    scale_from_zero: bool = False

    def log(self, name: str) -> Path:
        return self.run_dir / "logs" / f"r{self.round_index}-{name}.log"


@dataclass
class AsyncSpec:
    """Arguments for asyncload.py that address this target's task queue."""

    args: list[str] = field(default_factory=list)


class Target(abc.ABC):
    name: str = ""
    group: str = ""  # "floor", "ours" or "peer"
    sync_models: frozenset[str] = frozenset()
    stream_models: frozenset[str] = frozenset()
    stream_format: str = "lines"  # how streamload counts items (see launch_bench.streamload)
    async_models: frozenset[str] = frozenset()

    def __init__(self) -> None:
        self.servers: list[ServerProcess] = []
        self.port = 0

    def prepare(self) -> None:  # noqa: B027 - optional hook
        """Once per run, before the first round: build environments, check prerequisites."""

    @abc.abstractmethod
    def start(self, ctx: RunContext) -> dict[str, float]:
        """Start and wait until every model answers; returns startup timings in seconds."""

    def supports(self, kind: str, model: str) -> bool:
        table = {"sync": self.sync_models, "stream": self.stream_models, "async": self.async_models}
        return model in table[kind]

    def sync_call(self, model: str) -> HttpCall:
        raise NotImplementedError(f"{self.name} has no sync {model}")

    def stream_call(self, model: str) -> HttpCall:
        raise NotImplementedError(f"{self.name} has no stream {model}")

    def async_spec(self, model: str) -> AsyncSpec:
        raise NotImplementedError(f"{self.name} has no async {model}")

    def memory_fields(self) -> dict[str, float]:
        """Per-process memory beyond the tree's total, measured idle after start (MiB)."""
        return {}

    def extra(self, ctx: RunContext) -> list[dict[str, Any]]:
        """Target-specific measurements (e.g. scale-from-zero), one dict per measurement."""
        return []

    @property
    def pids(self) -> list[int]:
        return [s.pid for s in self.servers]

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()
        self.servers = []

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"
