"""The worker runtime: loading the three pickled bundle forms and zip bundles, safe unzip, running predictions."""

from __future__ import annotations

import json
import stat
import sys
import textwrap
import uuid
import zipfile
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from launch.worker.runtime import BundleLoadError, Runtime, extract_zip, load_bundle, load_pickled, serialise

# -- load_pickled: the three forms --------------------------------------------------------------------------


def test_predict_fn_form() -> None:
    def predict(x: int) -> int:
        return x + 1

    assert load_pickled(cloudpickle.dumps(predict), None)(x=1) == 2


def test_callable_instance_form() -> None:
    class Doubler:
        def __init__(self, factor: int) -> None:
            self.factor = factor

        def __call__(self, x: int) -> int:
            return x * self.factor

    assert load_pickled(cloudpickle.dumps(Doubler(3)), None)(x=2) == 6


def test_load_predict_fn_and_model_form() -> None:
    bundle = {"model": {"w": 10}, "load_predict_fn": lambda model: lambda x: model["w"] * x}
    assert load_pickled(cloudpickle.dumps(bundle), None)(x=2) == 20


def test_load_predict_fn_and_load_model_fn_form_calls_each_loader_once() -> None:
    calls: list[str] = []

    def load_model() -> dict[str, int]:
        calls.append("model")
        return {"w": 5}

    def load_predict(model: dict[str, int]) -> Any:
        calls.append("predict")
        return lambda x: model["w"] * x

    fn = load_pickled(cloudpickle.dumps({"load_model_fn": load_model, "load_predict_fn": load_predict}), None)
    assert [fn(x=i) for i in range(3)] == [0, 5, 10]
    # the pickled copies of the loaders append to an unpickled copy of `calls`; count through the model instead
    counter = {"n": 0}

    def counting_model() -> dict[str, int]:
        counter["n"] += 1
        return counter

    bundle = {"load_model_fn": counting_model, "load_predict_fn": lambda m: lambda: m["n"]}
    fn = load_pickled(cloudpickle.dumps(bundle), None)
    assert [fn(), fn(), fn()] == [1, 1, 1]


# -- app_config conventions ---------------------------------------------------------------------------------


def test_app_config_positional_convention() -> None:
    def load_model(app_config: Any) -> dict[str, Any]:
        return {"from_config": app_config["scale"]}

    def load_predict(app_config: Any, model: dict[str, Any]) -> Any:
        return lambda x: (app_config["offset"] + model["from_config"] * x)

    bundle = {"load_model_fn": load_model, "load_predict_fn": load_predict}
    assert load_pickled(cloudpickle.dumps(bundle), {"scale": 3, "offset": 100})(x=2) == 106


def test_app_config_keyword_convention() -> None:
    def load_predict(model: int, app_config: Any = None) -> Any:
        return lambda: (model, app_config)

    bundle = {"model": 7, "load_predict_fn": load_predict}
    assert load_pickled(cloudpickle.dumps(bundle), {"k": "v"})() == (7, {"k": "v"})


def test_loaders_without_config_parameter_ignore_app_config() -> None:
    bundle = {"load_model_fn": lambda: 4, "load_predict_fn": lambda model: lambda: model}
    assert load_pickled(cloudpickle.dumps(bundle), {"unused": True})() == 4


def test_object_with_init_receives_app_config_once() -> None:
    class Model:
        def __init__(self) -> None:
            self.inits: list[Any] = []

        def init(self, app_config: Any) -> None:
            self.inits.append(app_config)

        def __call__(self) -> list[Any]:
            return self.inits

    fn = load_pickled(cloudpickle.dumps(Model()), {"threshold": 0.5})
    assert fn() == [{"threshold": 0.5}]
    assert fn() == [{"threshold": 0.5}]


# -- refused bundles ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("obj", [42, "predict", None, [1, 2]])
def test_non_callable_is_a_load_error(obj: Any) -> None:
    with pytest.raises(BundleLoadError, match="not callable"):
        load_pickled(cloudpickle.dumps(obj), None)


def test_load_predict_fn_returning_non_callable_is_a_load_error() -> None:
    with pytest.raises(BundleLoadError, match="not callable"):
        load_pickled(cloudpickle.dumps({"model": 1, "load_predict_fn": lambda m: m}), None)


