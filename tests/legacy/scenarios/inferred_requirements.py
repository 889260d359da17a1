"""``create_model_bundle`` without ``requirements``: the client infers pins from its own imports (requests,
pyyaml, cloudpickle) and the server builds that environment with uv before the endpoint becomes READY."""

from __future__ import annotations

from typing import Any

from _common import SMALL, client, emit, name, wait_status

from launch import EndpointRequest


def versions(package: str) -> str:
    from importlib.metadata import version  # imported in the worker, inside the bundle's environment

    return version(package)


def main() -> dict[str, Any]:
    c = client()
    c.create_model_bundle(name("inferred"), {}, predict_fn_or_cls=versions)
    endpoint = c.create_model_endpoint(name("inferred"), name("inferred"), **SMALL)
    status = wait_status(endpoint, timeout=240)
    response = endpoint.predict(EndpointRequest(args={"package": "requests"}, return_pickled=False))
    c.delete_model_endpoint(name("inferred"))
    return {"requirements": c.get_model_bundle(name("inferred")).requirements, "status": status,
            "state": response.status, "result": response.result, "traceback": response.traceback,
            "logs_tail": c.read_endpoint_creation_logs(name("inferred"))[-2000:]}


if __name__ == "__main__":
    emit(main())
