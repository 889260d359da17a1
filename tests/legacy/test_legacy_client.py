"""Scale's own client, scale-launch 0.3.3, run unchanged against our server (only its base URL differs).

Each test runs one scenario script under .venv-legacy/bin/python (see conftest.py) and checks what the
client saw. The contract is shared/spec/legacy-api.md; section numbers below refer to it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import start_server
from tests.legacy.conftest import Legacy, input_digest

pytestmark = pytest.mark.e2e
ENV_PARAMS = {"framework_type": "pytorch", "pytorch_image_tag": "1.10.0-cuda11.3-cudnn8-runtime"}


def test_bundles_in_every_form_are_stored_and_served(legacy: Legacy) -> None:
    """§4.1/4.2 and steps 2-7: three callable forms, globals_copy, a zip from dirs; list/get/clone/delete."""
    out = legacy.run("bundles")
    names = out["names"]
    assert set(names.values()) <= set(out["listed"])
    for form in ("fn", "cls", "model", "load", "zip"):
        bundle = out["bundles"][names[form]]
        assert bundle["name"] == names[form] and bundle["bundle_id"]
        assert bundle["env_params"] == ENV_PARAMS
        assert bundle["location"].startswith("s3://launch/uploads/")
        assert bundle["requirements"] == []  # the zip's requirements file held only a comment and a blank
        assert bundle["packaging_type"] == ("zip" if form == "zip" else "cloudpickle")
    assert "def predict_fn" in out["bundles"][names["fn"]]["metadata"]["predict_fn_or_cls"]
    assert "class Scaler" in out["bundles"][names["cls"]]["metadata"]["predict_fn_or_cls"]
    assert set(out["bundles"][names["load"]]["metadata"]) == {"load_predict_fn", "load_model_fn"}
    assert out["bundles"][names["zip"]]["metadata"] == {"load_predict_fn_module_path": "legacy_pkg.mod.load_predict",
                                                      "load_model_fn_module_path": "legacy_pkg.mod.load_model"}
    served = out["served"]
    assert all(s["status"] == "READY" and s["state"] == "SUCCESS" for s in served.values()), served
    assert {k: json.loads(v["result"]) for k, v in served.items()} == {
        "fn": {"sum": 3}, "cls": {"scaled": 40}, "model": {"model": "given", "x": 5},
        "load": {"model": "loaded", "x": 6}, "glob": 21, "zip": "hello legacy (from a data file)",
    }
    assert out["clone"]["app_config"] == {"k": 2}
    assert out["clone"]["location"] == out["bundles"][names["fn"]]["location"]
    assert out["clone_plain"]["app_config"] is None
    assert out["duplicate"] == 409 and out["duplicate_clone"] == 409
    assert out["deleted"] == [True, True, True]
    assert out["get_deleted"] == 404 and out["delete_again"] == 404


def test_inferred_requirements_build_an_environment(legacy: Legacy) -> None:
    """Step 3 with ``requirements=None``: the client's inferred pins are installed with uv (needs PyPI)."""
    out = legacy.run("inferred_requirements", timeout=300)
    assert sorted(r.split("==")[0] for r in out["requirements"]) == ["cloudpickle", "pyyaml", "requests"]
    assert "cloudpickle==2.2.1" in out["requirements"]
    assert out["status"] == "READY", out["logs_tail"]
    assert out["state"] == "SUCCESS", out["traceback"]
    requests_pin = next(r for r in out["requirements"] if r.startswith("requests=="))
    assert json.loads(out["result"]) == requests_pin.split("==")[1]


