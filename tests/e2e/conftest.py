"""End-to-end fixtures: SDK clients for alice and bob, and the toolbox endpoints several modules share."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from launch import LaunchClient
from tests.conftest import RunningServer
from tests.e2e import models
from tests.e2e.helpers import deployed, unique


@pytest.fixture(scope="session")
def alice(server: RunningServer, alice_key: str) -> LaunchClient:
    return LaunchClient(api_key=alice_key, endpoint=server.url)


@pytest.fixture(scope="session")
def bob(server: RunningServer, bob_key: str) -> LaunchClient:
    return LaunchClient(api_key=bob_key, endpoint=server.url)


@pytest.fixture(scope="session")
def toolbox_bundle(alice: LaunchClient) -> Any:
    return alice.create_model_bundle(unique("toolbox"), {}, predict_fn_or_cls=models.toolbox, requirements=[])


@pytest.fixture(scope="session")
def sync_toolbox(alice: LaunchClient, toolbox_bundle: Any) -> Iterator[Any]:
    """A READY sync endpoint of ``models.toolbox`` owned by alice."""
    with deployed(alice, toolbox_bundle, "sync", per_worker=8) as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def async_toolbox(alice: LaunchClient, toolbox_bundle: Any) -> Iterator[Any]:
    """A READY async endpoint of ``models.toolbox`` owned by alice."""
    with deployed(alice, toolbox_bundle, "async", per_worker=8) as endpoint:
        yield endpoint
