"""Host capacity: whether one more worker fits on this machine (a pure decision), and a ledger of what the
placed and starting workers hold.

A worker holds its endpoint's ``cpus`` and ``memory``. Memory is not compressible, so the workers' memory
adds up to at most what the host offers (``LAUNCH_HOST_MEMORY``). ``cpus`` is a CPU quota, a ceiling rather
than a reservation, so it may be overcommitted: the workers' cpus add up to at most ``LAUNCH_HOST_CPUS`` *
``LAUNCH_CPU_OVERCOMMIT`` (set the overcommit to 1 to reserve whole CPUs, as Kubernetes requests do).
"""

from __future__ import annotations

from dataclasses import dataclass

from launch.stores.placement.limits import parse_memory


def parse_quantity(text: str) -> int:
    """Bytes in a memory quantity, read exactly as the worker's memory limit reads it (one rule for both)."""
    size = parse_memory(text)
    if size is None:
        raise ValueError(f"not a quantity such as '512Mi' or '8Gi': {text!r}")
    return size


def format_bytes(size: float) -> str:
    for unit in ("", "Ki", "Mi", "Gi", "Ti"):
        if abs(size) < 1024 or unit == "Ti":
            return f"{size:.0f}{unit}" if unit == "" or size == int(size) else f"{size:.1f}{unit}"
        size /= 1024
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Resources:
    cpus: float = 0.0
    memory: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(self.cpus + other.cpus, self.memory + other.memory)


def worker_resources(cpus: float, memory: str) -> Resources:
    return Resources(float(cpus), parse_quantity(memory))


@dataclass(frozen=True)
class Host:
    cpus: float
    memory: int
    cpu_overcommit: float = 1.0

    @property
    def schedulable_cpus(self) -> float:
        return self.cpus * self.cpu_overcommit


def unfit_reason(host: Host, used: Resources, want: Resources) -> str | None:
    """None when a worker asking for ``want`` fits next to the workers holding ``used``; else why not."""
    problems = []
    if want.memory > host.memory:
        problems.append(f"a worker needs {format_bytes(want.memory)} of memory, more than this host offers "
                        f"({format_bytes(host.memory)}, LAUNCH_HOST_MEMORY)")
    elif used.memory + want.memory > host.memory:
        problems.append(f"a worker needs {format_bytes(want.memory)} of memory and "
                        f"{format_bytes(max(0, host.memory - used.memory))} of the host's "
                        f"{format_bytes(host.memory)} are free (LAUNCH_HOST_MEMORY)")
    schedulable = host.schedulable_cpus
    if want.cpus > schedulable:
        problems.append(f"a worker needs {want.cpus:g} cpus, more than this host offers ({schedulable:g}: "
                        "LAUNCH_HOST_CPUS * LAUNCH_CPU_OVERCOMMIT)")
    elif used.cpus + want.cpus > schedulable + 1e-9:
        problems.append(f"a worker needs {want.cpus:g} cpus and {max(0.0, schedulable - used.cpus):g} of the "
                        f"host's {schedulable:g} are free (LAUNCH_HOST_CPUS * LAUNCH_CPU_OVERCOMMIT)")
    return "; ".join(problems) or None


class Ledger:
    """What each placed or starting worker holds, by worker id (in memory: workers die with the server)."""

    def __init__(self) -> None:
        self._held: dict[str, Resources] = {}

    @property
    def used(self) -> Resources:
        total = Resources()
        for held in self._held.values():
            total = total + held
        return total

    def reserve(self, worker_id: str, resources: Resources) -> None:
        self._held[worker_id] = resources

    def release(self, worker_id: str) -> None:
        self._held.pop(worker_id, None)
