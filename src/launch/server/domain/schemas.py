"""Request and response schemas of bundles (JSON Schema, e.g. from a pydantic model's
``model_json_schema()``): checked when a bundle is created, applied to a request's ``args`` at the gateway
(which never unpickles anything: it validates JSON against JSON Schema), and published as an endpoint's
OpenAPI document."""

from __future__ import annotations

import functools
import json
from typing import Any

import jsonschema
from jsonschema.exceptions import best_match

from launch.server.domain.errors import InvalidRequest

MAX_SCHEMA_BYTES = 256 * 1024
Validator = Any  # a jsonschema validator instance


def checked(schema: Any, which: str) -> dict[str, Any] | None:
    """``schema`` if it is a valid JSON Schema object (None stays None), else ``InvalidRequest``."""
    if schema is None:
        return None
    if not isinstance(schema, dict):
        raise InvalidRequest(f"{which} must be a JSON Schema object (e.g. a pydantic model's model_json_schema())")
    if len(json.dumps(schema)) > MAX_SCHEMA_BYTES:
        raise InvalidRequest(f"{which} is over {MAX_SCHEMA_BYTES} bytes")
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise InvalidRequest(f"{which} is not a valid JSON Schema: {exc.message}") from None
    return schema


@functools.lru_cache(maxsize=1024)
def _validator(schema_text: str) -> Validator:
    schema = json.loads(schema_text)
    return jsonschema.validators.validator_for(schema)(schema)


def validator(schema: dict[str, Any] | None) -> Validator | None:
    """A compiled validator for ``schema`` (cached by its text, so each schema compiles once)."""
    if schema is None:
        return None
    return _validator(json.dumps(schema, sort_keys=True))


def validate_args(compiled: Validator | None, args: Any) -> None:
    """Raise ``InvalidRequest`` (422) naming the field of ``args`` that breaks the schema."""
    if compiled is None:
        return
    error = best_match(compiled.iter_errors(args))
    if error is None:
        return
    path = ".".join(["args", *(str(part) for part in error.absolute_path)])
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [name for name in error.validator_value if name not in error.instance]
        if missing:  # name the missing field itself, not the object that lacks it
            path = f"{path}.{missing[0]}"
    raise InvalidRequest(f"{path}: {error.message}")


def _moved_defs(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with its ``$defs`` moved into ``components`` and its references rewritten to point there
    (inside an OpenAPI document, ``#/$defs/...`` would resolve against the document's root)."""
    schema = dict(schema)
    for name, definition in (schema.pop("$defs", None) or {}).items():
        components[name] = _rewrite_refs(definition)
    rewritten: dict[str, Any] = _rewrite_refs(schema)
    return rewritten


def _rewrite_refs(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: (v.replace("#/$defs/", "#/components/schemas/") if k == "$ref" and isinstance(v, str)
                    else _rewrite_refs(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite_refs(v) for v in node]
    return node


def endpoint_openapi(endpoint_name: str, endpoint_type: str, request_schema: dict[str, Any] | None,
                     response_schema: dict[str, Any] | None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of one endpoint: its prediction route with the bundle's schemas."""
    components: dict[str, Any] = {}
    args = _moved_defs(request_schema, components) if request_schema else {"type": "object"}
    result = _moved_defs(response_schema, components) if response_schema else {}
    components["Request"] = {
        "type": "object", "description": "Exactly one of args and url.",
        "properties": {"args": args, "url": {"type": "string", "description": "a file whose bytes are the input"},
                       "return_pickled": {"type": "boolean", "default": True}},
    }
    json_result = {"type": "string", "contentMediaType": "application/json", "contentSchema": result,
                   "description": "the predict function's output, JSON-encoded (when return_pickled is false)"}
    outcome = {"type": "object", "properties": {
        "status": {"type": "string", "enum": ["SUCCESS", "FAILURE"]}, "result": json_result,
        "result_url": {"type": "string", "description": "signed URL of the pickled output"},
        "traceback": {"type": "string"}}}
    components["Outcome"] = outcome
    error = {"description": "the request was refused; detail says why (422: the field that breaks the schema)",
             "content": {"application/json": {"schema": {"type": "object",
                                                          "properties": {"detail": {"type": "string"}}}}}}
    query = [{"name": "model_endpoint_name", "in": "query", "required": True,
              "schema": {"type": "string", "enum": [endpoint_name]}}]
    body = {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Request"}}}}
    if endpoint_type == "sync":
        paths = {"/v1/sync-tasks": {"post": {
            "operationId": "predict", "summary": f"Run one prediction on {endpoint_name}", "parameters": query,
            "requestBody": body, "responses": {
                "200": {"description": "the outcome", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Outcome"}}}}, "422": error}}}}
    elif endpoint_type == "streaming":
        items = ("one event per item: `data: <item JSON>`" + (" (each item as the response schema says)"
                                                              if response_schema else ""))
        paths = {"/v1/streaming-tasks": {"post": {
            "operationId": "stream", "summary": f"Stream one prediction of {endpoint_name}", "parameters": query,
            "requestBody": body, "responses": {
                "200": {"description": f"Server-sent events, {items}, then `event: end` or `event: error`; "
                                       "JSON lines (`{\"item\": ...}`) with Accept: application/x-ndjson",
                        "content": {"text/event-stream": {"schema": {"type": "string"}},
                                    "application/x-ndjson": {"schema": {"type": "string"}}}},
                "422": error}}}}
        if response_schema:
            components["Item"] = result
    else:
        task = {"type": "object", "properties": {"task_id": {"type": "string"}}}
        paths = {
            "/v1/async-tasks": {"post": {
                "operationId": "submit", "summary": f"Queue one prediction on {endpoint_name}",
                "parameters": query, "requestBody": body, "responses": {
                    "200": {"description": "the task's id", "content": {"application/json": {"schema": task}}},
                    "422": error}}},
            "/v1/async-tasks/{task_id}": {"get": {
                "operationId": "get_task", "summary": "The task's status and outcome",
                "parameters": [{"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "the task", "content": {"application/json": {"schema": {
                    "allOf": [{"$ref": "#/components/schemas/Outcome"}, task]}}}}}}},
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": f"Launch endpoint {endpoint_name}", "version": "1"},
        "paths": paths,
        "components": {"schemas": components,
                       "securitySchemes": {"apiKey": {"type": "http", "scheme": "basic"},
                                           "bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"apiKey": []}, {"bearer": []}],
    }
