"""Model bundles end to end: the three pickled forms, zip bundles from directories, app_config, list, get,
clone, delete, and the errors a user can hit."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from launch import APIError, EndpointRequest, LaunchClient, ModelBundle
from tests.e2e import models
from tests.e2e.helpers import deployed, unique, wait_status

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def predict_json(endpoint: Any, **args: Any) -> Any:
    response = endpoint.predict(EndpointRequest(args=args, return_pickled=False))
    assert response.status == "SUCCESS", response.traceback
    return json.loads(response.result)


def test_predict_fn_form_and_bundle_record(alice: LaunchClient) -> None:
    name = unique("fn-bundle")
    bundle = alice.create_model_bundle(name, {"framework_type": "custom"}, predict_fn_or_cls=models.toolbox,
                                       requirements=[])
    assert isinstance(bundle, ModelBundle)
    assert bundle.name == name and bundle.bundle_id
    assert bundle.packaging_type == "cloudpickle"
    assert bundle.requirements == []
    assert bundle.env_params == {"framework_type": "custom"}
    assert bundle.location and bundle.location.startswith("s3://")
    assert "def toolbox" in bundle.metadata["predict_fn_or_cls"]
    assert bundle.app_config is None
    fetched = alice.get_model_bundle(name)
    assert fetched == bundle
    assert alice.get_model_bundle(bundle) == bundle  # by ModelBundle too


def test_duplicate_bundle_name_is_409(alice: LaunchClient) -> None:
    name = unique("dup-bundle")
    alice.create_model_bundle(name, {}, predict_fn_or_cls=models.toolbox)
    with pytest.raises(APIError) as caught:
        alice.create_model_bundle(name, {}, predict_fn_or_cls=models.toolbox)
    assert caught.value.status_code == 409
    assert name in caught.value.detail


def test_list_get_clone_delete(alice: LaunchClient) -> None:
    name = unique("lifecycle-bundle")
    alice.create_model_bundle(name, {}, load_predict_fn=models.load_model_with_config,
                              load_model_fn=models.load_counting_model, app_config={"mode": "one"})
    clone_name = unique("lifecycle-clone")
    clone = alice.clone_model_bundle_with_changes(name, clone_name, app_config={"mode": "two"})
    assert clone.name == clone_name and clone.app_config == {"mode": "two"}
    assert clone.bundle_id != alice.get_model_bundle(name).bundle_id
    assert clone.metadata == alice.get_model_bundle(name).metadata
    cleared = alice.clone_model_bundle_with_changes(name, unique("cleared"))
    assert cleared.app_config is None
    names = [b.name for b in alice.list_model_bundles()]
    assert {name, clone_name, cleared.name} <= set(names)
    assert names.index(name) < names.index(clone_name)  # oldest first

    assert alice.delete_model_bundle(name) is True
    assert name not in [b.name for b in alice.list_model_bundles()]
    with pytest.raises(APIError) as caught:
        alice.get_model_bundle(name)
    assert caught.value.status_code == 404
    # the clone shares the uploaded code: deleting the original must not break it
    assert alice.get_model_bundle(clone_name).location == clone.location
    with pytest.raises(APIError) as caught:
        alice.clone_model_bundle_with_changes(name, unique("from-deleted"))
    assert caught.value.status_code == 404


def test_clone_to_a_taken_name_is_409(alice: LaunchClient) -> None:
    first, second = unique("c1"), unique("c2")
    for name in (first, second):
        alice.create_model_bundle(name, {}, predict_fn_or_cls=models.toolbox)
    with pytest.raises(APIError) as caught:
        alice.clone_model_bundle_with_changes(first, second)
    assert caught.value.status_code == 409


def test_bundle_in_use_cannot_be_deleted(alice: LaunchClient, toolbox_bundle: Any, sync_toolbox: Any) -> None:
    with pytest.raises(APIError) as caught:
        alice.delete_model_bundle(toolbox_bundle)
    assert caught.value.status_code == 409
    assert "used by endpoint" in caught.value.detail
    assert alice.get_model_bundle(toolbox_bundle).bundle_id == toolbox_bundle.bundle_id


def make_package(root: Path) -> tuple[str, Path]:
    """A directory holding a package with a loader that reads a data file next to it."""
    package = unique("e2e_zip_pkg").replace("-", "_")
    code = root / "code"
    (code / package / "weights").mkdir(parents=True)
    (code / package / "__init__.py").write_text("")
    (code / package / "weights" / "w.txt").write_text("5")
    (code / package / "model.py").write_text(textwrap.dedent("""
        from pathlib import Path

        def load_model():
            return int((Path(__file__).parent / "weights" / "w.txt").read_text())

        def load_predict(model):
            def predict(x):
                return {"y": model * x, "kind": "zip"}
            return predict
    """))
    requirements = root / "requirements.txt"
    requirements.write_text("# satisfied by the server's own environment\n\ncloudpickle\n  httpx  \n")
    return package, code


@pytest.fixture(scope="module")
def bundles_of_every_form(alice: LaunchClient, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    package, code = make_package(tmp_path_factory.mktemp("zip-bundle"))
    zipped = alice.create_model_bundle_from_dirs(
        unique("zip-bundle"), [str(code / package)], str(code.parent / "requirements.txt"), {},
        load_predict_fn_module_path=f"{package}.model.load_predict",
        load_model_fn_module_path=f"{package}.model.load_model",
    )
    return {
        "function": alice.create_model_bundle(unique("fn"), {}, predict_fn_or_cls=models.toolbox),
        "instance": alice.create_model_bundle(unique("instance"), {}, predict_fn_or_cls=models.Scaler(7)),
        "model": alice.create_model_bundle(unique("model"), {}, load_predict_fn=models.load_linear_predict,
                                           model={"w": 10, "b": 1}),
        "loaders": alice.create_model_bundle(unique("loaders"), {}, load_predict_fn=models.load_counting_predict,
                                             load_model_fn=models.load_counting_model, requirements=[]),
        "zip": zipped,
    }


@pytest.fixture(scope="module")
def served(alice: LaunchClient, bundles_of_every_form: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """One READY sync endpoint per bundle form (created together so their workers start in parallel)."""
    endpoints: dict[str, Any] = {}
    try:
        for form, bundle in bundles_of_every_form.items():
            endpoints[form] = alice.create_model_endpoint(unique(f"form-{form}"), bundle, cpus=1, memory="512Mi",
                                                          per_worker=2)
        for endpoint in endpoints.values():
            wait_status(endpoint, "READY")
        yield endpoints
    finally:
        for endpoint in endpoints.values():
            alice.delete_model_endpoint(endpoint)


def test_function_form_serves(served: dict[str, Any]) -> None:
    assert predict_json(served["function"], x=21) == {"y": 42}


def test_callable_instance_form_serves(served: dict[str, Any]) -> None:
    assert predict_json(served["instance"], x=3) == {"y": 21, "kind": "callable-instance"}


def test_wrong_argument_names_are_a_failure_with_traceback(served: dict[str, Any]) -> None:
    response = served["instance"].predict(EndpointRequest(args={"y": 3}, return_pickled=False))
    assert response.status == "FAILURE"
    assert "TypeError" in response.traceback and "'y'" in response.traceback


def test_load_predict_fn_with_model_form_serves(served: dict[str, Any]) -> None:
    assert predict_json(served["model"], x=4) == {"y": 41, "kind": "model"}


def test_load_model_fn_runs_once_per_worker(served: dict[str, Any]) -> None:
    results = [predict_json(served["loaders"], x=i) for i in range(12)]
    assert [r["y"] for r in results] == [3 * i for i in range(12)]
    assert {r["pid"] for r in results} == {results[0]["loaded_in_pid"]}  # one worker, the one that loaded
    assert all(r["model_loads"] == 1 and r["predict_loads"] == 1 for r in results), results[-1]


def test_zip_bundle_from_dirs_serves(served: dict[str, Any], bundles_of_every_form: dict[str, Any]) -> None:
    bundle = bundles_of_every_form["zip"]
    assert bundle.packaging_type == "zip"
    assert bundle.requirements == ["cloudpickle", "httpx"]  # comments and blank lines dropped
    assert predict_json(served["zip"], x=3) == {"y": 15, "kind": "zip"}


def test_documented_app_config_convention(alice: LaunchClient) -> None:
    """scale-launch's documented form: ``load_model_fn(app_config)`` and ``load_predict_fn(app_config, model)``;
    a clone with another app_config serves differently from the same code."""
    bundle = alice.create_model_bundle(unique("config"), {}, load_predict_fn=models.load_predict_with_config,
                                       load_model_fn=models.load_model_with_config,
                                       app_config={"mode": "single", "scale": 2})
    assert bundle.app_config == {"mode": "single", "scale": 2}
    clone = alice.clone_model_bundle_with_changes(bundle, unique("config-clone"),
                                                  app_config={"mode": "batched", "scale": 5})
    with deployed(alice, bundle) as original, deployed(alice, clone) as cloned:
        assert predict_json(original, x=3) == {"y": 6, "mode": "single"}
        assert predict_json(cloned, x=3) == {"y": 15, "mode": "batched"}


def test_app_config_from_yaml_file(alice: LaunchClient, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("mode: from-yaml\nscale: 4\nnested:\n  - 1\n  - 2\n")
    bundle = alice.create_model_bundle(unique("yaml"), {}, predict_fn_or_cls=models.toolbox,
                                       app_config=str(config))
    assert bundle.app_config == {"mode": "from-yaml", "scale": 4, "nested": [1, 2]}
