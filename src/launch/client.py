"""``LaunchClient``: bundles, endpoints, tasks and batch jobs, with the methods and signatures of the
scale-launch 0.3.3 client, speaking Launch's native /v1 API."""

from __future__ import annotations

import inspect
import io
import json
import os
import pickle
import sys
import zipfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import cloudpickle

from launch import _streams
from launch._transport import Transport
from launch.errors import APIError, LaunchClientError
from launch.model_bundle import ModelBundle
from launch.model_endpoint import AsyncEndpoint, Endpoint, ModelEndpoint, StreamingEndpoint, SyncEndpoint

LaunchModel_T = TypeVar("LaunchModel_T")
DEFAULT_ENDPOINT = "http://127.0.0.1:8000"


def _name(obj: ModelBundle | ModelEndpoint | Endpoint | str) -> str:
    if isinstance(obj, str):
        return obj
    if isinstance(obj, Endpoint):
        return obj.model_endpoint.name
    return obj.name


def _source(obj: Any) -> str:
    try:
        return inspect.getsource(obj if inspect.isfunction(obj) or inspect.isclass(obj) else type(obj))
    except (OSError, TypeError):
        return ""


def _app_config(app_config: dict[str, Any] | str | None) -> Any:
    if isinstance(app_config, str):
        import yaml  # type: ignore[import-untyped,unused-ignore]

        with open(app_config) as handle:
            return yaml.safe_load(handle)
    return app_config


def _schema(model: Any, which: str) -> dict[str, Any] | None:
    """A JSON Schema from a pydantic model class (``model_json_schema``), or a schema given as a dict."""
    if model is None or isinstance(model, dict):
        return model
    to_schema = getattr(model, "model_json_schema", None) or getattr(model, "schema", None)
    if to_schema is None:
        raise TypeError(f"{which} must be a pydantic model class or a JSON Schema dict, not {model!r}")
    return dict(to_schema())


def _pickler() -> dict[str, str]:
    """What pickled a bundle: the server builds its environment with the same cloudpickle and Python minor."""
    return {"cloudpickle_version": cloudpickle.__version__,
            "python_version": f"{sys.version_info[0]}.{sys.version_info[1]}"}


AnyEndpoint = SyncEndpoint | AsyncEndpoint | StreamingEndpoint
ENDPOINT_TYPES = ("sync", "async", "streaming")


def _endpoint_object(record: dict[str, Any], client: LaunchClient) -> AnyEndpoint:
    model_endpoint = ModelEndpoint.from_dict(record)
    if record["endpoint_type"] == "async":
        return AsyncEndpoint(model_endpoint, client)
    if record["endpoint_type"] == "sync":
        return SyncEndpoint(model_endpoint, client)
    if record["endpoint_type"] == "streaming":
        return StreamingEndpoint(model_endpoint, client)
    raise ValueError("Endpoint should be one of the types 'sync', 'async' or 'streaming'")