def test_dict_without_load_predict_fn_is_a_load_error() -> None:
    with pytest.raises(BundleLoadError, match="load_predict_fn"):
        load_pickled(cloudpickle.dumps({"model": 1}), None)


def test_dict_without_model_or_loader_is_a_load_error() -> None:
    with pytest.raises(BundleLoadError, match="model"):
        load_pickled(cloudpickle.dumps({"load_predict_fn": lambda m: m}), None)


def test_unknown_packaging_is_a_load_error(tmp_path: Path) -> None:
    path = tmp_path / "bundle"
    path.write_bytes(b"x")
    with pytest.raises(BundleLoadError, match="packaging"):
        load_bundle(str(path), {"packaging_type": "tarball"})


# -- extract_zip ----------------------------------------------------------------------------------------------


def make_zip(path: Path, entries: dict[str, str], symlinks: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in entries.items():
            zf.writestr(zipfile.ZipInfo(name), text)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def test_extract_zip_unpacks_nested_files(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "ok.zip", {"pkg/__init__.py": "", "pkg/sub/data.txt": "hello"})
    extract_zip(archive, tmp_path / "out")
    assert (tmp_path / "out" / "pkg" / "sub" / "data.txt").read_text() == "hello"


@pytest.mark.parametrize("name", ["../evil.txt", "pkg/../../evil.txt", "/tmp/evil-absolute.txt", "../../../evil.txt"])
def test_extract_zip_refuses_escaping_entries(tmp_path: Path, name: str) -> None:
    archive = make_zip(tmp_path / "bad.zip", {"fine.txt": "ok", name: "pwned"})
    target = tmp_path / "deep" / "out"
    with pytest.raises(BundleLoadError, match="escapes"):
        extract_zip(archive, target)
    assert not (tmp_path / "deep" / "evil.txt").exists()
    assert not (tmp_path / "evil.txt").exists()
    assert not (target / "fine.txt").exists(), "nothing is extracted from a refused archive"


def test_extract_zip_refuses_symlinks(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "link.zip", {"fine.txt": "ok"}, symlinks={"pkg/passwd": "/etc/passwd"})
    with pytest.raises(BundleLoadError, match="symbolic link"):
        extract_zip(archive, tmp_path / "out")
    assert not (tmp_path / "out" / "pkg" / "passwd").exists()


def test_load_zip_bundle_with_app_config(tmp_path: Path) -> None:
    package = f"zipped_{uuid.uuid4().hex[:8]}"
    source = textwrap.dedent("""
        def load_model(app_config):
            return {"scale": app_config["scale"]}

        def load_predict(model):
            def predict(x):
                return model["scale"] * x
            return predict
    """)
    archive = make_zip(tmp_path / "bundle.zip", {f"{package}/__init__.py": "", f"{package}/model.py": source})
    runtime = {"packaging_type": "zip", "app_config": {"scale": 7}, "workdir": str(tmp_path / "work"),
               "metadata": {"load_predict_fn_module_path": f"{package}.model.load_predict",
                            "load_model_fn_module_path": f"{package}.model.load_model"}}
    try:
        assert load_bundle(str(archive), runtime)(x=3) == 21
    finally:
        sys.path.remove(str(tmp_path / "work"))
        for name in [m for m in sys.modules if m.startswith(package)]:
            del sys.modules[name]


# -- Runtime.run ------------------------------------------------------------------------------------------------


def runtime_for(fn: Any) -> Runtime:
    return Runtime(fn)


def test_run_with_args_pickled() -> None:
    outcome = runtime_for(lambda a, b: {"sum": a + b, "set": {a, b}}).run({"args": {"a": 1, "b": 2}})
    assert outcome.ok and outcome.result is None and outcome.traceback is None
    assert cloudpickle.loads(outcome.pickled) == {"sum": 3, "set": {1, 2}}


def test_run_with_args_json() -> None:
    outcome = runtime_for(lambda a, b: [a, b]).run({"args": {"a": "x", "b": None}, "return_pickled": False})
    assert outcome.ok and outcome.pickled is None
    assert json.loads(outcome.result) == ["x", None]


def test_run_without_args_calls_with_nothing() -> None:
    outcome = runtime_for(lambda: "no-args").run({"args": None, "return_pickled": False})
    assert outcome.ok and json.loads(outcome.result) == "no-args"


def test_raising_predict_fn_gives_a_traceback() -> None:
    def predict_that_fails(x: int) -> int:
        raise ValueError(f"bad input {x}")

    outcome = runtime_for(predict_that_fails).run({"args": {"x": 41}})
    assert not outcome.ok and outcome.result is None and outcome.pickled is None
    assert "Traceback" in outcome.traceback
    assert "predict_that_fails" in outcome.traceback
    assert "ValueError: bad input 41" in outcome.traceback


def test_wrong_argument_names_give_a_traceback() -> None:
    outcome = runtime_for(lambda x: x).run({"args": {"y": 1}})
    assert not outcome.ok and "TypeError" in outcome.traceback


def test_args_that_are_not_an_object_give_a_traceback() -> None:
    outcome = runtime_for(lambda *a: a).run({"args": [1, 2]})
    assert not outcome.ok and "JSON object" in outcome.traceback


def test_non_json_output_without_pickling_fails_with_a_reason() -> None:
    outcome = runtime_for(lambda: {1, 2, 3}).run({"args": {}, "return_pickled": False})
    assert not outcome.ok and outcome.result is None
    assert "not JSON serializable" in outcome.traceback


def test_unpicklable_output_fails_with_a_reason() -> None:
    import threading

    outcome = runtime_for(threading.Lock).run({"args": {}, "return_pickled": True})
    assert not outcome.ok and "pickle" in outcome.traceback.lower()


def test_input_bytes_are_the_only_argument() -> None:
    outcome = runtime_for(lambda data: len(data)).run({"url": "http://x/y", "args": {"a": 1},
                                                      "return_pickled": False}, b"12345")
    assert outcome.ok and outcome.result == "5"


def test_memory_error_names_the_workers_limit() -> None:
    def hungry() -> None:
        raise MemoryError()

    outcome = Runtime(hungry, "512Mi").run({"args": {}})
    assert not outcome.ok and "MemoryError" in outcome.traceback
    assert "worker exceeded its memory limit of 512Mi" in outcome.traceback


def test_async_predict_fn() -> None:
    import asyncio

    async def predict(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    runtime = runtime_for(predict)
    assert runtime.is_async
    outcome = asyncio.run(runtime.run_async({"args": {"x": 4}, "return_pickled": False}))
    assert outcome.ok and outcome.result == "8"
    assert not runtime_for(lambda: 1).is_async


def test_serialise_json_result_is_a_json_string() -> None:
    assert serialise({"a": [1, 2.5, None, "é"]}, False).result == json.dumps({"a": [1, 2.5, None, "é"]})


# -- results pickled for the client that asked ------------------------------------------------------------


def test_results_use_the_standard_pickler_when_they_can() -> None:
    import pickle as std

    from launch.worker.runtime import pickled

    data = pickled({"a": [1, 2.5, "x"]}, 2)
    assert data[:2] == b"\x80\x02" and b"cloudpickle" not in data  # loadable with any cloudpickle, or none
    assert std.loads(data) == {"a": [1, 2.5, "x"]}


def test_results_only_cloudpickle_can_write_fall_back_to_it() -> None:
    import cloudpickle as cp

    from launch.worker.runtime import pickled

    value = cp.loads(pickled({"f": lambda v: v + 1}, 4))
    assert value["f"](1) == 2
    assert pickled(1, 99)[1] <= 5  # never above what this interpreter writes


def test_a_result_that_is_not_json_says_to_ask_for_a_pickle() -> None:
    import datetime

    from launch.worker.runtime import serialise

    outcome = serialise({"when": datetime.datetime(2026, 1, 1)}, return_pickled=False)
    assert not outcome.ok and "return_pickled=True" in (outcome.traceback or "")


# -- command bundles: a port someone else listens on -------------------------------------------------------------


def test_a_command_whose_port_is_taken_is_refused_before_it_starts(tmp_path: Path) -> None:
    import socket

    from launch.worker.command import CommandFailed, CommandServer, port_free

    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        assert not port_free(port)
        marker = tmp_path / "started"
        metadata = {"port": port, "predict_route": "/p", "healthcheck_route": "/h",
                    "command": [sys.executable, "-c", f"open({str(marker)!r}, 'w')"]}
        with pytest.raises(CommandFailed, match=f"port {port} is already in use"):
            CommandServer(metadata, tmp_path)
        assert not marker.exists()  # the command never ran
    assert port_free(port)
