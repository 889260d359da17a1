"""Resource limits of worker processes: memory, processes (pids) and a CPU quota, enforced by cgroups.

Both cgroup versions are supported: v1 (one hierarchy per controller, as on this project's CI hosts) and
v2 (the unified hierarchy of current distributions). Each worker gets a cgroup of its own, created below
the server's own cgroup (so a limit the host puts on the server still covers its workers); the worker joins
it between fork and exec, so everything it starts is counted. Where no cgroup can be written, memory and
processes fall back to rlimits (``RLIMIT_DATA``, ``RLIMIT_NPROC`` — per uid, and every worker has a uid of
its own) and the CPU quota is not enforced; ``describe`` says which.

A worker killed for its memory is recognised afterwards by the cgroup's ``oom_kill`` counter, so the
request or task it held fails with a reason that names the limit.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import signal
import time
from dataclasses import dataclass
from pathlib import Path

GROUP = "launch-workers"
_QUANTITY = re.compile(r"(\d+(?:\.\d+)?)([KMGTPEkmgtpe]?)(i?)")
CPU_PERIOD_US = 100_000


@dataclass(frozen=True)
class Limits:
    memory_bytes: int | None = None
    cpus: float | None = None
    pids: int | None = None


def parse_memory(text: str | None) -> int | None:
    """Bytes of a Kubernetes-style quantity (``512Mi``, ``1G``, ``1.5Gi``, ``1000000``); None if empty."""
    if not text:
        return None
    match = _QUANTITY.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a memory quantity: {text!r}")
    number, prefix, binary = match.groups()
    power = "kmgtpe".find(prefix.lower()) + 1 if prefix else 0
    return int(float(number) * ((1024 if binary else 1000) ** power))


def format_memory(text: str | None, limit: int | None) -> str:
    """The limit as the user wrote it (``512Mi``), else in MiB."""
    return text or (f"{limit // 2**20}Mi" if limit else "unlimited")


@dataclass(frozen=True)
class Hierarchy:
    """Where one cgroup version's controllers are mounted, and the server's own place in them."""

    version: int
    roots: dict[str, Path]  # controller -> the server's cgroup directory in that controller's hierarchy


def _mounts(mountinfo: str) -> tuple[dict[str, Path], Path | None]:
    """(v1 controller -> mount point, v2 mount point) from /proc/self/mountinfo."""
    v1: dict[str, Path] = {}
    v2: Path | None = None
    for line in mountinfo.splitlines():
        pre, _, post = line.partition(" - ")
        fields, tail = pre.split(), post.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        if tail[0] == "cgroup2":
            v2 = Path(fields[4])
        elif tail[0] == "cgroup":
            for option in tail[2].split(","):
                if option in ("memory", "pids", "cpu"):
                    v1[option] = Path(fields[4])
    return v1, v2


def _own_paths(proc_cgroup: str) -> tuple[dict[str, str], str | None]:
    """(v1 controller -> the server's cgroup path, v2 path) from /proc/self/cgroup."""
    v1: dict[str, str] = {}
    v2: str | None = None
    for line in proc_cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            v2 = path
        for name in controllers.split(","):
            v1[name] = path
    return v1, v2


def find_hierarchy(mountinfo: str, proc_cgroup: str) -> Hierarchy | None:
    """The cgroup hierarchy to put workers in (v1 when the memory controller is mounted there, else v2)."""
    mounts_v1, mount_v2 = _mounts(mountinfo)
    own_v1, own_v2 = _own_paths(proc_cgroup)
    if "memory" in mounts_v1:
        roots = {c: mounts_v1[c] / own_v1.get(c, "/").lstrip("/") for c in ("memory", "pids", "cpu")
                 if c in mounts_v1}
        return Hierarchy(1, roots)
    if mount_v2 is not None and own_v2 is not None:
        return Hierarchy(2, {"unified": mount_v2 / own_v2.lstrip("/")})
    return None


class WorkerCgroup:
    """One worker's cgroup directories (one per v1 controller, or one v2 directory)."""

    def __init__(self, version: int, dirs: list[Path]) -> None:
        self.version = version
        self.dirs = dirs

    def join_paths(self) -> list[bytes]:
        return [str(d / "cgroup.procs").encode() for d in self.dirs]

    def oom_kills(self) -> int:
        """How many processes the kernel killed in this cgroup for exceeding its memory limit."""
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        for directory in self.dirs:
            with contextlib.suppress(OSError):
                for line in (directory / name).read_text().splitlines():
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        return 0

    def remove(self) -> None:
        for directory in self.dirs:
            for _ in range(50):
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # processes are still leaving
                    time.sleep(0.02)


class ResourceLimiter:
    """Creates worker cgroups with limits; falls back to rlimits where cgroups cannot be written."""

    def __init__(self, hierarchy: Hierarchy | None, reason: str = "") -> None:
        self.hierarchy = hierarchy
        self.reason = reason

    @classmethod
    def detect(cls) -> ResourceLimiter:
        try:
            hierarchy = find_hierarchy(Path("/proc/self/mountinfo").read_text(), Path("/proc/self/cgroup").read_text())
        except OSError as exc:
            return cls(None, f"cannot read the cgroup mounts: {exc}")
        if hierarchy is None:
            return cls(None, "no cgroup hierarchy with a memory controller is mounted")
        try:
            _prepare(hierarchy)
        except OSError as exc:
            return cls(None, f"cannot create cgroups ({exc})")
        return cls(hierarchy)

    def describe(self) -> str:
        if self.hierarchy is None:
            return f"rlimits only (memory as RLIMIT_DATA, processes as RLIMIT_NPROC; no CPU quota): {self.reason}"
        return f"cgroup v{self.hierarchy.version} (memory, pids, cpu quota)"

    def close(self) -> None:
        """Remove this server's (by now empty) parent group."""
        if self.hierarchy is not None:
            for root in self.hierarchy.roots.values():
                with contextlib.suppress(OSError):
                    (root / GROUP / f"server-{os.getpid()}").rmdir()

    def create(self, name: str, limits: Limits) -> WorkerCgroup | None:
        """A cgroup for one worker with ``limits`` written, or None where only rlimits are available."""
        h = self.hierarchy
        if h is None:
            return None
        if h.version == 1:
            dirs = {c: root / GROUP / f"server-{os.getpid()}" / name for c, root in h.roots.items()}
            for directory in dirs.values():
                directory.mkdir(parents=True, exist_ok=True)
            if limits.memory_bytes and "memory" in dirs:
                _write(dirs["memory"] / "memory.limit_in_bytes", limits.memory_bytes)
                with contextlib.suppress(OSError):  # only with swap accounting: no swapping past the limit
                    _write(dirs["memory"] / "memory.memsw.limit_in_bytes", limits.memory_bytes)
            if limits.pids and "pids" in dirs:
                _write(dirs["pids"] / "pids.max", limits.pids)
            if limits.cpus and "cpu" in dirs:
                _write(dirs["cpu"] / "cpu.cfs_period_us", CPU_PERIOD_US)
                _write(dirs["cpu"] / "cpu.cfs_quota_us", max(1000, int(limits.cpus * CPU_PERIOD_US)))
            return WorkerCgroup(1, list(dirs.values()))
        mine = h.roots["unified"] / GROUP / f"server-{os.getpid()}"
        if not mine.exists():
            mine.mkdir(parents=True)
            _write(mine / "cgroup.subtree_control", "+memory +pids +cpu")
        directory = mine / name
        directory.mkdir(exist_ok=True)
        if limits.memory_bytes:
            _write(directory / "memory.max", limits.memory_bytes)
            with contextlib.suppress(OSError):
                _write(directory / "memory.swap.max", 0)
        if limits.pids:
            _write(directory / "pids.max", limits.pids)
        if limits.cpus:
            _write(directory / "cpu.max", f"{max(1000, int(limits.cpus * CPU_PERIOD_US))} {CPU_PERIOD_US}")
        return WorkerCgroup(2, [directory])


def _write(path: Path, value: object) -> None:
    path.write_text(f"{value}\n")


def _prepare(h: Hierarchy) -> None:
    """Create the workers' parent group; on v2, enable the controllers for it (moving the server into a leaf
    of its own cgroup first when that cgroup holds processes, as cgroup v2's no-internal-process rule asks)."""
    if h.version == 1:
        for root in h.roots.values():
            (root / GROUP).mkdir(parents=True, exist_ok=True)
            _remove_stale(root / GROUP)
        return
    own = h.roots["unified"]
    try:
        _write(own / "cgroup.subtree_control", "+memory +pids +cpu")
    except OSError:
        leaf = own / "launch-server"
        leaf.mkdir(exist_ok=True)
        for pid in (own / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError):
                _write(leaf / "cgroup.procs", pid)
        _write(own / "cgroup.subtree_control", "+memory +pids +cpu")
    (own / GROUP).mkdir(exist_ok=True)
    _write(own / GROUP / "cgroup.subtree_control", "+memory +pids +cpu")
    _remove_stale(own / GROUP)


def _remove_stale(parent: Path) -> None:
    """Groups that servers no longer running left behind (they were killed). Each server keeps its workers'
    groups under ``server-<pid>``; a group still in use refuses rmdir."""
    for server in parent.glob("server-*"):
        pid = server.name.removeprefix("server-")
        if pid.isdigit() and Path(f"/proc/{pid}").exists():
            continue
        for child in server.iterdir():
            if child.is_dir():
                with contextlib.suppress(OSError):
                    child.rmdir()
        with contextlib.suppress(OSError):
            server.rmdir()


def enter(join_paths: list[bytes], limits: Limits, use_rlimits: bool) -> None:
    """Run in the worker's child process between fork and exec: join its cgroup, or set rlimits. Only
    async-signal-safe calls (no allocation-heavy Python, no locks)."""
    pid = str(os.getpid()).encode()
    for path in join_paths:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, pid)
        finally:
            os.close(fd)
    if use_rlimits:
        if limits.memory_bytes:
            resource.setrlimit(resource.RLIMIT_DATA, (limits.memory_bytes, limits.memory_bytes))
        if limits.pids:
            resource.setrlimit(resource.RLIMIT_NPROC, (limits.pids, limits.pids))


def processes_of(uid: int) -> list[int]:
    """Host pids of every process running as ``uid``."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid == uid:
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def kill_uid(uid: int, rounds: int = 20) -> None:
    """SIGKILL every process of ``uid`` (a worker's own uid), again while a fork storm still makes more."""
    for _ in range(rounds):
        pids = processes_of(uid)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)


def adjust_oom_score(pid: int | str, score: int) -> bool:
    """Set a process's ``oom_score_adj`` (-1000..1000); False where not permitted."""
    try:
        Path(f"/proc/{pid}/oom_score_adj").write_text(str(score))
    except OSError:
        return False
    return True
