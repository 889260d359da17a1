"""Benchmark Launch against floors (F1 bare uvicorn, F2 front+worker, F3 redis queue) and peers (BentoML, Ray
Serve, LitServe) on this machine; prints Launch's numbers as ratios. Servers run on core 0, load on core 1."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
from pathlib import Path

from launch_bench.envs import BENCH_DIR
from launch_bench.metrics import Recorder, log
from launch_bench.runner import run_rounds
from launch_bench.scenarios import MODES, Mode
from launch_bench.targets import ALL, PEERS, REGISTRY
from launch_bench.targets.base import RunContext, Target


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short run: echo at c=1 and c=64, async at c=1 and c=64")
    parser.add_argument("--only", default="", help=f"comma-separated targets out of {','.join(ALL)}")
    parser.add_argument("--no-peers", action="store_true", help="skip BentoML, Ray Serve and LitServe")
    parser.add_argument("--rounds", type=int, default=0, help="override the mode's number of rounds")
    parser.add_argument("--window", type=int, default=0, help="override the timed window, seconds")
    parser.add_argument("--results", type=Path, default=BENCH_DIR / "results")
    parser.add_argument("--no-control-plane", action="store_true", help="skip the control-plane/memory phase")
    parser.add_argument("--control-plane-only", action="store_true",
                        help="only the control-plane/memory phase (Launch), no rounds")
    return parser.parse_args(argv)


def select_targets(args: argparse.Namespace) -> list[str]:
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(ALL)
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise SystemExit(f"unknown target(s) {unknown}; choose from {','.join(ALL)}")
    return [n for n in names if not (args.no_peers and n in PEERS)]


def choose_mode(args: argparse.Namespace) -> Mode:
    mode = MODES["quick" if args.quick else "full"]
    overrides: dict[str, object] = {k: v for k, v in (("rounds", args.rounds), ("window_s", args.window)) if v}
    if args.no_control_plane:
        overrides["control_plane"] = False
    if args.control_plane_only:
        overrides.update(rounds=0, control_plane=True)
    return dataclasses.replace(mode, **overrides)


def prepare(names: list[str]) -> tuple[list[Target], dict[str, str]]:
    """Build environments and check prerequisites; returns the ready targets and why others were skipped."""
    ready, skipped = [], {}
    for name in names:
        target = REGISTRY[name]()
        try:
            target.prepare()
            ready.append(target)
        except Exception as exc:
            log(f"skipping {name}: {exc}")
            skipped[name] = f"skipped: {type(exc).__name__}: {exc}"
    return ready, skipped


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    mode = choose_mode(args)
    run_id = dt.datetime.now().strftime("%Y%m%dT%H%M%S")
    targets, skipped = prepare(select_targets(args))
    if not targets:
        log("no target to run")
        return 1
    rec = Recorder(args.results / f"{run_id}.jsonl", run_id)
    for name, reason in skipped.items():
        rec.emit(round=-1, target=name, group="", kind="prepare", error=reason)
    wanted = frozenset((sc.kind, sc.model) for sc in mode.scenarios)
    ctx = RunContext(run_dir=args.results / run_id, wanted=wanted, scale_from_zero=mode.scale_from_zero)
    log(f"run {run_id}: mode {mode.name}, {mode.rounds} rounds, targets {[t.name for t in targets]}")
    run_rounds(targets, mode, ctx, rec)
    if mode.control_plane and any(t.name == "launch" for t in targets):
        from launch_bench.control_plane import run_control_plane

        log("control plane and memory phase (Launch)")
        run_control_plane(ctx, mode, rec)
    from launch_bench.report import write_outputs

    write_outputs(rec.records, mode, args.results, run_id)
    return 0
