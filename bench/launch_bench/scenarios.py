"""What gets measured: scenarios per mode (quick/full) and the timing knobs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scenario:
    kind: str  # "sync" (wrk), "stream" (streamload) or "async" (asyncload)
    model: str  # a model, a payload variant (echo-64k) or, for Launch, a route (echo@legacy, submit, poll)
    concurrency: int
    only: tuple[str, ...] = ()  # if set, only these targets run it

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

    control_plane: bool = False  # the one-off control-plane and memory phase (Launch only)

    def runs(self, target: str, sc: Scenario) -> bool:
        if sc.only and target not in sc.only:
            return False
        return sc.kind != "async" or not self.async_only or target in self.async_only


def _grid(kind: str, models: tuple[str, ...], levels: tuple[int, ...],
          only: tuple[str, ...] = ()) -> tuple[Scenario, ...]:
    return tuple(Scenario(kind, m, c, only) for m in models for c in levels)


# Launch's prediction routes besides the native sync one, each compared with F2's echo at the same concurrency:
# the legacy sync route (also with a pickled result: the 0.3.3 client's default, a stored object and a signed URL
# per request), async submission (to an endpoint whose worker is held, so tasks queue: the route's
# cost, not the task's) and polls of a finished task, native and legacy.
ROUTES = ("echo@legacy", "echo@legacy-pickled", "submit", "submit@legacy", "poll", "poll@legacy")
PAYLOADS = ("echo-4k", "echo-64k", "echo-1m")
PAYLOAD_CONCURRENCY = 8

QUICK = Mode(
    name="quick",
    rounds=3,
    warmup_s=1,
    window_s=2,
    async_tasks=50_000,
    scale_from_zero=True,
    scenarios=(
        *_grid("sync", ("echo",), (1,), only=("F1", "F2", "launch")),
        *_grid("sync", ("echo", "sleep", "matmul"), (64,)),
        *_grid("sync", ROUTES, (1, 64), only=("launch",)),
        *_grid("sync", PAYLOADS, (PAYLOAD_CONCURRENCY,), only=("F2", "launch")),
        Scenario("stream", "tokens", 1, ("F1", "launch", "litserve")),
        *_grid("async", ("noop",), (1, 64)),
    ),
    quiet_max_wait_s=5.0,
    async_only=("F3", "launch", "launch-tasks"),  # peers' async is full-mode only
    control_plane=True,
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
        *_grid("sync", ROUTES, (1, 8, 64), only=("launch",)),
        *_grid("sync", PAYLOADS, (1, PAYLOAD_CONCURRENCY), only=("F1", "F2", "launch")),
        *_grid("stream", ("tokens",), (1, 8)),
        *_grid("async", ("noop",), (8, 64)),
    ),
    control_plane=True,
)
MODES = {m.name: m for m in (QUICK, FULL)}
