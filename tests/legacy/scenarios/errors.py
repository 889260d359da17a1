"""Errors the 0.3.3 client expects: a wrong key gives APIError 401; another owner's bundles, endpoints,
tasks and batch jobs are invisible (404, or None from ``get_model_endpoint``); bad input gives a 4xx."""

from __future__ import annotations

from typing import Any

from _common import NO_REQUIREMENTS, OTHER_KEY, SMALL, api_error, client, emit, name, wait_batch, wait_status

from launch import EndpointRequest, SyncEndpoint
from launch.errors import APIError
from launch.model_endpoint import ModelEndpoint


def predict(x: int) -> int:
    return x


def wrong_key() -> dict[str, Any]:
    bad = client("lk_not-a-real-key")
    try:
        bad.list_model_bundles()
    except APIError as exc:
        return {"status": exc.status_code, "message": str(exc)}
    return {"status": None}


def other_owner(bundle: str, endpoint: str, task_id: str, job_id: str) -> dict[str, Any]:
    bob = client(OTHER_KEY)
    stranger = SyncEndpoint(ModelEndpoint(name=endpoint), client=bob)
    return {
        "list_bundles": [b.name for b in bob.list_model_bundles() if b.name.startswith(name(""))],
        "list_endpoints": [e.model_endpoint.name for e in bob.list_model_endpoints()
                           if e.model_endpoint.name.startswith(name(""))],
        "get_bundle": api_error(bob.get_model_bundle, bundle),
        "delete_bundle": api_error(bob.delete_model_bundle, bundle),
        "clone_bundle": api_error(bob.clone_model_bundle_with_changes, bundle, name("stolen")),
        "get_endpoint": repr(bob.get_model_endpoint(endpoint)),
        "status": api_error(stranger.status),
        "edit_endpoint": api_error(bob.edit_model_endpoint, endpoint, max_workers=2),
        "delete_endpoint": api_error(bob.delete_model_endpoint, endpoint),
        "creation_logs": api_error(bob.read_endpoint_creation_logs, endpoint),
        "predict": api_error(stranger.predict, EndpointRequest(args={"x": 1})),
        "async_request": api_error(bob._async_request, endpoint, args={"x": 1}),
        "task": api_error(bob.get_async_response, task_id),
        "endpoint_task": api_error(bob._get_async_endpoint_response, endpoint, task_id),
        "batch_job": api_error(bob.get_batch_async_response, job_id),
        "batch_on_bundle": api_error(bob.batch_async_request, bundle, inputs=[{"x": 1}]),
        "endpoint_on_bundle": api_error(bob.create_model_endpoint, name("bob-ep"), bundle),
        "same_name_allowed": api_error(bob.create_model_bundle, bundle, {}, predict_fn_or_cls=predict,
                                       requirements=NO_REQUIREMENTS),
        "own_delete": bob.delete_model_bundle(bundle),
    }


def bad_input(c: Any, bundle: str, async_name: str) -> dict[str, Any]:
    sync_on_async = SyncEndpoint(ModelEndpoint(name=async_name), client=c)
    return {
        "bad_bundle_name": api_error(c.create_model_bundle, "bad name!", {}, predict_fn_or_cls=predict,
                                     requirements=NO_REQUIREMENTS),
        "missing_bundle": api_error(c.create_model_endpoint, name("ep-x"), name("no-such-bundle")),
        "bad_memory": api_error(c.create_model_endpoint, name("ep-y"), bundle, memory="lots"),
        "bad_type": api_error(c.create_model_endpoint, name("ep-z"), bundle, endpoint_type="streaming"),
        "gpu_without_type": api_error(c.edit_model_endpoint, async_name, gpus=1),
        "reserved_name": api_error(c.create_model_endpoint, "creation_logs", bundle),
        "sync_on_async": api_error(sync_on_async.predict, EndpointRequest(args={"x": 1})),
        "unknown_task": api_error(c.get_async_response, "no-such-task"),
        "never_uploaded": api_error(c.connection.post, {"bundle_name": name("ghost"), "location":
                                    "s3://launch/uploads/nobody/bundles/x", "packaging_type": "cloudpickle",
                                    "bundle_metadata": {}, "requirements": [], "env_params": {}}, "model_bundle"),
    }


def main() -> dict[str, Any]:
    c = client()
    bundle, endpoint, async_name = name("bundle"), name("sync"), name("async")
    c.create_model_bundle(bundle, {}, predict_fn_or_cls=predict, requirements=NO_REQUIREMENTS)
    wait_status(c.create_model_endpoint(endpoint, bundle, **SMALL))
    async_endpoint = c.create_model_endpoint(async_name, bundle, endpoint_type="async", **SMALL)
    wait_status(async_endpoint)
    task_id = async_endpoint.predict(EndpointRequest(args={"x": 1})).async_task_id
    job_id = c.batch_async_request(bundle, inputs=[{"x": 1}])
    wait_batch(c, job_id)
    return {
        "wrong_key": wrong_key(),
        "other_owner": other_owner(bundle, endpoint, task_id, job_id),
        "bad_input": bad_input(c, bundle, async_name),
        "still_mine": [c.get_model_bundle(bundle).name, c.get_model_endpoint(endpoint).model_endpoint.name],
        "cleanup": [c.delete_model_endpoint(endpoint), c.delete_model_endpoint(async_name)],
    }


if __name__ == "__main__":
    emit(main())
