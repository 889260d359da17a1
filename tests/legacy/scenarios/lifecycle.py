"""Endpoint lifecycle: GPUs on a GPU-less server (UPDATE_FAILED with a reason, stored cloud-only values),
edits, ``create_model_endpoint(update_if_exists=True)``, creation logs, duplicates and deletion."""

from __future__ import annotations

from typing import Any

from _common import NO_REQUIREMENTS, SMALL, api_error, client, emit, name, raw, wait_gone, wait_status

from launch import EndpointRequest
from launch.hooks import PostInferenceHooks


def version_one(x: int) -> dict[str, Any]:
    return {"version": 1, "x": x}


def version_two(x: int) -> dict[str, Any]:
    return {"version": 2, "x": x}


def gpu_endpoint(c: Any) -> dict[str, Any]:
    gpu = c.create_model_endpoint(name("gpu"), name("v1"), endpoint_type="async", gpus=1,
                                  gpu_type="nvidia-tesla-t4", post_inference_hooks=[PostInferenceHooks.INSIGHT],
                                  labels={"team": "ml"}, **SMALL)
    failed = wait_status(gpu)
    view = raw(c, f"endpoints/{name('gpu')}")
    logs = c.read_endpoint_creation_logs(name("gpu"))
    c.edit_model_endpoint(name("gpu"), gpus=0, gpu_type="nvidia-ampere-a10")  # back to CPU: retried
    recovered = wait_status(gpu, ("READY",))
    return {"status": failed, "reason": view["status_reason"], "logs": logs, "hooks": view["post_inference_hooks"],
            "labels": view["labels"], "resources": view["resource_settings"], "recovered": recovered,
            "resources_after": gpu.resource_settings()}


def main() -> dict[str, Any]:
    c = client()
    c.create_model_bundle(name("v1"), {}, predict_fn_or_cls=version_one, requirements=NO_REQUIREMENTS)
    c.create_model_bundle(name("v2"), {}, predict_fn_or_cls=version_two, requirements=NO_REQUIREMENTS)
    ep_name = name("sync")
    endpoint = c.create_model_endpoint(ep_name, name("v1"), **SMALL)
    wait_status(endpoint)
    before = endpoint.predict(EndpointRequest(args={"x": 1}, return_pickled=False)).result
    duplicate = api_error(c.create_model_endpoint, ep_name, name("v1"))
    c.edit_model_endpoint(ep_name, min_workers=2, max_workers=3)
    scaled = endpoint.worker_settings()
    c.edit_model_endpoint(endpoint.model_endpoint, post_inference_hooks=[PostInferenceHooks.INSIGHT])
    hooks = raw(c, f"endpoints/{ep_name}")["post_inference_hooks"]
    updated = c.create_model_endpoint(ep_name, name("v2"), update_if_exists=True, min_workers=1, max_workers=1,
                                      **SMALL)
    status_after_update = wait_status(endpoint, ("READY",))
    after = endpoint.predict(EndpointRequest(args={"x": 1}, return_pickled=False)).result
    bundle_after_update = c.get_model_endpoint(ep_name).model_endpoint.bundle_name
    logs = c.read_endpoint_creation_logs(endpoint.model_endpoint)
    in_use = api_error(c.delete_model_bundle, name("v2"))
    gpu = gpu_endpoint(c)
    deleted = [c.delete_model_endpoint(ep_name), c.delete_model_endpoint(name("gpu"))]
    gone = [wait_gone(c, ep_name), wait_gone(c, name("gpu"))]
    return {
        "before": before, "after": after, "duplicate": duplicate, "scaled": scaled, "hooks": hooks,
        "update_if_exists_returned": repr(updated), "status_after_update": status_after_update,
        "bundle_after_update": bundle_after_update,
        "logs": logs, "bundle_in_use": in_use, "gpu": gpu, "deleted": deleted, "gone": gone,
        "missing": repr(c.get_model_endpoint(name("never-created"))),
        "delete_missing": api_error(c.delete_model_endpoint, name("never-created")),
        "edit_missing": api_error(c.edit_model_endpoint, name("never-created"), cpus=2),
        "logs_missing": api_error(c.read_endpoint_creation_logs, name("never-created")),
        "bundles_deleted": [c.delete_model_bundle(name("v1")), c.delete_model_bundle(name("v2"))],
    }


if __name__ == "__main__":
    emit(main())
