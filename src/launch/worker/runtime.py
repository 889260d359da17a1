"""Load a bundle once and run predictions: ``predict_fn(**args)`` or ``predict_fn(bytes_from_url)``."""

from __future__ import annotations

import importlib
import inspect
import json
import sys
import traceback
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle

from launch.net_guard import FetchPolicy, fetch

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


def extract_zip(archive: Path, target: Path) -> None:
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


def load_zip(archive: Path, workdir: Path, metadata: dict[str, str], app_config: Any) -> PredictFn:
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
    if packaging == "cloudpickle":
        return load_pickled(Path(path).read_bytes(), app_config)
    if packaging == "zip":
        workdir = Path(runtime.get("workdir") or Path(path).with_suffix(".d"))
        return load_zip(Path(path), workdir, runtime.get("metadata") or {}, app_config)
    raise BundleLoadError(f"unknown packaging type {packaging!r}")


class Runtime:
    """A loaded bundle plus the policy for ``url`` inputs."""

    def __init__(self, predict_fn: PredictFn, policy: FetchPolicy) -> None:
        self.predict_fn = predict_fn
        self.policy = policy
        candidates = (predict_fn, type(predict_fn).__dict__.get("__call__"))
        # async generators run on the event loop like coroutines (collected into a list outside a stream)
        self.is_async = any(inspect.iscoroutinefunction(f) or inspect.isasyncgenfunction(f) for f in candidates)

    def inputs(self, request: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Positional and keyword arguments for the predict function (``url`` wins over ``args``)."""
        if request.get("url"):
            return (fetch(request["url"], self.policy),), {}
        args = request.get("args")
        if args is None:
            return (), {}
        if not isinstance(args, dict):
            raise TypeError("'args' must be a JSON object of keyword arguments")
        return (), args

    def run(self, request: dict[str, Any]) -> Outcome:
        """Run one prediction (blocking); never raises for user errors."""
        try:
            args, kwargs = self.inputs(request)
            output = self.predict_fn(*args, **kwargs)
            if inspect.isgenerator(output):  # a streaming bundle on a sync or async endpoint: the whole list
                output = list(output)
        except Exception:
            return Outcome(ok=False, traceback=traceback.format_exc())
        return serialise(output, bool(request.get("return_pickled", True)))

    def open_stream(self, request: dict[str, Any]) -> Any:
        """Call the predict function for a stream: a generator, an async generator, an awaitable or a value
        (``launch.worker.streams`` tells them apart)."""
        args, kwargs = self.inputs(request)
        return self.predict_fn(*args, **kwargs)

    async def run_async(self, request: dict[str, Any]) -> Outcome:
        """Run one prediction of an ``async def`` predict function."""
        try:
            args, kwargs = self.inputs(request)
            output = self.predict_fn(*args, **kwargs)
            if inspect.isawaitable(output):
                output = await output
            if inspect.isasyncgen(output):  # an async streaming bundle outside a stream: the whole list
                output = [item async for item in output]
            elif inspect.isgenerator(output):
                output = list(output)
        except Exception:
            return Outcome(ok=False, traceback=traceback.format_exc())
        return serialise(output, bool(request.get("return_pickled", True)))


def serialise(output: Any, return_pickled: bool) -> Outcome:
    try:
        if return_pickled:
            return Outcome(ok=True, pickled=cloudpickle.dumps(output))
        return Outcome(ok=True, result=json.dumps(output))
    except Exception:
        return Outcome(ok=False, traceback=traceback.format_exc())
