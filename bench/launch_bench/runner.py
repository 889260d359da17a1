"""The run: rounds x targets (rotated each round so no target always goes first), every scenario each time."""

from __future__ import annotations

import time
import traceback
from typing import Any

from launch_bench import procs
from launch_bench.measure import MEASURES
from launch_bench.metrics import Recorder, log
from launch_bench.scenarios import Mode
from launch_bench.targets.base import RunContext, Target

IDLE_SETTLE_S = 1.0


def rotated(targets: list[Target], round_index: int) -> list[Target]:
    shift = round_index % len(targets)
    return targets[shift:] + targets[:shift]


def run_rounds(targets: list[Target], mode: Mode, ctx: RunContext, rec: Recorder) -> None:
    for round_index in range(mode.rounds):
        ctx.round_index = round_index
        for target in rotated(targets, round_index):
            log(f"round {round_index + 1}/{mode.rounds}: {target.name}")
            run_target(target, mode, ctx, rec)


def run_target(target: Target, mode: Mode, ctx: RunContext, rec: Recorder) -> None:
    base: dict[str, Any] = {"round": ctx.round_index, "target": target.name, "group": target.group}
    try:
        timings = target.start(ctx)
        timings.setdefault("ready_s", timings["startup_s"])
        time.sleep(IDLE_SETTLE_S)
        rss, pss = procs.memory_mb(target.pids)
        rec.emit(**base, kind="startup", **timings, rss_idle_mb=rss, pss_idle_mb=pss, **target.memory_fields())
        run_scenarios(target, mode, base | {"rss_idle_mb": rss, "pss_idle_mb": pss}, rec)
        if mode.scale_from_zero:
            for extra in target.extra(ctx):
                rec.emit(**base, **extra)
    except Exception as exc:
        log(f"{target.name} failed: {exc}")
        rec.emit(**base, kind="startup", error=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc())
    finally:
        target.stop()


def run_scenarios(target: Target, mode: Mode, base: dict[str, Any], rec: Recorder) -> None:
    for sc in mode.scenarios:
        if not (target.supports(sc.kind, sc.model) and mode.runs(target.name, sc)):
            continue
        fields = {**base, "kind": sc.kind, "model": sc.model, "concurrency": sc.concurrency}
        try:
            rec.emit(**fields, **MEASURES[sc.kind](target, sc, mode))
        except Exception as exc:
            log(f"{target.name} {sc.key} failed: {exc}")
            rec.emit(**fields, error=f"{type(exc).__name__}: {exc}")