def test_sync_endpoint(legacy: Legacy) -> None:
    """Steps 8, 9, 13, 14: settings views, JSON/pickled/url results and failures on a sync endpoint."""
    out = legacy.run("sync_endpoint")
    assert out["type"] == "SyncEndpoint" and out["fetched_type"] == "SyncEndpoint" and out["is_sync"]
    assert out["ready"] == "READY" and out["status"] == "READY"
    assert out["resource_settings"] == {"cpus": 3, "gpus": 0, "memory": "8Gi", "gpu_type": None, "storage": None}
    assert {k: out["worker_settings"][k] for k in ("min_workers", "max_workers", "per_worker")} == {
        "min_workers": 1, "max_workers": 2, "per_worker": 4}
    assert out["raw"]["labels"] == {"team": "x"} and out["raw"]["endpoint_type"] == "sync"
    assert out["json"]["status"] == "SUCCESS" and out["json"]["result_url"] is None
    assert json.loads(out["json"]["result"]) == {"double": 42, "extra": {"note": "hi"}}
    assert out["pickled"] == {"status": "SUCCESS", "result": None, "value": {"double": [1, 2, 1, 2], "extra": {}}}
    assert out["url"]["status"] == "SUCCESS"
    assert json.loads(out["url"]["result"]) == {"len": 5120, "sha256": input_digest()}
    assert out["url_wins"] == out["url"]["result"]  # §5.13: url wins over args
    assert out["failure"]["status"] == "FAILURE" and out["failure"]["result"] is None
    assert "ValueError: legacy boom" in out["failure"]["traceback"]
    assert out["bad_url"]["status"] == "FAILURE" and "404" in out["bad_url"]["traceback"]
    assert out["low_level"]["state"] == "SUCCESS" and "status" not in out["low_level"]


def test_async_endpoint(legacy: Legacy) -> None:
    """Steps 15-16: futures, deprecated calls, concurrent submissions; predict_batch fails client-side."""
    out = legacy.run("async_endpoint")
    assert out["type"] == "AsyncEndpoint" and out["fetched_async"] and out["listed_types"] == ["AsyncEndpoint"]
    futures = out["futures"]
    assert futures["json"] == {"status": "SUCCESS", "result": '{"square": 49}', "result_url": None, "traceback": None}
    assert futures["pickled"]["value"] == {"square": 64} and futures["pickled"]["result"] is None
    assert json.loads(futures["url"]["result"]) == {"len": 5120}
    assert futures["failure"]["status"] == "FAILURE" and "RuntimeError: async boom" in futures["failure"]["traceback"]
    deprecated = out["deprecated"]
    assert deprecated["first"] == "PENDING" and deprecated["warnings"] == ["DeprecatedWarning"]
    assert deprecated["last"]["state"] == "SUCCESS" and json.loads(deprecated["last"]["result"]) == {"square": 9}
    concurrent = out["concurrent"]
    assert concurrent["task_ids"] == 40 and concurrent["states"] == ["SUCCESS"]
    assert [json.loads(r)["square"] for r in concurrent["results"]] == [i * i for i in range(40)]
    assert out["predict_batch"].startswith("TypeError")


def test_endpoint_lifecycle(legacy: Legacy) -> None:
    """Steps 8, 11, 12, 20: GPU requests fail readably, edits, update_if_exists, logs, deletion."""
    out = legacy.run("lifecycle")
    assert json.loads(out["before"])["version"] == 1 and json.loads(out["after"])["version"] == 2
    assert out["update_if_exists_returned"] == "None" and out["status_after_update"] == "READY"
    assert out["bundle_after_update"] == f"{out['prefix']}-v2"
    assert out["duplicate"] == 409 and out["bundle_in_use"] == 409
    assert (out["scaled"]["min_workers"], out["scaled"]["max_workers"]) == (2, 3)
    assert out["hooks"] == ["insight"]
    assert "worker" in out["logs"] and "ready" in out["logs"]
    gpu = out["gpu"]
    assert gpu["status"] == "UPDATE_FAILED" and "no GPUs" in gpu["reason"]
    assert "no GPUs" in gpu["logs"]
    assert gpu["hooks"] == ["insight"] and gpu["labels"] == {"team": "ml"}
    assert gpu["resources"]["gpus"] == 1 and gpu["resources"]["gpu_type"] == "nvidia-tesla-t4"
    assert gpu["recovered"] == "READY"
    assert gpu["resources_after"]["gpus"] == 0 and gpu["resources_after"]["gpu_type"] is None
    assert out["deleted"] == [True, True] and out["gone"] == [True, True]
    assert out["missing"] == "None"
    assert out["delete_missing"] == out["edit_missing"] == out["logs_missing"] == 404
    assert out["bundles_deleted"] == [True, True]


