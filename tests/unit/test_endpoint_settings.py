"""``EndpointSettings.validate``: each rule refuses what it should, with a reason, and accepts the rest."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from launch.server.domain.endpoints import EndpointSettings
from launch.server.domain.errors import InvalidRequest

OK = EndpointSettings(cpus=1, memory="1Gi", min_workers=0, max_workers=2, per_worker=4)


def test_defaults_are_valid_and_validate_returns_self() -> None:
    assert EndpointSettings().validate() == EndpointSettings()
    assert OK.validate() is OK


@pytest.mark.parametrize("changes", [
    {"cpus": 0.5}, {"cpus": 16}, {"memory": "512Mi"}, {"memory": "8Gi"}, {"memory": "1.5G"}, {"memory": "100"},
    {"memory": "2k"}, {"storage": "10Gi"}, {"storage": None}, {"gpus": 1, "gpu_type": "nvidia-tesla-t4"},
    {"min_workers": 0, "max_workers": 1}, {"min_workers": 3, "max_workers": 3}, {"per_worker": 1},
])
def test_accepts(changes: dict[str, Any]) -> None:
    replace(OK, **changes).validate()


@pytest.mark.parametrize(("changes", "message"), [
    ({"cpus": 0}, "cpus"),
    ({"cpus": -1}, "cpus"),
    ({"cpus": "2"}, "cpus"),
    ({"cpus": float("nan")}, "cpus"),
    ({"cpus": float("inf")}, "cpus"),
    ({"cpus": 10**6}, "cpus"),
    ({"gpus": 10**9, "gpu_type": "t4"}, "gpus"),
    ({"max_workers": 10**100}, "max_workers"),
    ({"per_worker": 10**100}, "per_worker"),
    ({"memory": "8GB"}, "memory"),
    ({"memory": "lots"}, "memory"),
    ({"memory": ""}, "memory"),
    ({"memory": 8}, "memory"),
    ({"storage": "ten"}, "storage"),
    ({"gpus": -1}, "gpus"),
    ({"gpus": 1.5}, "gpus"),
    ({"gpus": 1}, "gpu_type"),
    ({"min_workers": 1.0}, "min_workers"),
    ({"min_workers": True}, "min_workers"),
    ({"max_workers": "2"}, "max_workers"),
    ({"per_worker": None}, "per_worker"),
    ({"min_workers": -1}, "min_workers"),
    ({"max_workers": 0, "min_workers": 0}, "max_workers"),
    ({"max_workers": 1, "min_workers": 2}, "max_workers"),
    ({"per_worker": 0}, "per_worker"),
])
def test_refuses_with_a_reason_naming_the_field(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        replace(OK, **changes).validate()
    assert message in caught.value.detail
    assert caught.value.status_code == 422


def test_round_trips_through_dict_keeping_extra_and_ignoring_unknown_keys() -> None:
    settings = replace(OK, extra={"tier": "gold"}, post_inference_hooks=["callback"])
    data = settings.to_dict()
    assert data["extra"] == {"tier": "gold"}
    assert EndpointSettings.from_dict({**data, "not_a_field": 1}) == settings
