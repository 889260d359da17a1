"""A sync endpoint: settings views, JSON and pickled results, url inputs, failures with tracebacks."""

from __future__ import annotations

import hashlib
from typing import Any

from _common import FILES, NO_REQUIREMENTS, client, emit, name, raw, unpickle_url, wait_status

from launch import EndpointRequest, SyncEndpoint


def predict(x: Any = None, data: bytes | None = None, **kwargs: Any) -> Any:
    """``url`` inputs arrive as one positional argument (bytes); ``args`` as keywords."""
    if isinstance(x, bytes):
        return {"len": len(x), "sha256": hashlib.sha256(x).hexdigest()}
    if x == "boom":
        raise ValueError("legacy boom")
    return {"double": x * 2, "extra": kwargs}


def main() -> dict[str, Any]:
    c = client()
    bundle, ep_name = name("bundle"), name("sync")
    c.create_model_bundle(bundle, {"framework_type": "pytorch"}, predict_fn_or_cls=predict,
                          requirements=NO_REQUIREMENTS)
    endpoint = c.create_model_endpoint(ep_name, bundle, endpoint_type="sync", labels={"team": "x"},
                                       min_workers=1, max_workers=2, per_worker=4)
    initial = endpoint.model_endpoint.status
    ready = wait_status(endpoint)
    fetched = c.get_model_endpoint(ep_name)
    as_json = endpoint.predict(EndpointRequest(args={"x": 21, "note": "hi"}, return_pickled=False))
    pickled = endpoint.predict(EndpointRequest(args={"x": [1, 2]}))
    from_url = endpoint.predict(EndpointRequest(url=f"{FILES}/input.bin", return_pickled=False))
    url_wins = endpoint.predict(EndpointRequest(url=f"{FILES}/input.bin", args={"x": 1}, return_pickled=False))
    failure = endpoint.predict(EndpointRequest(args={"x": "boom"}, return_pickled=False))
    bad_url = endpoint.predict(EndpointRequest(url=f"{FILES}/missing.bin", return_pickled=False))
    low_level = c._sync_request(ep_name, args={"x": 1}, return_pickled=False)
    return {
        "type": type(endpoint).__name__, "str": str(endpoint), "repr": repr(fetched),
        "initial_status": initial, "ready": ready,
        "fetched_type": type(fetched).__name__, "is_sync": isinstance(fetched, SyncEndpoint),
        "status": endpoint.status(), "resource_settings": endpoint.resource_settings(),
        "worker_settings": endpoint.worker_settings(),
        "raw": raw(c, f"endpoints/{ep_name}"),
        "json": {"status": as_json.status, "result": as_json.result, "result_url": as_json.result_url,
                 "str": str(as_json)},
        "pickled": {"status": pickled.status, "result": pickled.result, "value": unpickle_url(pickled.result_url)},
        "url": {"status": from_url.status, "result": from_url.result},
        "url_wins": url_wins.result,
        "failure": {"status": failure.status, "traceback": failure.traceback, "result": failure.result},
        "bad_url": {"status": bad_url.status, "traceback": bad_url.traceback},
        "low_level": low_level,
    }


if __name__ == "__main__":
    emit(main())
