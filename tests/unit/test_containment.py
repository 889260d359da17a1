"""The worker sandbox's policy (bubblewrap argv) and the cgroup plumbing, without starting anything."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from launch.stores.placement.limits import Limits, ResourceLimiter, find_hierarchy, parse_memory
from launch.stores.placement.sandbox import SandboxPaths, import_paths, sandbox_argv

PATHS = SandboxPaths(readable=("/opt/py", "/srv/app/.venv"), scratch="/data/work/e/w", socket_dir="/run/s/w",
                     uid=524300, network=False)


def pairs(argv: list[str], flag: str) -> list[tuple[str, str]]:
    return [(argv[i + 1], argv[i + 2]) for i, arg in enumerate(argv) if arg == flag]


def test_the_worker_gets_new_namespaces_no_environment_and_no_privileges() -> None:
    argv = sandbox_argv("/usr/bin/bwrap", "/usr/bin/setpriv", PATHS, ["python", "-m", "launch.worker.main"])
    for flag in ("--unshare-pid", "--unshare-ipc", "--unshare-net", "--die-with-parent", "--new-session",
                 "--clearenv"):
        assert flag in argv
    tail = argv[argv.index("--") + 1:]
    assert tail[:3] == ["/usr/bin/setpriv", "--reuid", "524300"]
    assert "--no-new-privs" in tail and "--bounding-set=-all" in tail
    assert tail[-3:] == ["python", "-m", "launch.worker.main"]
    assert {name for name, _ in pairs(argv, "--setenv")} <= {"PATH", "HOME", "TMPDIR", "LANG", "PYTHONUNBUFFERED",
                                                           "PYTHONDONTWRITEBYTECODE"}


def test_only_its_scratch_and_socket_are_writable_and_the_rest_read_only() -> None:
    argv = sandbox_argv("bwrap", "setpriv", PATHS, ["python"])
    assert pairs(argv, "--bind") == [("/data/work/e/w", "/launch/scratch"), ("/run/s/w", "/launch/sock")]
    assert ("/opt/py", "/opt/py") in pairs(argv, "--ro-bind")
    assert ("/srv/app/.venv", "/srv/app/.venv") in pairs(argv, "--ro-bind")
    assert "/data" not in {src for src, _ in pairs(argv, "--ro-bind")}


def test_host_network_only_when_the_operator_asks() -> None:
    shared = SandboxPaths(**{**PATHS.__dict__, "network": True})
    assert "--unshare-net" not in sandbox_argv("bwrap", "setpriv", shared, ["python"])


def test_import_paths_never_expose_the_data_directory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = data / "envs" / "abc"
    (env / "bin").mkdir(parents=True)
    paths = import_paths(str(env / "bin" / "python"), data)
    assert str(env) in paths
    assert not any(Path(p) == data or data.is_relative_to(p) for p in paths)
    assert not any(Path(p).is_relative_to(data) and p != str(env) for p in paths)


V1_MOUNTS = """\
30 25 0:26 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory
31 25 0:27 / /sys/fs/cgroup/pids rw,relatime shared:10 - cgroup cgroup rw,pids
32 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:11 - cgroup cgroup rw,cpu,cpuacct
"""
V1_SELF = "4:memory:/service/abc\n8:pids:/\n2:cpu,cpuacct:/service\n0::/\n"
V2_MOUNTS = "35 25 0:30 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"


def test_cgroup_v1_is_found_below_the_servers_own_groups() -> None:
    h = find_hierarchy(V1_MOUNTS, V1_SELF)
    assert h is not None and h.version == 1
    assert h.roots == {"memory": Path("/sys/fs/cgroup/memory/service/abc"), "pids": Path("/sys/fs/cgroup/pids"),
                       "cpu": Path("/sys/fs/cgroup/cpu,cpuacct/service")}


def test_cgroup_v2_is_found_below_the_servers_own_group() -> None:
    h = find_hierarchy(V2_MOUNTS, "0::/system.slice/launch.service\n")
    assert h is not None and h.version == 2
    assert h.roots == {"unified": Path("/sys/fs/cgroup/system.slice/launch.service")}


def test_no_cgroups_means_rlimits_and_says_so() -> None:
    assert find_hierarchy("", "") is None
    limiter = ResourceLimiter(None, "no cgroup hierarchy")
    assert limiter.create("w", Limits(memory_bytes=1)) is None
    assert "rlimits only" in limiter.describe() and "no cgroup hierarchy" in limiter.describe()


def test_v2_limits_are_written_where_the_kernel_reads_them(tmp_path: Path) -> None:
    from launch.stores.placement.limits import Hierarchy

    limiter = ResourceLimiter(Hierarchy(2, {"unified": tmp_path}))
    group = limiter.create("w1", Limits(memory_bytes=512 * 2**20, cpus=0.5, pids=64))
    assert group is not None
    directory = tmp_path / "launch-workers" / f"server-{os.getpid()}" / "w1"
    assert (directory / "memory.max").read_text().strip() == str(512 * 2**20)
    assert (directory / "cpu.max").read_text().strip() == "50000 100000"
    assert (directory / "pids.max").read_text().strip() == "64"
    (directory / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert group.oom_kills() == 1


@pytest.mark.parametrize(("text", "expected"), [("512Mi", 512 * 2**20), ("8Gi", 8 * 2**30), ("1G", 10**9),
                                                 ("1.5Gi", int(1.5 * 2**30)), ("1000", 1000), (None, None)])
def test_memory_quantities(text: str | None, expected: int | None) -> None:
    assert parse_memory(text) == expected


def test_two_servers_on_one_host_never_share_a_worker_uid(tmp_path: Path) -> None:
    from launch.stores.placement.sandbox import UidPool

    first, second = UidPool(700000, 4, tmp_path), UidPool(700000, 4, tmp_path)
    taken = [first.acquire(), second.acquire(), first.acquire(), second.acquire()]
    assert sorted(taken) == [700000, 700001, 700002, 700003]  # type: ignore[type-var]
    assert first.acquire() is None and second.acquire() is None
    first.release(taken[0])  # type: ignore[arg-type]
    assert second.acquire() == taken[0]


def test_import_paths_include_the_interpreter_a_bundle_environment_links_to(tmp_path: Path) -> None:
    """A bundle pickled on another Python minor runs in a venv linked to that minor's interpreter: its
    prefix must be visible in the sandbox too."""
    other = tmp_path / "pythons" / "3.12.1"
    (other / "bin").mkdir(parents=True)
    (other / "bin" / "python3.12").write_text("")
    env = tmp_path / "data" / "envs" / "abc"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "python").symlink_to(other / "bin" / "python3.12")
    paths = import_paths(str(env / "bin" / "python"), tmp_path / "data")
    assert str(other.resolve()) in paths and str(env.resolve()) in paths
