"""Workers on the Ray cluster run in the same sandbox as local ones where the node runs bubblewrap (issue 12):
their own uid and PID namespace, none of the node's environment or files beyond what they need, and
``sandbox=required`` keeps it so. Needs the local Ray cluster of ``scripts/engines start``."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from launch import EndpointRequest, LaunchClient
from tests.conftest import REPO, RunningServer, start_server
from tests.e2e import models
from tests.e2e.helpers import deployed, unique
from tests.engines import RAY

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180),
              pytest.mark.skipif(not RAY, reason="workers on a Ray cluster (LAUNCH_TEST_ENGINES=scaleout with Ray)"),
              pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")]
UID_BASE = 524288  # LAUNCH_SANDBOX_UID_BASE's default


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("ray-sandbox"), env={"LAUNCH_SANDBOX": "required"})
    yield running
    running.stop()


def ask(endpoint: Any, action: str, arg: Any = None) -> Any:
    response = endpoint.predict(EndpointRequest(args={"action": action, "arg": arg}, return_pickled=False))
    assert response.status == "SUCCESS", response.traceback
    return json.loads(response.result)


def test_a_ray_worker_runs_in_the_sandbox(server: RunningServer) -> None:
    client = LaunchClient(api_key=server.key(unique("bob")), endpoint=server.url)
    bundle = client.create_model_bundle(unique("hostile"), {}, predict_fn_or_cls=models.hostile, requirements=[])
    with deployed(client, bundle, "sync", per_worker=2) as endpoint:
        who = ask(endpoint, "whoami")
        assert who["uid"] >= UID_BASE  # a uid of its own, not the Ray node's root
        assert who["pid"] < 100  # its own PID namespace: the node's processes are not there to see or signal
        environment = ask(endpoint, "env")
        assert "LAUNCH_WORKER_TOKEN" not in environment  # taken out of the environment before user code runs
        assert not [name for name in environment if name.startswith(("RAY_", "AWS_", "LAUNCH_"))]
        # nor the node's files: not the Ray session (other workers' logs) nor the engines' data
        assert ask(endpoint, "listdir", str(REPO / ".engines")).startswith("FileNotFoundError")
        assert ask(endpoint, "listdir", "/tmp") == []  # a private /tmp
