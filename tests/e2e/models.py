"""Predict functions and loaders the end-to-end tests deploy as bundles.

``helpers`` registers this module with cloudpickle by value, so workers need no copy of the test suite. Only
the standard library is imported here: whatever a function references is shipped to the worker with it.
"""

from __future__ import annotations

import builtins
import hashlib
import os
import time
from typing import Any

MARKER = "e2e-marker-7f3a"


def process_identity() -> int:
    """Who this worker process is, in a form a test can compute from the host's /proc (helpers.
    process_identity): a sandboxed worker sees its own PID namespace (its pid is small and repeats across
    workers) but keeps the uid no other worker has."""
    return os.getuid() * 10_000_000 + os.getpid()


def toolbox(data: bytes | None = None, op: str = "double", x: Any = 0, **extra: Any) -> Any:
    """One predict function for many behaviours, chosen by ``op`` (``data`` is set for ``url`` inputs)."""
    if data is not None:
        return {"received_len": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                "head": data[:64].decode("utf-8", "replace")}
    if op == "double":
        return {"y": x * 2}
    if op == "raise":
        raise ValueError(f"boom-{x}")
    if op == "set":
        return {x, x + 1}  # picklable, not JSON-serialisable
    if op == "sleep":
        time.sleep(float(x))
        return {"slept": x, "pid": os.getpid(), "worker": process_identity()}
    if op == "pid":
        return os.getpid()
    if op == "echo":
        return extra
    if op == "print":  # a line in the worker's log (timestamped, with the request's id)
        print(f"printed {x}")
        return {"printed": x}
    raise KeyError(f"unknown op {op!r}")


class Scaler:
    """A callable class instance used as ``predict_fn_or_cls``."""

    def __init__(self, factor: int) -> None:
        self.factor = factor

    def __call__(self, x: int) -> dict[str, Any]:
        return {"y": x * self.factor, "kind": "callable-instance"}


def load_linear_predict(model: dict[str, int]) -> Any:
    """``load_predict_fn`` for the ``model`` form."""

    def predict(x: int) -> dict[str, Any]:
        return {"y": model["w"] * x + model["b"], "kind": "model"}

    return predict


def load_counting_model() -> dict[str, Any]:
    """``load_model_fn`` that counts its calls in the worker process."""
    builtins._e2e_model_loads = getattr(builtins, "_e2e_model_loads", 0) + 1  # type: ignore[attr-defined]
    return {"pid": os.getpid(), "w": 3}


def load_counting_predict(model: dict[str, Any]) -> Any:
    """``load_predict_fn`` that counts its calls and reports both counts in every prediction."""
    builtins._e2e_predict_loads = getattr(builtins, "_e2e_predict_loads", 0) + 1  # type: ignore[attr-defined]

    def predict(x: int) -> dict[str, Any]:
        return {"y": model["w"] * x, "model_loads": builtins._e2e_model_loads,  # type: ignore[attr-defined]
                "predict_loads": builtins._e2e_predict_loads,  # type: ignore[attr-defined]
                "pid": os.getpid(), "loaded_in_pid": model["pid"]}

    return predict


def load_broken_model() -> Any:
    """A ``load_model_fn`` that always fails, as with a corrupt weights file."""
    raise RuntimeError(f"weights file is corrupt ({MARKER})")


def load_model_with_config(app_config: dict[str, Any]) -> dict[str, Any]:
    """``load_model_fn(app_config)``, the documented scale-launch convention."""
    return {"scale": app_config["scale"]}


def load_predict_with_config(app_config: dict[str, Any], model: dict[str, Any]) -> Any:
    """``load_predict_fn(app_config, model)``, the documented scale-launch convention."""

    def predict(x: int) -> dict[str, Any]:
        return {"y": model["scale"] * x, "mode": app_config["mode"]}

    return predict


def constant(value: str) -> Any:
    """A predict function that always answers ``value`` (two of them make two distinguishable bundles)."""

    def predict(**_: Any) -> str:
        return value

    return predict


def journaled(item: int, journal: str, delay: float = 0.0) -> dict[str, int]:
    """Prints ``journal:<journal>:<item>`` to the worker's log (one line per run; sandboxed workers can write
    nowhere a test could read but their log), so a test can count how often each input was computed, then
    sleeps ``delay`` seconds."""
    import sys

    sys.stdout.write(f"journal:{journal}:{item}\n")  # one write: lines of concurrent items never interleave
    sys.stdout.flush()
    time.sleep(delay)
    return {"item": item}


