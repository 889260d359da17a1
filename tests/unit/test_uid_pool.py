"""Worker uids are claimed host-wide: two servers on one host never hand out the same uid."""

from __future__ import annotations

from pathlib import Path

from launch.stores.placement.local import UidPool


def test_two_pools_on_one_host_never_share_a_uid(tmp_path: Path) -> None:
    first, second = UidPool(900000, 3, tmp_path), UidPool(900000, 3, tmp_path)
    a = first.claim()
    b = second.claim()
    c = first.claim()
    assert None not in (a, b, c) and len({a, b, c}) == 3
    assert second.claim() is None  # all three are held
    first.release(a)  # type: ignore[arg-type]
    assert second.claim() == a


def test_a_released_uid_is_claimed_again(tmp_path: Path) -> None:
    pool = UidPool(900010, 1, tmp_path)
    uid = pool.claim()
    assert uid == 900010 and pool.claim() is None
    pool.release(uid)
    assert pool.claim() == uid
