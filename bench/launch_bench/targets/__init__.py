"""Benchmark targets by name. Peers and our platform are imported lazily by the registry."""

from __future__ import annotations

from collections.abc import Callable

from launch_bench.targets.base import Target


def _f1() -> Target:
    from launch_bench.targets.floors import F1

    return F1()


def _f2() -> Target:
    from launch_bench.targets.floors import F2

    return F2()


def _f3() -> Target:
    from launch_bench.targets.floors import F3

    return F3()


def _launch() -> Target:
    from launch_bench.targets.launch import Launch

    return Launch()


def _launch_tasks() -> Target:
    from launch_bench.targets.launch import LaunchTasks

    return LaunchTasks()


def _bentoml() -> Target:
    from launch_bench.targets.peers import BentoML

    return BentoML()


def _ray() -> Target:
    from launch_bench.targets.peers import RayServe

    return RayServe()


def _litserve() -> Target:
    from launch_bench.targets.peers import LitServe

    return LitServe()


FLOORS = ("F1", "F2", "F3")
PEERS = ("bentoml", "ray", "litserve")
REGISTRY: dict[str, Callable[[], Target]] = {
    "F1": _f1,
    "F2": _f2,
    "F3": _f3,
    "launch": _launch,
    "launch-tasks": _launch_tasks,
    "bentoml": _bentoml,
    "ray": _ray,
    "litserve": _litserve,
}
ALL = (*FLOORS, "launch", "launch-tasks", *PEERS)
