"""What observability costs on the sync hot path: the same echo endpoint, in the same run, on servers with
metrics and the access log off, metrics on, and both on (the default), rounds interleaved.

    .venv/bin/python bench/metrics_cost.py                 # 3 rounds, 10 s windows, c=32 (≈ 4 min)
    .venv/bin/python bench/metrics_cost.py --rounds 2 --window 5

Servers run on core 0 (``taskset``), wrk on core 1 (installed with apt when missing, as ``bench/run`` does).
Prints, per mode (median of rounds), throughput and the server's CPU time per request (gateway and worker
processes, from /proc), each as a ratio to "off"; the goal is ≤ 3 %.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from launch_bench import procs  # noqa: E402
from launch_bench.loadgen import HttpCall, run_wrk  # noqa: E402
from launch_bench.server import ServerProcess, free_port  # noqa: E402

VENV_BIN = Path(sys.executable).parent
GOAL = 0.03
# mode -> (extra server flags, extra environment)
MODES: dict[str, tuple[list[str], dict[str, str]]] = {
    "off": (["--access-log", "off"], {"LAUNCH_METRICS_ENABLED": "false"}),
    "metrics": (["--access-log", "off"], {}),
    "metrics+access_log": ([], {}),
}


def echo(**kwargs: Any) -> Any:
    return kwargs


def ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    print("# installing wrk with apt", file=sys.stderr)
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, stdout=subprocess.DEVNULL,
                   env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})


def start(mode: str, root: Path) -> tuple[ServerProcess, str, str]:
    """A fresh server in ``mode`` with a READY echo endpoint: (process, base URL, API key)."""
    flags, env = MODES[mode]
    data_dir = root / f"data-{mode}-{time.monotonic_ns()}"
    port = free_port()
    # the sandbox adds nothing per request (bench/isolation.py) and is off here so that servers of other
    # people on a shared machine cannot stop these workers
    server = ServerProcess([str(VENV_BIN / "launch"), "server", "--port", str(port), "--data-dir", str(data_dir),
                            "--log-level", "warning", *flags], root / f"{mode}.log",
                           env={"LAUNCH_SANDBOX": "off", **env})
    url = f"http://127.0.0.1:{port}"
    server.wait_http(url + "/healthz", timeout_s=60)
    key = subprocess.run([str(VENV_BIN / "launch"), "api-keys", "create", "--user", "bench", "--data-dir",
                          str(data_dir)], capture_output=True, text=True, check=True).stdout.split()[-1]
    from launch import LaunchClient

    client = LaunchClient(api_key=key, endpoint=url)
    bundle = client.create_model_bundle("echo", {}, predict_fn_or_cls=echo, requirements=[])
    endpoint = client.create_model_endpoint("echo-ep", bundle, endpoint_type="sync", cpus=1, memory="1Gi",
                                            min_workers=1, max_workers=1, per_worker=64)
    deadline = time.monotonic() + 60
    while endpoint.status() != "READY":
        if time.monotonic() > deadline:
            raise RuntimeError(f"echo endpoint not READY in mode {mode}; see {root / f'{mode}.log'}")
        time.sleep(0.2)
    return server, url, key


def measure(server: ServerProcess, url: str, key: str, concurrency: int, window: int) -> tuple[float, float]:
    """(requests per second, server CPU microseconds per request: gateway and worker processes)."""
    call = HttpCall(url=f"{url}/v1/sync-tasks?model_endpoint_name=echo-ep",
                    body=json.dumps({"args": {"x": 1}, "return_pickled": False}).encode(),
                    authorization=f"Bearer {key}", failure_marker='"FAILURE"')
    run_wrk(call, concurrency, 2)  # warm-up
    cpu = procs.cpu_seconds([server.pid])
    result = run_wrk(call, concurrency, window)
    cpu = procs.cpu_seconds([server.pid]) - cpu
    if result.errors:
        raise RuntimeError(f"{result.errors} errors during the window")
    return result.rps, cpu / result.requests * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=int, default=10, help="timed seconds per measurement")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    ensure_wrk()
    root = Path(tempfile.mkdtemp(prefix="launch-metrics-cost-"))
    results: dict[str, list[tuple[float, float]]] = {mode: [] for mode in MODES}
    order = list(MODES)
    try:
        for round_index in range(args.rounds):
            for mode in order[round_index % len(order):] + order[:round_index % len(order)]:  # rotate the order
                server, url, key = start(mode, root)
                try:
                    rps, cpu_us = measure(server, url, key, args.concurrency, args.window)
                finally:
                    server.stop()
                results[mode].append((rps, cpu_us))
                print(json.dumps({"round": round_index, "mode": mode, "rps": round(rps, 1),
                                  "cpu_us_per_request": round(cpu_us, 1)}), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    base_rps = statistics.median(r for r, _ in results["off"])
    base_cpu = statistics.median(c for _, c in results["off"])
    print(f"\nsync echo, c={args.concurrency}, {args.rounds} rounds x {args.window} s (medians of rounds):")
    costs = {}
    for mode, values in results.items():
        rps = statistics.median(r for r, _ in values)
        cpu = statistics.median(c for _, c in values)
        costs[mode] = cpu / base_cpu - 1
        print(f"  {mode:<20} {rps:8.0f} req/s (ratio to off {rps / base_rps:.3f})   "
              f"{cpu:6.1f} us CPU/request (ratio to off {cpu / base_cpu:.3f})")
    verdict = "meets" if costs["metrics"] <= GOAL else "misses"
    print(f"metrics cost {costs['metrics'] * 100:+.1f} % server CPU per sync request ({verdict} the goal of <= "
          f"{GOAL:.0%}); with the access log too: {costs['metrics+access_log'] * 100:+.1f} %. CPU per request is the "
          "figure to trust on a shared machine; req/s moves with whatever else runs on core 0.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
