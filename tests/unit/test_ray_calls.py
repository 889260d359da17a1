"""Blocking calls to the Ray cluster run in daemon threads of their own (``placement.ray._on_cluster``)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from launch.stores.placement.ray import _on_cluster

pytestmark = pytest.mark.timeout(30)


def test_a_call_gives_its_result_or_its_exception() -> None:
    def fail() -> None:
        raise ConnectionError("no head")

    async def main() -> int:
        with pytest.raises(ConnectionError, match="no head"):
            await _on_cluster(fail)
        return await _on_cluster(int, "7", base=8)

    assert asyncio.run(main()) == 7


def test_a_shutdown_does_not_wait_for_a_call_the_cluster_holds_up() -> None:
    """``asyncio.run`` joins the default executor's threads as it ends: with ``asyncio.to_thread`` it would not
    return while the call blocks (a gateway's SIGTERM waited for a slow ``ray.init`` that way)."""
    release = threading.Event()

    async def main() -> None:
        call = asyncio.create_task(_on_cluster(release.wait))
        await asyncio.sleep(0.01)
        call.cancel()

    asyncio.run(main())
    assert not release.is_set()  # the call still blocks, and the loop has ended
    release.set()
