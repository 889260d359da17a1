"""The Kubernetes manifests of docs/deploy.md are valid against the Kubernetes API schemas (strict: no unknown
fields), so a typo fails here instead of at `kubectl apply`. KubeRay's RayCluster is a custom resource: its
own fields are checked against a vendored schema, its pod templates against Kubernetes' PodTemplate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

MANIFESTS = sorted((Path(__file__).resolve().parents[2] / "deploy" / "kubernetes").glob("*.yaml"))
KUBERNETES_VERSION = "1.30.0"
RAYCLUSTER_SCHEMA = Path(__file__).with_name("schemas") / "raycluster.json"


def documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found.append((f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return found


def test_the_guide_has_every_piece() -> None:
    kinds = {(doc["kind"], doc["metadata"]["name"]) for _, doc in documents()}
    assert {("Deployment", "launch-gateway"), ("StatefulSet", "launch-postgres"), ("Deployment", "launch-redis"),
            ("Service", "launch"), ("RayCluster", "launch-ray")} <= kinds


@pytest.mark.parametrize(("name", "doc"), documents(), ids=[name for name, _ in documents()])
def test_manifest_is_valid(name: str, doc: dict[str, Any]) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    if doc["kind"] == "RayCluster":
        jsonschema = pytest.importorskip("jsonschema")
        jsonschema.validate(doc, json.loads(RAYCLUSTER_SCHEMA.read_text()))
        groups = [doc["spec"]["headGroupSpec"], *doc["spec"].get("workerGroupSpecs", [])]
        for group in groups:
            template = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"},
                        "template": group["template"]}
            kubernetes_validate.validate(template, KUBERNETES_VERSION, strict=True)
        return
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_raycluster_schema_catches_a_typo() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    _, ray = next(d for d in documents() if d[1]["kind"] == "RayCluster")
    broken = {**ray, "spec": {**ray["spec"], "workerGroupSpec": []}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, json.loads(RAYCLUSTER_SCHEMA.read_text()))


def test_the_validator_catches_a_typo() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    _, gateway = next(d for d in documents() if d[1]["kind"] == "Deployment")
    broken = {**gateway, "spec": {**gateway["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
