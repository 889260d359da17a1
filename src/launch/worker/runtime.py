"""Load a bundle once and run predictions: ``predict_fn(**args)`` or ``predict_fn(bytes_from_url)``."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import pickle
import sys
import traceback
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import cloudpickle

PredictFn = Callable[..., Any]


class BundleLoadError(Exception):
    """The bundle could not be turned into a predict function."""


@dataclass
class Outcome:
    """What one prediction produced: a JSON string, pickled bytes, or a traceback."""

    ok: bool
    result: str | None = None
    pickled: bytes | None = None
    traceback: str | None = None


def _call_with_config(fn: Callable[..., Any], app_config: Any, *args: Any) -> Any:
    """Call a loader with the app config when its signature asks for it (both 0.3.3 conventions)."""
    if app_config is None:
        return fn(*args)
    params = inspect.signature(fn).parameters
    positional = [name for name, p in params.items()
                  if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    if "app_config" in params:
        if "app_config" in positional and positional.index("app_config") < len(args):
            at = positional.index("app_config")  # e.g. load_predict_fn(app_config, model)
            return fn(*args[:at], app_config, *args[at:])
        return fn(*args, app_config=app_config)
    if len(positional) > len(args):
        return fn(app_config, *args)
    return fn(*args)


def load_pickled(data: bytes, app_config: Any) -> PredictFn:
    obj = cloudpickle.loads(data)
    if isinstance(obj, dict):
        if "load_predict_fn" not in obj:
            raise BundleLoadError("bundle dict has no 'load_predict_fn'")
        if "model" in obj:
            model = obj["model"]
        elif "load_model_fn" in obj:
            model = _call_with_config(obj["load_model_fn"], app_config)
        else:
            raise BundleLoadError("bundle dict needs 'model' or 'load_model_fn'")
        return _callable(_call_with_config(obj["load_predict_fn"], app_config, model))
    if hasattr(obj, "init") and callable(obj.init) and not inspect.isfunction(obj):
        obj.init(app_config)
    return _callable(obj)


def _callable(fn: Any) -> PredictFn:
    if not callable(fn):
        raise BundleLoadError(f"the bundle's predict function is a {type(fn).__name__}, not callable")
    return fn


def extract_zip(archive: Path | BinaryIO, target: Path) -> None:
    """Unpack ``archive`` into ``target``; refuses absolute paths, ``..`` and links (no path traversal)."""
    target.mkdir(parents=True, exist_ok=True)
    root = target.resolve()
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            dest = (root / info.filename).resolve()
            if not dest.is_relative_to(root) or info.filename.startswith("/"):
                raise BundleLoadError(f"archive entry {info.filename!r} escapes the bundle directory")
            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                raise BundleLoadError(f"archive entry {info.filename!r} is a symbolic link")
        zf.extractall(root)


def _import_attr(dotted: str) -> Any:
    module_name, _, attr = dotted.rpartition(".")
    if not module_name:
        raise BundleLoadError(f"{dotted!r} is not a dotted 'module.function' path")
    return getattr(importlib.import_module(module_name), attr)


def load_zip(archive: Path | BinaryIO, workdir: Path, metadata: dict[str, str], app_config: Any) -> PredictFn:
    extract_zip(archive, workdir)
    sys.path.insert(0, str(workdir))
    load_predict = _import_attr(metadata["load_predict_fn_module_path"])
    load_model_path = metadata.get("load_model_fn_module_path")
    model = _call_with_config(_import_attr(load_model_path), app_config) if load_model_path else None
    return _callable(_call_with_config(load_predict, app_config, model))


def load_bundle(path: str, runtime: dict[str, Any]) -> PredictFn:
    """The predict function of the bundle stored at ``path``."""
    packaging = runtime.get("packaging_type", "cloudpickle")
    app_config = runtime.get("app_config")
    if packaging not in ("cloudpickle", "zip", "command"):
        raise BundleLoadError(f"unknown packaging type {packaging!r}")
    with open_bundle(path) as bundle:
        if packaging == "cloudpickle":
            return load_pickled(bundle.read(), app_config)
        workdir = Path(runtime.get("workdir") or Path(path).with_suffix(".d"))
        if packaging == "command":
            from launch.worker.command import start_command

            return start_command(bundle, workdir, runtime.get("metadata") or {})
        return load_zip(bundle, workdir, runtime.get("metadata") or {}, app_config)


def open_bundle(path: str) -> BinaryIO:
    """The bundle's bytes: ``fd:N`` is a descriptor the server opened for a worker that may not read the file
    itself (sandboxed workers see no store), anything else a path."""
    if path.startswith("fd:"):
        return os.fdopen(int(path.removeprefix("fd:")), "rb")
    return open(path, "rb")


class Runtime:
    """A loaded bundle, run one prediction at a time per call."""

    def __init__(self, predict_fn: PredictFn, memory_limit: str | None = None) -> None:
        self.predict_fn = predict_fn
        self.memory_limit = memory_limit
        candidates = (predict_fn, type(predict_fn).__dict__.get("__call__"))
        # async generators run on the event loop like coroutines (collected into a list outside a stream)
        self.is_async = any(inspect.iscoroutinefunction(f) or inspect.isasyncgenfunction(f) for f in candidates)

    def inputs(self, request: dict[str, Any], data: bytes | None = None) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Positional and keyword arguments for the predict function: the bytes of a ``url`` input (fetched
        by the gateway), else ``args`` as keywords."""
        if data is not None:
            return (data,), {}
        args = request.get("args")
        if args is None:
            return (), {}
        if not isinstance(args, dict):
            raise TypeError("'args' must be a JSON object of keyword arguments")
        return (), args

    def run(self, request: dict[str, Any], data: bytes | None = None) -> Outcome:
        """Run one prediction (blocking); never raises for user errors."""
        try:
            args, kwargs = self.inputs(request, data)
            output = self.predict_fn(*args, **kwargs)
            if inspect.isgenerator(output):  # a streaming bundle on a sync or async endpoint: the whole list
                output = list(output)
        except Exception as exc:
            return self.failure(exc)
        return serialise(output, bool(request.get("return_pickled", True)), request.get("pickle_protocol"))

    def open_stream(self, request: dict[str, Any], data: bytes | None = None) -> Any:
        """Call the predict function for a stream: a generator, an async generator, an awaitable or a value
        (``launch.worker.streams`` tells them apart)."""
        args, kwargs = self.inputs(request, data)
        return self.predict_fn(*args, **kwargs)

    def failure(self, exc: Exception) -> Outcome:
        """A failed outcome with the traceback; a ``MemoryError`` also names the worker's memory limit."""
        text = traceback.format_exc()
        if isinstance(exc, MemoryError) and self.memory_limit:
            text += f"worker exceeded its memory limit of {self.memory_limit}\n"
        return Outcome(ok=False, traceback=text)

    async def run_async(self, request: dict[str, Any], data: bytes | None = None) -> Outcome:
        """Run one prediction of an ``async def`` predict function (an async generator's items as a list)."""
        try:
            args, kwargs = self.inputs(request, data)
            output = self.predict_fn(*args, **kwargs)
            if inspect.isawaitable(output):
                output = await output
            if inspect.isasyncgen(output):  # an async streaming bundle outside a stream: the whole list
                output = [item async for item in output]
            elif inspect.isgenerator(output):
                output = list(output)
        except Exception as exc:
            return self.failure(exc)
        return serialise(output, bool(request.get("return_pickled", True)), request.get("pickle_protocol"))


