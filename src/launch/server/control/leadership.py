"""Which gateway runs the control loop (reconciler, autoscaler, sweeps, dispatch of async tasks, batch jobs):
the holder of a lease row in the database, renewed every third of its term.

Any gateway may take the lease once it expired, so when its holder dies another takes over within one term
(``LAUNCH_CONTROL_LEASE_SECONDS``, 6 s). A holder that cannot renew steps down before its term ends on the
others' clocks (gateways need clocks synchronised to well under a second, e.g. by NTP); one that stops
hands the lease back, so a restart fails over at once. With the embedded broker there is one gateway, and it
always leads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import sqlalchemy as sa

from launch.stores.database import Database
from launch.stores.schema import control_lease

log = logging.getLogger("launch.leadership")
LEASE = "control"

_RENEW = sa.text(
    "UPDATE control_lease SET holder = :holder, expires_at = :expires "
    "WHERE name = :name AND (holder = :holder OR expires_at < :now)"
)


def take_or_renew(conn: sa.Connection, holder: str, now: float, term: float) -> bool:
    """One attempt to hold the lease until ``now + term``; True if ``holder`` holds it now."""
    params = {"holder": holder, "expires": now + term, "name": LEASE, "now": now}
    if conn.execute(_RENEW, params).rowcount:
        return True
    exists = conn.execute(sa.select(control_lease.c.name).where(control_lease.c.name == LEASE)).first()
    if exists is not None:
        return False
    conn.execute(control_lease.insert().values(name=LEASE, holder=holder, expires_at=now + term))
    return True


def hand_back(conn: sa.Connection, holder: str) -> None:
    conn.execute(control_lease.update().where(control_lease.c.name == LEASE, control_lease.c.holder == holder)
                 .values(expires_at=0.0))


class Leadership:
    def __init__(self, db: Database, holder: str, term: float, *, on_elected: Callable[[], Awaitable[None]],
                 on_deposed: Callable[[], Awaitable[None]], always: bool = False) -> None:
        self.db = db
        self.holder = holder
        self.term = term
        self.on_elected = on_elected
        self.on_deposed = on_deposed
        self.always = always
        self.leading = False
        self._valid_until = 0.0
        self._loop: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Try once at once (a lone gateway leads before it serves), then keep trying in the background."""
        await self._step()
        if not self.always:
            self._loop = asyncio.create_task(self._run(), name="leadership")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.term / 3)
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("control-loop lease step failed")

    async def _step(self) -> None:
        if self.always:
            held = True
        else:
            started = time.monotonic()
            try:
                now = time.time()
                held = await self.db.write(lambda conn: take_or_renew(conn, self.holder, now, self.term))
            except Exception:
                log.warning("could not renew the control-loop lease", exc_info=True)
                held = self.leading and time.monotonic() < self._valid_until
            else:  # the others see the term from the time of our write: count it from before we asked
                if held:
                    self._valid_until = started + self.term * 0.8
        if held and not self.leading:
            self.leading = True
            log.info("this gateway runs the control loop (%s)", self.holder)
            await self.on_elected()
        elif not held and self.leading:
            self.leading = False
            log.warning("this gateway no longer holds the control-loop lease; stopping its control loop")
            await self.on_deposed()

    async def stop(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        if self.leading:
            self.leading = False
            await self.on_deposed()
            if not self.always:
                with contextlib.suppress(Exception):
                    await self.db.write(lambda conn: hand_back(conn, self.holder))
