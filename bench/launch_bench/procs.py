"""Process-tree accounting from /proc: members, CPU seconds and memory of a server and its children."""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


@dataclass(frozen=True)
class Stat:
    pid: int
    ppid: int
    sid: int
    cpu_ticks: int
    start_ticks: int


def _read_stat(pid: int) -> Stat | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            raw = fh.read()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    # fields[0] is state (field 3); utime..cstime are fields 14..17.
    ticks = sum(int(v) for v in fields[11:15])
    return Stat(
        pid=pid, ppid=int(fields[1]), sid=int(fields[3]), cpu_ticks=ticks, start_ticks=int(fields[19])
    )


def _all_stats() -> list[Stat]:
    stats = (_read_stat(int(name)) for name in os.listdir("/proc") if name.isdigit())
    return [s for s in stats if s is not None]


def tree(roots: list[int]) -> list[Stat]:
    """Descendants of roots (inclusive), plus processes that share a root's session (daemonised children)."""
    stats = _all_stats()
    by_pid = {s.pid: s for s in stats}
    sids = {by_pid[r].sid for r in roots if r in by_pid and by_pid[r].sid == r}
    members = {r for r in roots if r in by_pid} | {s.pid for s in stats if s.sid in sids}
    changed = True
    while changed:
        new = {s.pid for s in stats if s.ppid in members} - members
        members |= new
        changed = bool(new)
    return [by_pid[p] for p in sorted(members)]


def cpu_seconds(roots: list[int]) -> float:
    """User+system CPU of the live tree, including children it has already reaped."""
    return sum(s.cpu_ticks for s in tree(roots)) / CLK_TCK


def core_busy_seconds(core: int) -> float:
    """Non-idle time of one CPU core since boot (user, nice, system, irq, softirq, steal)."""
    with open("/proc/stat", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(f"cpu{core} "):
                v = [int(x) for x in line.split()[1:]]
                return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / CLK_TCK
    raise ValueError(f"no cpu{core} in /proc/stat")


def _smaps_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def memory_mb(roots: list[int]) -> tuple[float, float]:
    """(sum of RSS, sum of PSS) in MiB over the tree. PSS does not double-count shared pages."""
    pids = [s.pid for s in tree(roots)]
    rss = sum(_smaps_kb(p, "Rss:") for p in pids)
    pss = sum(_smaps_kb(p, "Pss:") for p in pids)
    return rss / 1024, pss / 1024


def process_memory_mb(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of one process in MiB."""
    return _smaps_kb(pid, "Rss:") / 1024, _smaps_kb(pid, "Pss:") / 1024


def signal_members(members: list[Stat], sig: int = signal.SIGKILL) -> int:
    """Send sig to each recorded member that is still the same process (pid and start time match)."""
    count = 0
    for member in members:
        current = _read_stat(member.pid)
        if current is None or current.start_ticks != member.start_ticks:
            continue
        try:
            os.kill(member.pid, sig)
            count += 1
        except ProcessLookupError:
            pass
    return count


def kill_tree(roots: list[int], sig: int = signal.SIGKILL) -> int:
    """Send sig to every current member of the tree; returns how many were signalled."""
    return signal_members(tree(roots), sig)


class PeakMemory:
    """Samples tree memory in a background thread and keeps the peak (the 'loaded' RSS/PSS)."""

    def __init__(self, roots: list[int], interval_s: float = 0.5) -> None:
        self._roots = roots
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.rss_mb = 0.0
        self.pss_mb = 0.0

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def _sample(self) -> None:
        rss, pss = memory_mb(self._roots)
        self.rss_mb = max(self.rss_mb, rss)
        self.pss_mb = max(self.pss_mb, pss)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def core_foreign_pct(core: int, pids: list[int], sample_s: float) -> float:
    """Share of `core` used over sample_s by processes outside the tree of pids."""
    ours0, core0, t0 = cpu_seconds(pids), core_busy_seconds(core), time.monotonic()
    time.sleep(sample_s)
    ours, busy = cpu_seconds(pids) - ours0, core_busy_seconds(core) - core0
    return max(0.0, 100 * (busy - ours) / (time.monotonic() - t0))