def test_batch_jobs(legacy: Legacy) -> None:
    """Step 17: url and single-quoted ``args`` CSVs, polled to the end, results file checked."""
    out = legacy.run("batch")
    inputs = out["inputs"]
    assert inputs["first_status"] in ("PENDING", "RUNNING", "SUCCESS")
    final = inputs["final"]
    assert (final["status"], final["total"], final["done"], final["failed"]) == ("SUCCESS", 4, 3, 1)
    assert final["labels"] == {"a": "b"} and final["options"] == {"cpus": 2, "max_workers": 1}
    assert final["duration"]
    results = {r["id"]: r for r in inputs["results"]}
    assert [results[i]["result"] for i in ("0", "1", "2")] == [
        {"x": 1, "y": ""}, {"x": 2, "y": "a,b"}, {"x": 3, "y": out["tricky"]}]
    assert results["3"]["status"] == "FAILURE" and "ValueError: batch boom" in results["3"]["traceback"]
    urls = out["urls"]
    assert urls["final"]["status"] == "SUCCESS"
    assert [r["result"] for r in urls["results"]] == [{"len": 5120}, {"len": 6}]
    assert out["pickled"]["final"]["serialization_format"] == "pickle"
    assert out["pickled_values"] == [{"x": 5, "y": ""}]
    assert out["bad_format"] == 422 and out["missing_bundle"] == 404 and out["missing_job"] == 404


def test_self_hosted_mode(legacy: Legacy) -> None:
    """Step 18: registered location/upload functions and an auth decorator; no signed-URL routes used."""
    out = legacy.run("self_hosted")
    assert out["status"] == "READY" and json.loads(out["prediction"]) == {"plus_one": 42}
    assert out["configs"] == {"team_token": "t-123"} and out["max_workers"] == 2
    assert out["bundle_location"].startswith("s3://launch/uploads/")
    assert [r["result"] for r in out["job"]["results"]] == [{"plus_one": 2}, {"plus_one": 3}]
    assert out["job"]["options"] == {"team_token": "t-123"}
    assert [r["result"] for r in out["job_override"]["results"]] == [{"plus_one": 10}]
    assert out["uploads"] == 4
    assert not {"model_bundle_upload", "batch_task_input_upload"} & set(out["routes"])


def test_cli(legacy: Legacy) -> None:
    """Step 19: ``scale-launch`` with LAUNCH_API_KEY / LAUNCH_GATEWAY_ENDPOINT."""
    prefix = legacy.run("cli_setup")["prefix"]
    commands = {
        "bundles_list": ("bundles", "list"), "bundles_get": ("bundles", "get", f"{prefix}-b1"),
        "endpoints_list": ("endpoints", "list"), "logs": ("endpoints", "creation-logs", f"{prefix}-sync-ep"),
        "delete_endpoint": ("endpoints", "delete", f"{prefix}-async-ep"),
        "delete_bundle": ("bundles", "delete", f"{prefix}-b1-clone"),
    }
    runs = {label: legacy.cli(*args) for label, args in commands.items()}
    for label, proc in runs.items():
        assert proc.returncode == 0 and "Traceback" not in proc.stderr + proc.stdout, (label, proc.stderr)
    assert f"{prefix}-b1-clone" in runs["bundles_list"].stdout
    assert f"bundle_name: {prefix}-b1" in runs["bundles_get"].stdout
    assert "def predict" in runs["bundles_get"].stdout and "framework_type" in runs["bundles_get"].stdout
    assert f"{prefix}-sync-ep" in runs["endpoints_list"].stdout
    assert f"{prefix}-async-ep" in runs["endpoints_list"].stdout
    assert "ready" in runs["logs"].stdout
    assert runs["delete_endpoint"].stdout.strip() == "True" and runs["delete_bundle"].stdout.strip() == "True"
    assert f"{prefix}-b1-clone" not in legacy.cli("bundles", "list").stdout


