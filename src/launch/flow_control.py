"""Credit-based flow control for streams between gateway and worker (``launch.wire`` STREAM frames).

The worker may run ahead of the client by at most one window of bytes: it spends credit for each chunk it
sends and waits when it has none; the gateway returns credit only for what the HTTP client has taken. A slow
client therefore slows the generator instead of filling the gateway's memory. Credit goes back in batches
of half a window, so a fast stream costs one CREDIT frame per half window, not one per item.
"""

from __future__ import annotations

import asyncio

DEFAULT_WINDOW = 256 * 1024


class CreditWindow:
    """Gateway side: how much credit to give back after the client took ``nbytes`` more."""

    def __init__(self, window: int = DEFAULT_WINDOW) -> None:
        if window < 2:
            raise ValueError("a credit window needs at least 2 bytes")
        self.window = window
        self._taken = 0

    def consumed(self, nbytes: int) -> int:
        """Bytes of credit to grant now (0 until half a window was taken)."""
        self._taken += nbytes
        if self._taken < self.window // 2:
            return 0
        grant, self._taken = self._taken, 0
        return grant


class Balance:
    """Worker side: the credit left for one stream; ``ready`` waits while it is spent."""

    def __init__(self, credit: int) -> None:
        self.credit = credit
        self._more = asyncio.Event()

    def spend(self, nbytes: int) -> None:
        self.credit -= nbytes

    def grant(self, nbytes: int) -> None:
        self.credit += nbytes
        self._more.set()

    @property
    def available(self) -> bool:
        return self.credit > 0

    async def ready(self) -> None:
        """Return once there is credit (at once if there is)."""
        while self.credit <= 0:
            self._more.clear()
            await self._more.wait()
