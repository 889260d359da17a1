"""The model functions every target serves. Kept import-light: peers' environments import this module."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

TOKENS = 1000
MATRIX_SIZE = 64


def echo(x: Any) -> Any:
    """Return the input unchanged."""
    return x


def sleep_1ms(x: Any) -> Any:
    """Block for one millisecond, then echo."""
    time.sleep(0.001)
    return x


def matmul(x: Any) -> float:
    """Multiply two small NumPy matrices filled with x and return the sum."""
    import numpy as np

    a = np.full((MATRIX_SIZE, MATRIX_SIZE), float(x))
    return float((a @ a).sum())


def tokens(x: Any) -> Iterator[str]:
    """Yield TOKENS newline-terminated items (the streaming model)."""
    for i in range(TOKENS):
        yield f"tok{i}\n"


def async_noop(x: Any) -> Any:
    """The trivial task run through the asynchronous (queue) path."""
    return x


def park(x: Any) -> Any:
    """Hold the worker for ten minutes: tasks sent after it stay queued (submission cost, queue memory)."""
    time.sleep(600)
    return x


SYNC_MODELS: dict[str, Any] = {"echo": echo, "sleep": sleep_1ms, "matmul": matmul}
# Request bodies of the payload scenarios: echo with a string argument of about this many bytes.
PAYLOADS = {"echo-4k": 4 * 1024, "echo-64k": 64 * 1024, "echo-1m": 1024 * 1024}
BLOCKING = frozenset({"sleep"})
