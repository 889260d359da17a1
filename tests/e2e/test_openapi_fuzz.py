"""Schemathesis against a live server: every operation of the OpenAPI document (native and legacy routes),
every check (no 5xx, statuses/headers/bodies/content types as documented, invalid data rejected, valid data
accepted, auth enforced, 405 with Allow, ...), a bounded number of cases per operation.

Schemathesis is pinned in its own venv (``scripts/schemathesis-venv``, run by ``scripts/test``). The seed is
fixed so a failure reproduces; ``LAUNCH_FUZZ_SEED`` and ``LAUNCH_FUZZ_EXAMPLES`` explore further.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from launch import LaunchClient
from tests.conftest import REPO, RunningServer, start_server
from tests.e2e import models

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
ST = REPO / ".venv-schemathesis" / "bin" / "st"
CONFIG = Path(__file__).with_name("schemathesis.toml")


@pytest.fixture(scope="module")
def schemathesis() -> Path:
    proc = subprocess.run([str(REPO / "scripts" / "schemathesis-venv")], capture_output=True, text=True,
                          timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"scripts/schemathesis-venv failed:\n{proc.stdout}\n{proc.stderr}")
    return ST


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server of its own: the fuzzer creates and deletes whatever the document lets it."""
    running = start_server(tmp_path_factory.mktemp("fuzz-data"))
    yield running
    if running.process.poll() is None:
        running.stop()


def test_schemathesis_finds_no_failure(schemathesis: Path, fuzzed_server: RunningServer,
                                      tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = fuzzed_server.key("fuzzer")
    client = LaunchClient(api_key=key, endpoint=fuzzed_server.url)
    bundle = client.create_model_bundle("fuzz-bundle", {}, predict_fn_or_cls=models.constant("A"), requirements=[])
    argv = [
        str(schemathesis), "--config-file", str(CONFIG), "run", f"{fuzzed_server.url}/openapi.json",
        "--checks", "all", "--max-examples", os.environ.get("LAUNCH_FUZZ_EXAMPLES", "25"),
        "--seed", os.environ.get("LAUNCH_FUZZ_SEED", "20261201"), "--generation-database", "none",
        # one worker: hypothesis parses lambdas' source with ast.parse, which CPython 3.11 cannot run from two
        # threads at once ("AST constructor recursion depth mismatch", an error of the run, not of the API)
        "--header", f"Authorization: Bearer {key}", "--workers", "1", "--no-color",
        "--request-timeout", "30", "--report", "junit", "--report-dir", str(tmp_path),
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=540, cwd=tmp_path,
                          env={**os.environ, "LAUNCH_FUZZ_BUNDLE": bundle.name})
    output = proc.stdout + proc.stderr
    summary = output[output.rfind("SUMMARY"):] if "SUMMARY" in output else output[-3000:]
    with capsys.disabled():
        print(f"\n--- schemathesis ({fuzzed_server.url}) ---\n{summary.strip()}")
    assert proc.returncode == 0, output[-20000:]
    tested = re.search(r"Tested: (\d+)", output)
    cases = re.search(r"(\d+) generated, (\d+) passed", output)
    assert tested and int(tested.group(1)) >= 30, "native and legacy operations are all in the document"
    assert cases and cases.group(1) == cases.group(2), "every generated case passed"