class LaunchClient:
    """Client of a Launch server.

    ``api_key`` and ``endpoint`` default to the ``LAUNCH_API_KEY`` and ``LAUNCH_ENDPOINT`` environment
    variables (then ``http://127.0.0.1:8000``).
    """

    def __init__(self, api_key: str | None = None, endpoint: str | None = None, self_hosted: bool = False) -> None:
        api_key = api_key or os.environ.get("LAUNCH_API_KEY")
        if not api_key:
            raise ValueError("an API key is required: pass api_key= or set LAUNCH_API_KEY")
        self.endpoint = (endpoint or os.environ.get("LAUNCH_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
        self.connection = Transport(self.endpoint, api_key)
        self.self_hosted = self_hosted
        self.upload_bundle_fn: Callable[[bytes, str], None] | None = None
        self.upload_batch_csv_fn: Callable[[str, str], None] | None = None
        self.bundle_location_fn: Callable[[], str] | None = None
        self.batch_csv_location_fn: Callable[[], str] | None = None
        self.endpoint_auth_decorator_fn: Callable[[dict[str, Any]], dict[str, Any]] = lambda x: x

    def __repr__(self) -> str:
        return f"LaunchClient(endpoint='{self.endpoint}')"

    # -- self-hosted hooks (as in scale-launch 0.3.3) ------------------------------------------------
    def register_upload_bundle_fn(self, upload_bundle_fn: Callable[[bytes, str], None]) -> None:
        """Self-hosted mode: ``fn(serialized_bundle, location)`` uploads a bundle instead of the server."""
        self.upload_bundle_fn = upload_bundle_fn

    def register_upload_batch_csv_fn(self, upload_batch_csv_fn: Callable[[str, str], None]) -> None:
        """Self-hosted mode: ``fn(csv_text, location)`` uploads a batch input file."""
        self.upload_batch_csv_fn = upload_batch_csv_fn

    def register_bundle_location_fn(self, bundle_location_fn: Callable[[], str]) -> None:
        """Self-hosted mode: ``fn()`` returns the location a new bundle is uploaded to."""
        self.bundle_location_fn = bundle_location_fn

    def register_batch_csv_location_fn(self, batch_csv_location_fn: Callable[[], str]) -> None:
        """Self-hosted mode: ``fn()`` returns the location a batch input file is uploaded to."""
        self.batch_csv_location_fn = batch_csv_location_fn

    def register_endpoint_auth_decorator(self, endpoint_auth_decorator_fn: Callable[[dict], dict]) -> None:
        """``fn(payload) -> payload`` rewrites endpoint and batch job requests (e.g. to add fields)."""
        self.endpoint_auth_decorator_fn = endpoint_auth_decorator_fn

    # -- bundles ---------------------------------------------------------------------------------------
    def _upload(self, data: bytes, location: str | None) -> str:
        if self.self_hosted:
            location = location or (self.bundle_location_fn() if self.bundle_location_fn else None)
            if self.upload_bundle_fn is None or location is None:
                raise ValueError("self-hosted mode needs upload_bundle_fn and a bundle location (fn or bundle_url)")
            self.upload_bundle_fn(data, location)
            return location
        ticket = self.connection.request("POST", "/v1/uploads")
        self.connection.put_bytes(ticket["upload_url"], data)
        return str(ticket["location"])

    def _create_bundle(self, payload: dict[str, Any]) -> ModelBundle:
        return ModelBundle.from_dict(self.connection.request("POST", "/v1/model-bundles", json=payload))

    def create_model_bundle(
        self,
        model_bundle_name: str,
        env_params: dict[str, str],
        *,
        load_predict_fn: Callable[[LaunchModel_T], Callable[[Any], Any]] | None = None,
        predict_fn_or_cls: Callable[[Any], Any] | None = None,
        requirements: list[str] | None = None,
        model: LaunchModel_T | None = None,
        load_model_fn: Callable[[], LaunchModel_T] | None = None,
        bundle_url: str | None = None,
        app_config: dict[str, Any] | str | None = None,
        globals_copy: dict[str, Any] | None = None,
        request_schema: Any = None,
        response_schema: Any = None,
    ) -> ModelBundle:
        """Upload and register a bundle made of exactly one of: ``predict_fn_or_cls``;
        ``load_predict_fn`` + ``model``; ``load_predict_fn`` + ``load_model_fn``.

        Workers call ``load_model_fn()`` (or take ``model``), then ``load_predict_fn(model)``, once, and serve
        ``predict_fn(**args)`` (or ``predict_fn(bytes)`` for ``url`` inputs). ``requirements`` are pip lines
        installed for the workers (``None`` or ``[]``: the server's own environment). Modules found in
        ``globals_copy`` are pickled by value, so the server does not need them installed.

        The bundle's environment gets this client's cloudpickle version and Python minor, so what it pickles
        (and the results it returns pickled) round-trip. ``request_schema`` and ``response_schema`` (pydantic
        model classes, or JSON Schema dicts) are checked by the server: a request whose ``args`` break the
        request schema is refused with a 422 naming the field; both appear in the endpoint's OpenAPI document.
        """
        forms = [predict_fn_or_cls is not None, load_predict_fn is not None and model is not None,
                 load_predict_fn is not None and load_model_fn is not None]
        if sum(forms) != 1:
            raise ValueError("A model bundle consists of exactly {predict_fn_or_cls}, {load_predict_fn + model}, "
                             "or {load_predict_fn + load_model_fn}.")
        for module in _modules(globals_copy):
            cloudpickle.register_pickle_by_value(module)
        bundle: Any
        if predict_fn_or_cls is not None:
            bundle, metadata = predict_fn_or_cls, {"predict_fn_or_cls": _source(predict_fn_or_cls)}
        elif model is not None:
            bundle = {"model": model, "load_predict_fn": load_predict_fn}
            metadata = {"load_predict_fn": _source(load_predict_fn)}
        else:
            bundle = {"load_model_fn": load_model_fn, "load_predict_fn": load_predict_fn}
            metadata = {"load_predict_fn": _source(load_predict_fn), "load_model_fn": _source(load_model_fn)}
        location = self._upload(cloudpickle.dumps(bundle), bundle_url)
        return self._create_bundle({
            "name": model_bundle_name, "location": location, "packaging_type": "cloudpickle",
            "metadata": metadata, "requirements": requirements or [], "env_params": env_params or {},
            "app_config": _app_config(app_config), **_pickler(),
            "request_schema": _schema(request_schema, "request_schema"),
            "response_schema": _schema(response_schema, "response_schema"),
        })

    def create_model_bundle_from_command(
        self,
        model_bundle_name: str,
        command: list[str],
        port: int,
        *,
        predict_route: str = "/predict",
        healthcheck_route: str = "/readyz",
        requirements: list[str] | None = None,
        directory: str | None = None,
        env: dict[str, str] | None = None,
        request_schema: Any = None,
        response_schema: Any = None,
    ) -> ModelBundle:
        """A bundle that is your own HTTP server (Launch's "runnable image" flavour, without an image).

        Each worker starts ``command`` (an argv list, run in a copy of ``directory`` when given, with
        ``requirements`` installed and ``PORT`` plus ``env`` in its environment), waits until
        ``GET healthcheck_route`` on ``127.0.0.1:port`` answers 200, then forwards every sync, async and batch
        request to ``POST predict_route``: ``args`` as the JSON body (a ``url`` input's bytes as an
        ``application/octet-stream`` body); the JSON it answers is the result. It runs in the worker's
        sandbox: loopback only, no other network. If the command exits, the worker is replaced.
        """
        archive = _zip_directories([directory]) if directory else _zip_directories([])
        location = self._upload(archive, None)
        metadata = {"command": list(command), "port": port, "predict_route": predict_route,
                    "healthcheck_route": healthcheck_route, "env": dict(env or {}),
                    "directory": Path(directory).resolve().name if directory else None}
        return self._create_bundle({
            "name": model_bundle_name, "location": location, "packaging_type": "command", "metadata": metadata,
            "requirements": requirements or [], "env_params": {}, "app_config": None,
            "request_schema": _schema(request_schema, "request_schema"),
            "response_schema": _schema(response_schema, "response_schema"),
        })

    def create_model_bundle_from_dirs(
        self,
        model_bundle_name: str,
        base_paths: list[str],
        requirements_path: str,
        env_params: dict[str, str],
        load_predict_fn_module_path: str,
        load_model_fn_module_path: str,
        app_config: dict[str, Any] | str | None = None,
    ) -> ModelBundle:
        """Package local directories as a zip bundle. Workers import ``load_model_fn_module_path`` and
        ``load_predict_fn_module_path`` (dotted ``module.function`` paths inside those directories)."""
        requirements = Path(requirements_path).read_text().splitlines()
        location = self._upload(_zip_directories(base_paths), None)
        return self._create_bundle({
            "name": model_bundle_name, "location": location, "packaging_type": "zip",
            "metadata": {"load_predict_fn_module_path": load_predict_fn_module_path,
                         "load_model_fn_module_path": load_model_fn_module_path},
            "requirements": requirements, "env_params": env_params or {}, "app_config": _app_config(app_config),
        })

    def list_model_bundles(self) -> list[ModelBundle]:
        """The bundles you own."""
        return [ModelBundle.from_dict(b) for b in self.connection.request("GET", "/v1/model-bundles")["bundles"]]

    def get_model_bundle(self, model_bundle: ModelBundle | str) -> ModelBundle:
        """One of your bundles, by name."""
        return ModelBundle.from_dict(self.connection.request("GET", f"/v1/model-bundles/{_name(model_bundle)}"))

    def clone_model_bundle_with_changes(self, existing_bundle: ModelBundle | str, new_bundle_name: str,
                                        app_config: dict | None = None) -> ModelBundle:
        """A copy of a bundle under a new name with a new ``app_config`` (None clears it)."""
        record = self.connection.request("POST", f"/v1/model-bundles/{_name(existing_bundle)}/clone",
                                         json={"new_name": new_bundle_name, "app_config": app_config})
        return ModelBundle.from_dict(record)

    def delete_model_bundle(self, model_bundle: ModelBundle | str) -> bool:
        """Delete a bundle no endpoint uses; returns True."""
        return bool(self.connection.request("DELETE", f"/v1/model-bundles/{_name(model_bundle)}")["deleted"])

    # -- endpoints -------------------------------------------------------------------------------------
    def create_model_endpoint(
        self,
        endpoint_name: str,
        model_bundle: ModelBundle | str,
        cpus: int = 3,
        memory: str = "8Gi",
        storage: str | None = None,
        gpus: int = 0,
        min_workers: int = 1,
        max_workers: int = 1,
        per_worker: int = 10,
        gpu_type: str | None = None,
        endpoint_type: str = "sync",
        post_inference_hooks: list[Any] | None = None,
        update_if_exists: bool = False,
        labels: dict[str, str] | None = None,
        metadata: dict[str, Any] | None = None,
        default_callback_url: str | None = None,
        default_callback_auth: dict[str, str] | None = None,
        public_inference: bool | None = None,
    ) -> Endpoint | None:
        """Create an endpoint serving ``model_bundle`` and return it at once (it becomes READY when its
        workers serve; poll ``status()``). With ``update_if_exists`` an existing endpoint is edited
        instead and None is returned. ``per_worker`` is the number of concurrent requests one worker takes
        before the autoscaler adds another (between ``min_workers`` and ``max_workers``; 0 min scales to
        zero when idle). ``default_callback_url`` / ``default_callback_auth``: where every task's outcome is
        POSTed unless the request names its own. ``public_inference``: other owners may send tasks to it
        (by its id); their queued tasks share its workers fairly with yours."""
        if update_if_exists and self.get_model_endpoint(endpoint_name) is not None:
            self.edit_model_endpoint(endpoint_name, model_bundle=model_bundle, cpus=cpus, memory=memory,
                                     storage=storage, gpus=gpus, min_workers=min_workers, max_workers=max_workers,
                                     per_worker=per_worker, gpu_type=gpu_type)
            return None
        if endpoint_type not in ENDPOINT_TYPES:
            raise ValueError("endpoint_type must be 'sync', 'async' or 'streaming'")
        payload = self.endpoint_auth_decorator_fn({
            "name": endpoint_name, "bundle_name": _name(model_bundle), "endpoint_type": endpoint_type,
            "cpus": cpus, "memory": memory, "storage": storage, "gpus": gpus, "gpu_type": gpu_type,
            "min_workers": min_workers, "max_workers": max_workers, "per_worker": per_worker,
            "post_inference_hooks": [str(getattr(h, "value", h)) for h in post_inference_hooks or []] or None,
            "labels": labels or {}, "metadata": metadata or {},
            **{k: v for k, v in (("default_callback_url", default_callback_url),
                                 ("default_callback_auth", default_callback_auth),
                                 ("public_inference", public_inference)) if v is not None},
        })
        return _endpoint_object(self.connection.request("POST", "/v1/model-endpoints", json=payload), self)

    def edit_model_endpoint(
        self,
        model_endpoint: ModelEndpoint | Endpoint | str,
        model_bundle: ModelBundle | str | None = None,
        cpus: float | None = None,
        memory: str | None = None,
        storage: str | None = None,
        gpus: int | None = None,
        min_workers: int | None = None,
        max_workers: int | None = None,
        per_worker: int | None = None,
        gpu_type: str | None = None,
        post_inference_hooks: list[Any] | None = None,
    ) -> None:
        """Change an endpoint; fields left None stay as they are. A new bundle or new resources roll out
        new workers before the old ones stop."""
        payload = {
            "bundle_name": _name(model_bundle) if model_bundle is not None else None, "cpus": cpus,
            "memory": memory, "storage": storage, "gpus": gpus, "gpu_type": gpu_type if gpus != 0 else None,
            "min_workers": min_workers, "max_workers": max_workers, "per_worker": per_worker,
            "post_inference_hooks": [str(getattr(h, "value", h)) for h in post_inference_hooks]
            if post_inference_hooks is not None else None,
        }
        payload = self.endpoint_auth_decorator_fn({k: v for k, v in payload.items() if v is not None})
        self.connection.request("PUT", f"/v1/model-endpoints/{_name(model_endpoint)}", json=payload)

    def _get_model_endpoint_record(self, endpoint_name: str) -> ModelEndpoint:
        return ModelEndpoint.from_dict(self.connection.request("GET", f"/v1/model-endpoints/{endpoint_name}"))

    def get_model_endpoint(self, endpoint_name: str) -> AnyEndpoint | None:
        """The endpoint named ``endpoint_name``, or None if you have none by that name."""
        try:
            record = self.connection.request("GET", f"/v1/model-endpoints/{endpoint_name}")
        except APIError as exc:
            if exc.status_code == 404:
                return None
            raise
        return _endpoint_object(record, self)

    def list_model_endpoints(self) -> list[Endpoint]:
        """Your endpoints: async ones first, then sync ones, then streaming ones."""
        records = self.connection.request("GET", "/v1/model-endpoints")["endpoints"]
        endpoints = [_endpoint_object(r, self) for r in records if r["endpoint_type"] in ENDPOINT_TYPES]
        return [e for kind in (AsyncEndpoint, SyncEndpoint, StreamingEndpoint) for e in endpoints
                if isinstance(e, kind)]

    def delete_model_endpoint(self, model_endpoint: ModelEndpoint | Endpoint | str) -> bool:
        """Delete an endpoint: its workers drain and stop; unfinished tasks fail with a reason."""
        return bool(self.connection.request("DELETE", f"/v1/model-endpoints/{_name(model_endpoint)}")["deleted"])

    def read_endpoint_creation_logs(self, model_endpoint: ModelEndpoint | Endpoint | str) -> str:
        """Environment build and worker logs of an endpoint (why it failed to start, if it did)."""
        return str(self.connection.request("GET", f"/v1/model-endpoints/{_name(model_endpoint)}/logs")["content"])

    # -- tasks -----------------------------------------------------------------------------------------
    @staticmethod
    def _task_body(url: str | None, args: dict | None, return_pickled: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"return_pickled": return_pickled}
        if return_pickled:  # the worker pickles results so that this interpreter can load them
            body["pickle_protocol"] = pickle.HIGHEST_PROTOCOL
        if url is not None:
            body["url"] = url
        if args is not None:
            body["args"] = args
        return body

    def _sync_request(self, endpoint_id: str, url: str | None = None, args: dict | None = None,
                      return_pickled: bool = True) -> dict[str, Any]:
        """Run one prediction on a sync endpoint (by name) and wait for it."""
        return dict(self.connection.request(
            "POST", "/v1/sync-tasks", params={"model_endpoint_name": endpoint_id},
            json=self._task_body(url, args, return_pickled),
        ))

    def _async_request(self, endpoint_name: str, url: str | None = None, args: dict | None = None,
                       return_pickled: bool = True, options: dict[str, Any] | None = None,
                       idempotency_key: str | None = None) -> str:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        record = self.connection.request("POST", "/v1/async-tasks", params={"model_endpoint_name": endpoint_name},
                                         json={**self._task_body(url, args, return_pickled), **(options or {})},
                                         headers=headers)
        return str(record["task_id"])

    def cancel_task(self, async_task_id: str) -> dict[str, Any]:
        """Cancel an async task; returns its view (``cancelled``: whether this call cancelled it)."""
        return dict(self.connection.request("DELETE", f"/v1/async-tasks/{async_task_id}"))

    def list_tasks(self, endpoint_name: str, states: list[str] | None = None, since: float | None = None,
                   limit: int = 100) -> list[dict[str, Any]]:
        """Your async tasks of an endpoint, newest first, filtered by state and submission time (unix)."""
        params: dict[str, Any] = {"model_endpoint_name": endpoint_name, "limit": limit}
        if states:
            params["state"] = states
        if since is not None:
            params["since"] = since
        return list(self.connection.request("GET", "/v1/async-tasks", params=params)["tasks"])

    def get_callback_signing_key(self) -> str:
        """The key the server signs your task callbacks with (see the docs for checking a signature)."""
        return str(self.connection.request("GET", "/v1/callbacks/signing-key")["signing_key"])

    def async_request(self, endpoint_name: str, url: str | None = None, args: dict | None = None,
                      return_pickled: bool = True) -> str:
        """(deprecated: use ``AsyncEndpoint.predict``) Queue a prediction; returns its task id."""
        return self._async_request(endpoint_name, url=url, args=args, return_pickled=return_pickled)

    def _stream_request(self, endpoint_name: str, url: str | None = None,
                        args: dict | None = None) -> Iterator[Any]:
        """The items of one streaming prediction (JSON lines), as they come."""
        body = self._task_body(url, args, False)
        lines = self.connection.stream_lines("POST", "/v1/streaming-tasks", json=body,
                                             params={"model_endpoint_name": endpoint_name, "format": "ndjson"})
        return _streams.items(lines)

    def _astream_request(self, endpoint_name: str, url: str | None = None,
                         args: dict | None = None) -> AsyncIterator[Any]:
        body = self._task_body(url, args, False)
        lines = self.connection.astream_lines("POST", "/v1/streaming-tasks", json=body,
                                              params={"model_endpoint_name": endpoint_name, "format": "ndjson"})
        return _streams.aitems(lines)

    _task_events_supported = True

    def _task_events(self, async_task_id: str, last_event_id: str | None,
                     wait: float) -> Iterator[tuple[str, str | None, dict[str, Any]]]:
        """A task's state changes (name, event id, data) for up to ``wait`` seconds, resuming after
        ``last_event_id``."""
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        lines = self.connection.stream_lines("GET", f"/v1/async-tasks/{async_task_id}/events",
                                             params={"wait": wait}, headers=headers)
        for event in _streams.events(lines, _streams.EventParser()):
            yield event.name, event.id, json.loads(event.data)

    def _get_async_endpoint_response(self, endpoint_name: str, async_task_id: str) -> dict[str, Any]:
        return self.get_async_response(async_task_id)

    def _wait_async_task(self, async_task_id: str, wait: float) -> dict[str, Any]:
        """The task once it ended, or as it is after ``wait`` seconds (the server long-polls)."""
        return dict(self.connection.request("GET", f"/v1/async-tasks/{async_task_id}", params={"wait": wait}))

    def get_async_response(self, async_task_id: str) -> dict[str, Any]:
        """(deprecated: use ``EndpointResponseFuture.get``) The task's state (``state`` and ``status``:
        PENDING, SUCCESS or FAILURE) and its ``result``, ``result_url`` or ``traceback``."""
        record = dict(self.connection.request("GET", f"/v1/async-tasks/{async_task_id}"))
        record["state"] = record["status"]
        return record

    # -- batch jobs ------------------------------------------------------------------------------------
    def batch_async_request(
        self,
        model_bundle: ModelBundle | str,
        urls: list[str] | None = None,
        inputs: list[dict[str, Any]] | None = None,
        batch_url_file_location: str | None = None,
        serialization_format: str = "json",
        batch_task_options: dict[str, Any] | None = None,
        labels: dict[str, str] | None = None,
    ) -> str:
        """Run a bundle over ``urls`` or ``inputs`` (exactly one) as a batch job; returns the job id. Poll
        ``get_batch_async_response`` until its ``status`` is SUCCESS or FAILURE; ``result`` is then a URL to
        a JSON list of ``{"id", "status", "result" | "result_url" | "traceback"}``."""
        if (urls is None) == (inputs is None):
            raise ValueError("Exactly one of urls or inputs must be given")
        csv_text = _batch_csv(urls, inputs)
        if self.self_hosted:
            location_fn = self.batch_csv_location_fn or self.bundle_location_fn
            location = batch_url_file_location or (location_fn() if location_fn else None)
            if self.upload_batch_csv_fn is None or location is None:
                raise ValueError("self-hosted mode needs upload_batch_csv_fn and a batch file location")
            self.upload_batch_csv_fn(csv_text, location)
        else:
            ticket = self.connection.request("POST", "/v1/uploads", params={"kind": "batch-inputs"})
            self.connection.put_bytes(ticket["upload_url"], csv_text.encode())
            location = ticket["location"]
        payload = self.endpoint_auth_decorator_fn({
            "bundle_name": _name(model_bundle), "input_location": location,
            "serialization_format": serialization_format, "options": batch_task_options or {},
            "labels": labels or {},
        })
        return str(self.connection.request("POST", "/v1/batch-jobs", json=payload)["job_id"])

    def get_batch_async_response(self, batch_async_task_id: str) -> dict[str, Any]:
        """The batch job's ``status``, ``result`` (URL of the results file once finished), ``duration`` and
        progress (``total``, ``done``, ``failed``)."""
        return dict(self.connection.request("GET", f"/v1/batch-jobs/{batch_async_task_id}"))

    def download_result(self, result_url: str) -> Any:
        """Download and unpickle a ``result_url`` (pickled results are unpickled only here, client-side)."""
        data = self.connection.get_bytes(result_url)
        try:
            return cloudpickle.loads(data)
        except Exception as exc:
            raise LaunchClientError(
                f"the result could not be unpickled here ({type(exc).__name__}: {exc}). Workers pickle results "
                "with the cloudpickle and Python of the bundle's environment, which are those of the client that "
                "created the bundle (see its cloudpickle_version and python_version); this client has cloudpickle "
                f"{cloudpickle.__version__} on Python {sys.version_info[0]}.{sys.version_info[1]}, and needs the "
                "packages the result's classes come from"
            ) from exc


def _modules(globals_copy: dict[str, Any] | None) -> list[Any]:
    """The user's own modules in ``globals_copy`` (not the standard library, not installed packages):
    these are pickled by value so the server needs no copy of them."""
    import sys
    import sysconfig
    import types

    installed = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    installed |= {sys.prefix, sys.base_prefix}

    def local(module: types.ModuleType) -> bool:
        path = getattr(module, "__file__", None)
        return path is not None and not any(str(Path(path).resolve()).startswith(p) for p in installed)

    return [v for v in (globals_copy or {}).values() if isinstance(v, types.ModuleType) and local(v)]


def _batch_csv(urls: list[str] | None, inputs: list[dict[str, Any]] | None) -> str:
    """The batch input file: ``id,url`` rows, or ``id,args`` rows of JSON quoted with ``'`` (as 0.3.3)."""
    import csv
    import json

    buffer = io.StringIO()
    if urls is not None:
        writer = csv.writer(buffer)
        writer.writerow(["id", "url"])
        writer.writerows([i, url] for i, url in enumerate(urls))
    else:
        writer = csv.writer(buffer, quotechar="'")
        writer.writerow(["id", "args"])
        writer.writerows([i, json.dumps(args)] for i, args in enumerate(inputs or []))
    return buffer.getvalue()


def _zip_directories(paths: list[str]) -> bytes:
    """A zip of every file under each directory, stored relative to the directory's parent."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for base in paths:
            root = Path(base).resolve()
            for file in sorted(p for p in root.rglob("*") if p.is_file()):
                archive.write(file, file.relative_to(root.parent).as_posix())
    return buffer.getvalue()
