"""Fixtures for driving our server with Scale's own client (scale-launch 0.3.3) from its separate venv.

Each scenario in ``scenarios/`` is a script run by ``.venv-legacy/bin/python``; it prints one JSON line
that the tests assert on. Everything talks to 127.0.0.1 only, and every subprocess has a timeout.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, RunningServer

LEGACY_VENV = REPO / ".venv-legacy"
SCENARIOS = Path(__file__).parent / "scenarios"
RESULT_MARK = "LEGACY-RESULT "
INPUT_BYTES = bytes(range(256)) * 20


@dataclass
class Legacy:
    """Runs scenario scripts and the ``scale-launch`` CLI against a server."""

    server: RunningServer
    key: str
    other_key: str
    files_url: str
    workdir: Path

    @property
    def base_url(self) -> str:
        return f"{self.server.url}/v1/hosted_inference"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        return {**env, "PYTHONWARNINGS": "ignore::UserWarning", "COLUMNS": "1000", **extra}

    def run(self, scenario: str, *, server: RunningServer | None = None, key: str | None = None,
            timeout: float = 120) -> dict[str, Any]:
        """Run ``scenarios/<scenario>.py``; its JSON result, plus the ``prefix`` its names start with."""
        server = server or self.server
        prefix = f"lg-{scenario.replace('_', '-')}-{uuid.uuid4().hex[:6]}"
        env = self.env(LEGACY_BASE=f"{server.url}/v1/hosted_inference", LEGACY_SERVER=server.url,
                       LEGACY_KEY=key or self.key, LEGACY_OTHER_KEY=self.other_key, LEGACY_PREFIX=prefix,
                       LEGACY_FILES=self.files_url)
        proc = subprocess.run([str(LEGACY_VENV / "bin" / "python"), str(SCENARIOS / f"{scenario}.py")],
                              capture_output=True, text=True, timeout=timeout, env=env, cwd=self.workdir)
        lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_MARK)]
        if proc.returncode != 0 or not lines:
            pytest.fail(f"scenario {scenario} failed (exit {proc.returncode})\n--- stdout\n{proc.stdout[-4000:]}\n"
                        f"--- stderr\n{proc.stderr[-6000:]}\n--- server log\n{server.log()[-3000:]}")
        return {**json.loads(lines[-1][len(RESULT_MARK):]), "prefix": prefix}

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``scale-launch ARGS`` configured through its environment variables, as a user would."""
        env = self.env(LAUNCH_API_KEY=self.key, LAUNCH_GATEWAY_ENDPOINT=self.base_url)
        return subprocess.run([str(LEGACY_VENV / "bin" / "scale-launch"), *args], capture_output=True, text=True,
                              timeout=timeout, env=env, cwd=self.workdir)


@pytest.fixture(scope="session")
def legacy_venv() -> Path:
    """Create (or reuse) .venv-legacy/ with scale-launch 0.3.3."""
    proc = subprocess.run([str(REPO / "scripts" / "legacy-client-venv")], capture_output=True, text=True,
                          timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"scripts/legacy-client-venv failed:\n{proc.stdout}\n{proc.stderr}")
    return LEGACY_VENV


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def file_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A static file server on 127.0.0.1 for ``url`` inputs (the test server allows private fetches)."""
    root = tmp_path_factory.mktemp("legacy-files")
    (root / "input.bin").write_bytes(INPUT_BYTES)
    (root / "small.txt").write_text("hello\n")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="session")
def legacy(legacy_venv: Path, server: RunningServer, alice_key: str, bob_key: str, file_server: str,
           tmp_path_factory: pytest.TempPathFactory) -> Legacy:
    return Legacy(server, alice_key, bob_key, file_server, tmp_path_factory.mktemp("legacy-work"))


def input_digest() -> str:
    return hashlib.sha256(INPUT_BYTES).hexdigest()
