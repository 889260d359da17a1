"""Pure rules of bundles: the cloudpickle/Python that pickled one, command bundles' metadata, request
schemas (validation naming the field, the endpoint's OpenAPI document)."""

from __future__ import annotations

from typing import Any

import pytest

from launch.server.domain import pickler, schemas
from launch.server.domain.bundles import Bundle, check_command
from launch.server.domain.errors import InvalidRequest
from launch.server.environments import _runtime_pins, requirements_hash


@pytest.mark.parametrize("requirements", [[], ["scikit-learn"], ["cloudpickle"], ["cloudpickle>=3,<4"],
                                          ["cloudpickle==3.1.1"], ["!!! not a requirement"]])
def test_requirements_that_allow_the_pickling_cloudpickle(requirements: list[str]) -> None:
    pickler.check_versions("3.1.1", "3.11", requirements)


@pytest.mark.parametrize("requirements", [["cloudpickle==2.2.1"], ["cloudpickle<3"], ["CloudPickle>=3.2"]])
def test_requirements_on_another_cloudpickle_are_refused_with_both_versions(requirements: list[str]) -> None:
    with pytest.raises(InvalidRequest) as caught:
        pickler.check_versions("3.1.1", "3.11", requirements)
    assert "cloudpickle 3.1.1" in caught.value.detail and requirements[0] in caught.value.detail


@pytest.mark.parametrize(("cloudpickle", "python"), [("not a version", "3.11"), ("3.1.1", "3"), ("3.1.1", "py3.11"),
                                                     ("3.1.1", "3.11.7")])
def test_malformed_versions_are_refused(cloudpickle: str, python: str) -> None:
    with pytest.raises(InvalidRequest):
        pickler.check_versions(cloudpickle, python, [])


def test_the_environment_gets_the_pickling_cloudpickle() -> None:
    assert pickler.environment_requirements(["numpy"], "3.1.1") == ["numpy", "cloudpickle==3.1.1"]
    assert pickler.environment_requirements(["numpy"], None) == ["numpy"]
    bundle = Bundle(id="b", owner="o", name="n", packaging_type="zip", location="l", object_key=None, metadata={},
                    requirements=["numpy"], env_params={}, app_config=None, created_at=0.0,
                    cloudpickle_version="3.1.1")
    assert bundle.environment_requirements == ["numpy"]  # only pickled bundles need their pickler


def test_another_python_minor_is_another_environment() -> None:
    assert requirements_hash(["numpy"], "3.12") != requirements_hash(["numpy"])
    pins = _runtime_pins(["orjson==3.10.0"])
    assert not any(p.startswith("orjson") for p in pins) and any(p.startswith("uvloop==") for p in pins)


GOOD_COMMAND: dict[str, Any] = {"command": ["python", "app.py"], "port": 8080, "predict_route": "/predict",
                                "healthcheck_route": "/readyz"}


@pytest.mark.parametrize("change", [{"command": []}, {"command": "python app.py"}, {"port": 80}, {"port": "8080"},
                                    {"predict_route": "predict"}, {"healthcheck_route": None},
                                    {"env": {"A": 1}}])
def test_command_metadata_is_checked(change: dict[str, Any]) -> None:
    check_command(GOOD_COMMAND)
    with pytest.raises(InvalidRequest):
        check_command({**GOOD_COMMAND, **change})


POINT = {
    "title": "Point", "type": "object", "required": ["x"],
    "properties": {"x": {"type": "integer"}, "tags": {"type": "array", "items": {"$ref": "#/$defs/Tag"}}},
    "$defs": {"Tag": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 3}},
                      "required": ["name"]}},
}


@pytest.mark.parametrize(("args", "field"), [
    ({"x": "1"}, "args.x"), ({}, "args.x"), ({"x": 1, "tags": [{"name": "long name"}]}, "args.tags.0.name"),
    ({"x": 1, "tags": [{}]}, "args.tags.0.name"),
])
def test_validation_names_the_field(args: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        schemas.validate_args(schemas.validator(POINT), args)
    assert caught.value.detail.startswith(field + ":"), caught.value.detail


def test_valid_args_pass_and_no_schema_checks_nothing() -> None:
    schemas.validate_args(schemas.validator(POINT), {"x": 1, "tags": [{"name": "a"}]})
    schemas.validate_args(schemas.validator(None), {"anything": object()})
    assert schemas.validator(POINT) is schemas.validator(dict(POINT))  # compiled once


@pytest.mark.parametrize("schema", [[], "object", {"type": "no-such-type"}, {"properties": {"x": {"type": 3}}}])
def test_invalid_schemas_are_refused(schema: Any) -> None:
    with pytest.raises(InvalidRequest):
        schemas.checked(schema, "request_schema")


def test_openapi_document_holds_the_schemas_with_references_that_resolve() -> None:
    doc = schemas.endpoint_openapi("ep", "async", POINT, {"type": "object", "properties": {"y": {"type": "number"}}})
    components = doc["components"]["schemas"]
    args = components["Request"]["properties"]["args"]
    assert args["properties"]["tags"]["items"] == {"$ref": "#/components/schemas/Tag"} and "Tag" in components
    assert components["Outcome"]["properties"]["result"]["contentSchema"]["properties"]["y"]["type"] == "number"
    assert set(doc["paths"]) == {"/v1/async-tasks", "/v1/async-tasks/{task_id}"}
    assert "$defs" not in str(doc)