def test_errors_the_client_expects(legacy: Legacy) -> None:
    """§1.6: a wrong key is APIError 401; other owners' objects are 404 (None from get_model_endpoint)."""
    out = legacy.run("errors")
    assert out["wrong_key"]["status"] == 401 and "invalid API key" in out["wrong_key"]["message"]
    other = out["other_owner"]
    assert other.pop("list_bundles") == [] and other.pop("list_endpoints") == []
    assert other.pop("get_endpoint") == "None"
    assert other.pop("same_name_allowed") is None and other.pop("own_delete") is True
    assert set(other.values()) == {404}, other
    assert out["bad_input"] == {
        "bad_bundle_name": 422, "missing_bundle": 404, "bad_memory": 422, "bad_type": 422, "gpu_without_type": 422,
        "reserved_name": 422, "sync_on_async": 422, "unknown_task": 404, "never_uploaded": 422,
    }
    assert out["still_mine"] == [f"{out['prefix']}-bundle", f"{out['prefix']}-sync"]


def test_sync_timeout_is_final_not_retried(legacy: Legacy, tmp_path: Path) -> None:
    """§1.5: a timed-out sync task answers 408 once; 504 would make the client run it three times."""
    slow_server = start_server(tmp_path / "data", env={"LAUNCH_SYNC_TIMEOUT_SECONDS": "1"})
    try:
        out = legacy.run("sync_timeout", server=slow_server, key=slow_server.key("alice"))
    finally:
        slow_server.stop()
    assert out["error"]["status"] == 408 and "did not finish within 1 s" in out["error"]["message"]
    assert out["elapsed"] < 2.5  # one attempt: no 1 s + 3 s + 9 s of retry sleeps
    assert out["quick"] == "0"


# Every public method of the client, and the scenario that drives it.
COVERED: dict[str, dict[str, Any]] = {
    "LaunchClient": {
        "async_request": "async_endpoint", "batch_async_request": "batch", "get_batch_async_response": "batch",
        "clone_model_bundle_with_changes": "bundles", "create_model_bundle": "bundles",
        "create_model_bundle_from_dirs": "bundles", "create_model_endpoint": "lifecycle",
        "delete_model_bundle": "bundles", "delete_model_endpoint": "lifecycle", "edit_model_endpoint": "lifecycle",
        "get_async_response": "async_endpoint", "get_model_bundle": "bundles", "get_model_endpoint": "lifecycle",
        "list_model_bundles": "bundles", "list_model_endpoints": "async_endpoint",
        "read_endpoint_creation_logs": "lifecycle", "register_batch_csv_location_fn": "self_hosted",
        "register_bundle_location_fn": "self_hosted", "register_endpoint_auth_decorator": "self_hosted",
        "register_upload_batch_csv_fn": "self_hosted", "register_upload_bundle_fn": "self_hosted",
    },
    "model_endpoint": {
        "AsyncEndpoint": {"predict": "async_endpoint", "predict_batch": "async_endpoint (TypeError in 0.3.3)"},
        "Endpoint": {"resource_settings": "sync_endpoint", "status": "sync_endpoint",
                     "worker_settings": "sync_endpoint"},
        "EndpointRequest": {}, "EndpointResponse": {}, "EndpointResponseFuture": {"get": "async_endpoint"},
        "ModelEndpoint": {"to_dict": "client-side only", "to_json": "client-side only"},
        "SyncEndpoint": {"predict": "sync_endpoint"},
    },
}


def test_every_public_method_is_covered(legacy: Legacy) -> None:
    out = legacy.run("surface", timeout=60)
    assert out["LaunchClient"] == sorted(COVERED["LaunchClient"])
    assert out["model_endpoint"] == {cls: sorted(methods) for cls, methods in COVERED["model_endpoint"].items()}
