"""An async endpoint: futures (PENDING, then SUCCESS or FAILURE), pickled and url results, the deprecated
``async_request``/``get_async_response``, concurrent submissions from threads, and ``predict_batch`` (which
0.3.3 breaks client-side)."""

from __future__ import annotations

import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from _common import FILES, NO_REQUIREMENTS, SMALL, client, emit, name, unpickle_url, wait_status

from launch import AsyncEndpoint, EndpointRequest


def predict(x: Any = None, delay: float = 0.0) -> Any:
    if isinstance(x, bytes):
        return {"len": len(x)}
    time.sleep(delay)
    if x == "boom":
        raise RuntimeError("async boom")
    return {"square": x * x}


def response_dict(response: Any) -> dict[str, Any]:
    return {"status": response.status, "result": response.result, "result_url": response.result_url,
            "traceback": response.traceback}


def deprecated_path(c: Any, ep_name: str) -> dict[str, Any]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        task_id = c.async_request(ep_name, args={"x": 3, "delay": 1.0}, return_pickled=False)
        states = [c.get_async_response(task_id)]
        while states[-1]["state"] == "PENDING":
            time.sleep(0.2)
            states.append(c.get_async_response(task_id))
    return {"task_id": task_id, "first": states[0]["state"], "last": states[-1],
            "warnings": sorted({type(w.message).__name__ for w in caught})}


def concurrent_submissions(endpoint: AsyncEndpoint, count: int = 40) -> dict[str, Any]:
    """What ``predict_batch`` meant to do (submit from many threads, then collect), done by the user."""
    with ThreadPoolExecutor(max_workers=16) as pool:
        futures = list(pool.map(lambda i: endpoint.predict(EndpointRequest(args={"x": i}, return_pickled=False)),
                                range(count)))
        responses = list(pool.map(lambda f: f.get(), futures))
    return {"task_ids": len({f.async_task_id for f in futures}),
            "results": [r.result for r in responses], "states": sorted({r.status for r in responses})}


def predict_batch_error(endpoint: AsyncEndpoint) -> str | None:
    try:
        endpoint.predict_batch([EndpointRequest(args={"x": 1})])
    except TypeError as exc:
        return f"TypeError: {exc}"
    return None


def main() -> dict[str, Any]:
    c = client()
    bundle, ep_name = name("bundle"), name("async")
    c.create_model_bundle(bundle, {}, predict_fn_or_cls=predict, requirements=NO_REQUIREMENTS)
    endpoint = c.create_model_endpoint(ep_name, bundle, endpoint_type="async", max_workers=2, **SMALL)
    ready = wait_status(endpoint)
    futures = {
        "json": endpoint.predict(EndpointRequest(args={"x": 7}, return_pickled=False)),
        "pickled": endpoint.predict(EndpointRequest(args={"x": 8})),
        "url": endpoint.predict(EndpointRequest(url=f"{FILES}/input.bin", return_pickled=False)),
        "failure": endpoint.predict(EndpointRequest(args={"x": "boom"})),
    }
    with ThreadPoolExecutor(max_workers=len(futures)) as pool:
        results = dict(zip(futures, pool.map(lambda f: response_dict(f.get()), futures.values()), strict=True))
    results["pickled"]["value"] = unpickle_url(results["pickled"]["result_url"])
    fetched = c.get_model_endpoint(ep_name)
    return {
        "type": type(endpoint).__name__, "ready": ready, "fetched_async": isinstance(fetched, AsyncEndpoint),
        "str": str(endpoint), "futures": results,
        "deprecated": deprecated_path(c, ep_name),
        "concurrent": concurrent_submissions(endpoint),
        "predict_batch": predict_batch_error(endpoint),
        "listed_types": [type(e).__name__ for e in c.list_model_endpoints() if e.model_endpoint.name == ep_name],
    }


if __name__ == "__main__":
    emit(main())
