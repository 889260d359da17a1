"""Host capacity: quantities, the fit decision and its reasons, the ledger of held resources."""

from __future__ import annotations

import pytest

from launch.server.control.capacity import (
    Host,
    Ledger,
    Resources,
    format_bytes,
    parse_quantity,
    unfit_reason,
    worker_resources,
)

GI = 1024**3
MI = 1024**2


@pytest.mark.parametrize(("text", "size"), [
    ("100", 100), ("512Mi", 512 * MI), ("8Gi", 8 * GI), ("1.5G", 1_500_000_000), ("1K", 1000),
    ("1Ti", 1024 * GI),
])
def test_parse_quantity(text: str, size: int) -> None:
    assert parse_quantity(text) == size


def test_parse_quantity_refuses_nonsense() -> None:
    for text in ("lots", ""):
        with pytest.raises(ValueError):
            parse_quantity(text)


def test_format_bytes() -> None:
    assert [format_bytes(n) for n in (100, 512 * MI, int(1.5 * GI), 8 * GI)] == ["100", "512Mi", "1.5Gi", "8Gi"]


HOST = Host(cpus=2, memory=4 * GI, cpu_overcommit=2)


def test_a_worker_fits_while_memory_and_overcommitted_cpus_last() -> None:
    want = worker_resources(1, "1Gi")
    assert unfit_reason(HOST, Resources(), want) is None
    assert unfit_reason(HOST, Resources(cpus=3, memory=3 * GI), want) is None  # exactly full after it


def test_memory_is_never_overcommitted() -> None:
    reason = unfit_reason(HOST, Resources(cpus=0, memory=3 * GI + 1), worker_resources(1, "1Gi"))
    assert reason is not None
    assert "a worker needs 1Gi of memory and 1024.0Mi of the host's 4Gi are free (LAUNCH_HOST_MEMORY)" in reason


def test_cpus_are_limited_by_host_times_overcommit() -> None:
    reason = unfit_reason(HOST, Resources(cpus=3.5, memory=0), worker_resources(1, "1Gi"))
    assert reason == ("a worker needs 1 cpus and 0.5 of the host's 4 are free "
                      "(LAUNCH_HOST_CPUS * LAUNCH_CPU_OVERCOMMIT)")


def test_a_worker_bigger_than_the_host_says_so() -> None:
    reason = unfit_reason(HOST, Resources(), worker_resources(8, "8Gi"))
    assert reason is not None
    assert "more than this host offers (4Gi, LAUNCH_HOST_MEMORY)" in reason
    assert "a worker needs 8 cpus, more than this host offers (4: " in reason


def test_ledger_holds_until_released() -> None:
    ledger = Ledger()
    ledger.reserve("w1", Resources(1, GI))
    ledger.reserve("w2", Resources(0.5, GI))
    assert ledger.used == Resources(1.5, 2 * GI)
    ledger.release("w1")
    ledger.release("w1")  # twice is harmless
    assert ledger.used == Resources(0.5, GI)