def hostile(action: str, arg: Any = None) -> Any:
    """What a hostile tenant's predict function tries; returns what it got (or the error it met)."""
    import signal
    import socket

    def attempt(fn: Any) -> Any:
        try:
            return fn()
        except BaseException as exc:  # the error is the answer
            return f"{type(exc).__name__}: {exc}"

    if action == "env":
        return sorted(os.environ)
    if action == "whoami":
        return {"uid": os.getuid(), "pid": os.getpid(), "ppid": os.getppid()}
    if action == "read":
        return attempt(lambda: builtins.open(arg, "rb").read(64).hex())
    if action == "listdir":
        return attempt(lambda: sorted(os.listdir(arg)))
    if action == "connect_unix":
        return attempt(lambda: socket.socket(socket.AF_UNIX).connect(arg) or "connected")
    if action == "connect_tcp":
        return attempt(lambda: socket.create_connection(("127.0.0.1", int(arg)), timeout=2) and "connected")
    if action == "kill":
        return attempt(lambda: os.kill(int(arg), signal.SIGKILL) or "sent")
    if action == "kill_everything":
        return attempt(lambda: os.kill(-1, signal.SIGKILL) or "sent")
    if action == "alloc":
        hoard = b"x" * (int(arg) * 2**20)  # written, so every page is really used
        return len(hoard)
    if action == "fork_storm":
        made = 0
        for _ in range(int(arg)):
            try:
                pid = os.fork()
            except OSError:
                break
            if pid == 0:
                time.sleep(5)
                os._exit(0)
            made += 1
        return made
    if action == "hang":
        time.sleep(3600)
    if action == "big_result":
        return "x" * int(arg)
    raise KeyError(action)


def rich_result(x: float = 1.0) -> Any:
    """A result only cloudpickle can pickle: a lambda and an instance of a local class, with an ndarray
    where NumPy is installed (pickled results must round-trip to the client that asked)."""

    class Local:
        def __init__(self, value: float) -> None:
            self.value = value

    out: dict[str, Any] = {"double": lambda v: v * 2, "local": Local(x), "x": x}
    try:
        import numpy  # type: ignore[import-not-found,unused-ignore]

        out["array"] = numpy.arange(3) * x
    except ImportError:
        pass
    return out


def load_sklearn_model() -> Any:
    """A tiny scikit-learn model, trained in the worker (the bundle requires scikit-learn)."""
    from sklearn.linear_model import LinearRegression  # type: ignore[import-not-found,unused-ignore]

    return LinearRegression().fit([[0.0], [1.0], [2.0]], [1.0, 3.0, 5.0])


def load_sklearn_predict(model: Any) -> Any:
    def predict(x: float = 1.0) -> Any:
        import sklearn  # type: ignore[import-not-found,unused-ignore]

        class Local:
            def __init__(self, value: float) -> None:
                self.value = value

        return {"prediction": model.predict([[x]]), "coef": model.coef_, "double": lambda v: v * 2,
                "local": Local(x), "sklearn": sklearn.__version__}

    return predict


def json_unfriendly(x: float = 1.0) -> Any:
    """A result that is not JSON (a datetime)."""
    import datetime

    return {"when": datetime.datetime(2026, 1, 1), "x": x}


STREAM_STATE: dict[str, Any] = {"produced": {}, "closed": [], "active": 0, "max_active": 0}


def streamer(op: str = "count", n: int = 10, tag: str = "", delay: float = 0.0, size: int = 0,
             stall: float = 0.0) -> Any:
    """A streaming (generator) predict function. ``op``: ``count`` yields ``{"i": i}`` (``size`` bytes of
    padding; ``delay`` before each item, ``stall`` more before the second), ``raise`` fails after ``n``
    items, ``probe`` yields what this worker process has seen of ``tag``: items produced, whether its
    generator was closed (``finally`` ran), the most concurrent streams."""
    if op == "probe":
        yield {"produced": STREAM_STATE["produced"].get(tag, 0), "closed": tag in STREAM_STATE["closed"],
               "max_active": STREAM_STATE["max_active"]}
        return
    STREAM_STATE["active"] += 1
    STREAM_STATE["max_active"] = max(STREAM_STATE["max_active"], STREAM_STATE["active"])
    try:
        for i in range(n):
            if delay or (stall and i == 1):
                time.sleep(delay + (stall if i == 1 else 0.0))
            STREAM_STATE["produced"][tag] = i + 1
            yield {"i": i, "pad": "x" * size} if size else {"i": i}
        if op == "raise":
            raise ValueError(f"stream-boom-{tag}")
    finally:
        STREAM_STATE["active"] -= 1
        STREAM_STATE["closed"].append(tag)


async def astreamer(n: int = 10, delay: float = 0.0) -> Any:
    """An async generator predict function: yields ``i`` for i < n, awaiting ``delay`` between items."""
    import asyncio

    for i in range(n):
        if delay:
            await asyncio.sleep(delay)
        yield i


def byte_chunks(data: bytes) -> Any:
    """A streaming predict function for ``url`` inputs: the fetched bytes, four at a time, as text."""
    for start in range(0, len(data), 4):
        yield data[start:start + 4].decode()
