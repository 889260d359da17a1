"""Self-hosted mode: ``self_hosted=True`` with registered location/upload functions that use our native
upload URL flow (so the signed-URL routes of the legacy API are never called), ``bundle_url`` and
``batch_url_file_location`` overrides, and an endpoint auth decorator that adds a field to every payload."""

from __future__ import annotations

import json
from typing import Any

import requests
from _common import KEY, NO_REQUIREMENTS, SERVER, SMALL, client, download, emit, name, raw, wait_batch, wait_status

from launch import EndpointRequest


def predict(x: int) -> dict[str, int]:
    return {"plus_one": x + 1}


class NativeUploads:
    """Locations from ``POST /v1/uploads``; the upload function PUTs to the URL issued with each location."""

    def __init__(self) -> None:
        self.urls: dict[str, str] = {}
        self.uploaded: list[str] = []

    def location(self, kind: str = "bundles") -> str:
        response = requests.post(f"{SERVER}/v1/uploads", params={"kind": kind}, auth=(KEY, ""), timeout=30)
        response.raise_for_status()
        ticket = response.json()
        self.urls[ticket["location"]] = ticket["upload_url"]
        return str(ticket["location"])

    def upload(self, data: bytes | str, location: str) -> None:
        requests.put(self.urls[location], data=data.encode() if isinstance(data, str) else data,
                     timeout=30).raise_for_status()
        self.uploaded.append(location)


def add_auth_field(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "team_token": "t-123"}


def main() -> dict[str, Any]:
    c = client(self_hosted=True)
    uploads = NativeUploads()
    c.register_bundle_location_fn(uploads.location)
    c.register_upload_bundle_fn(uploads.upload)
    c.register_batch_csv_location_fn(lambda: uploads.location("batch-inputs"))
    c.register_upload_batch_csv_fn(uploads.upload)
    c.register_endpoint_auth_decorator(add_auth_field)
    routes: list[str] = []
    make_request = c.connection.make_request
    c.connection.make_request = lambda payload, route, **kw: routes.append(route) or make_request(payload, route, **kw)

    c.create_model_bundle(name("bundle"), {}, predict_fn_or_cls=predict, requirements=NO_REQUIREMENTS)
    c.create_model_bundle(name("bundle2"), {}, predict_fn_or_cls=predict, requirements=NO_REQUIREMENTS,
                          bundle_url=uploads.location())
    endpoint = c.create_model_endpoint(name("sync"), name("bundle"), **SMALL)
    status = wait_status(endpoint)
    prediction = endpoint.predict(EndpointRequest(args={"x": 41}, return_pickled=False))
    c.edit_model_endpoint(name("sync"), max_workers=2)
    view = raw(c, f"endpoints/{name('sync')}")
    job = wait_batch(c, c.batch_async_request(name("bundle2"), inputs=[{"x": 1}, {"x": 2}]))
    job_override = wait_batch(c, c.batch_async_request(name("bundle"), inputs=[{"x": 9}],
                                                       batch_url_file_location=uploads.location("batch-inputs")))
    c.delete_model_endpoint(name("sync"))
    return {
        "status": status, "prediction": prediction.result, "configs": view["configs"],
        "max_workers": view["worker_settings"]["max_workers"],
        "bundle_location": c.get_model_bundle(name("bundle")).location,
        "job": {**job, "results": json.loads(download(job["result"]))},
        "job_override": {**job_override, "results": json.loads(download(job_override["result"]))},
        "uploads": len(uploads.uploaded), "routes": routes,
    }


if __name__ == "__main__":
    emit(main())