def serialise(output: Any, return_pickled: bool, protocol: int | None = None) -> Outcome:
    try:
        if return_pickled:
            return Outcome(ok=True, pickled=pickled(output, protocol))
    except Exception:
        return Outcome(ok=False, traceback=traceback.format_exc())
    try:
        return Outcome(ok=True, result=json.dumps(output))
    except (TypeError, ValueError) as exc:
        return Outcome(ok=False, traceback=(
            f"{traceback.format_exc()}\nThe result ({type(output).__module__}.{type(output).__qualname__}) is not "
            f"JSON ({exc}): ask for it pickled with return_pickled=True, e.g. EndpointRequest(args=..., "
            "return_pickled=True), and read it with client.download_result(response.result_url)\n"))


def pickled(output: Any, protocol: int | None = None) -> bytes:
    """``output`` as a pickle the asking client can load: with at most its pickle ``protocol``, and with the
    standard pickler whenever it can (such a pickle needs no cloudpickle to load, so any client version reads
    it); cloudpickle only for what needs it (lambdas, local classes, functions pickled by value)."""
    protocol = min(protocol or pickle.HIGHEST_PROTOCOL, pickle.HIGHEST_PROTOCOL)
    try:
        return pickle.dumps(output, protocol)
    except Exception:
        return cloudpickle.dumps(output, protocol)
