"""What gets measured: scenarios per mode (quick/full) and the timing knobs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scenario:
    kind: str  # "sync" (wrk), "stream" (streamload) or "async" (asyncload)
    model: str
    concurrency: int

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.model}/c{self.concurrency}"


@dataclass(frozen=True)
class Mode:
    name: str
    rounds: int
    warmup_s: int
    window_s: int
    async_tasks: int
    scenarios: tuple[Scenario, ...]
    scale_from_zero: bool
    quiet_max_wait_s: float = 20.0  # before a window, wait at most this long for other work to leave core 0
    async_only: tuple[str, ...] = ()  # if set, only these targets run the async scenarios

    def runs(self, target: str, sc: Scenario) -> bool:
        return sc.kind != "async" or not self.async_only or target in self.async_only


def _grid(kind: str, models: tuple[str, ...], levels: tuple[int, ...]) -> tuple[Scenario, ...]:
    return tuple(Scenario(kind, m, c) for m in models for c in levels)


QUICK = Mode(
    name="quick",
    rounds=3,
    warmup_s=1,
    window_s=3,
    async_tasks=50_000,
    scale_from_zero=True,
    scenarios=(*_grid("sync", ("echo",), (1, 64)), *_grid("async", ("noop",), (1, 64))),
    quiet_max_wait_s=5.0,
    async_only=("F3", "launch", "launch-tasks"),  # the async target compares these two; peers' async is full-mode only
)
FULL = Mode(
    name="full",
    rounds=3,
    warmup_s=2,
    window_s=8,
    async_tasks=200_000,
    scale_from_zero=True,
    scenarios=(
        *_grid("sync", ("echo", "sleep", "matmul"), (1, 8, 64)),
        *_grid("stream", ("tokens",), (1, 8)),
        *_grid("async", ("noop",), (1, 8, 64)),
    ),
)
MODES = {m.name: m for m in (QUICK, FULL)}
