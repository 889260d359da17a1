"""The package as a data scientist installs it: the wheel, built from this tree, in a clean venv beside
scikit-learn and NumPy (no constraints: the newest versions its ranges allow), with ``uv pip check``
clean; the client alone (no server dependency), its CLI's client commands working and ``launch server``
saying which extra to install; and pickled results round-tripping between that client (its own, newer,
cloudpickle) and the server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, RunningServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
SERVER_ONLY = ("fastapi", "uvicorn", "sqlalchemy", "alembic", "aiosqlite", "pydantic_settings", "jsonschema")


def _uv() -> str:
    return shutil.which("uv") or str(Path(sys.executable).with_name("uv"))


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "VIRTUAL_ENV": ""}
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from this tree."""
    root = tmp_path_factory.mktemp("client-wheel")
    run(_uv(), "build", "--wheel", "--quiet", "--out-dir", str(root / "dist"), str(REPO))
    wheels = list((root / "dist").glob("launch-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _venv(wheel: Path, python: str, *packages: str) -> Path:
    venv = wheel.parent.parent / f"venv-{Path(python).name}"
    run(_uv(), "venv", "--quiet", "--python", python, str(venv))
    run(_uv(), "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), str(wheel), *packages)
    return venv


@pytest.fixture(scope="module")
def client_venv(wheel: Path) -> Iterator[Path]:
    """A clean venv holding the built wheel, scikit-learn and NumPy (nothing of the repository's venv)."""
    yield _venv(wheel, sys.executable, "scikit-learn", "numpy")


def test_the_wheel_installs_beside_scikit_learn_with_pip_check_clean(client_venv: Path) -> None:
    check = run(_uv(), "pip", "check", "--python", str(client_venv / "bin" / "python"))
    assert "All installed packages are compatible" in check.stdout + check.stderr
    listed = run(_uv(), "pip", "list", "--python", str(client_venv / "bin" / "python")).stdout.lower()
    assert "scikit-learn" in listed and "cloudpickle" in listed


def test_the_client_install_has_no_server_dependency(client_venv: Path, server: RunningServer,
                                                     alice_key: str) -> None:
    python = str(client_venv / "bin" / "python")
    for module in SERVER_ONLY:
        assert run(python, "-c", f"import {module}", check=False).returncode != 0, f"{module} is installed"
    run(python, "-c", "import launch; from launch import LaunchClient, EndpointRequest; LaunchClient")
    launch = str(client_venv / "bin" / "launch")
    listed = run(launch, "bundles", "list", "--json", "--api-key", alice_key, "--endpoint", server.url)
    assert listed.stdout.strip().startswith("[")
    refused = run(launch, "server", "--port", "1", check=False)
    assert refused.returncode == 2 and "pip install 'launch[server]'" in refused.stdout + refused.stderr


def test_pickled_results_round_trip_to_a_client_with_its_own_cloudpickle(client_venv: Path, server: RunningServer,
                                                                         alice_key: str) -> None:
    script = Path(__file__).with_name("client_wheel_script.py")
    out = run(str(client_venv / "bin" / "python"), str(script), server.url, alice_key)
    assert "ROUND-TRIP OK" in out.stdout, out.stdout + out.stderr


def test_a_client_on_another_python_gets_workers_on_that_python(wheel: Path, server: RunningServer,
                                                                alice_key: str) -> None:
    """A bundle pickled on another Python minor than the server's runs on that minor, where the host has it."""
    import asyncio

    from launch.server.environments import SERVER_MINOR, find_python

    minor = "3.12" if SERVER_MINOR != "3.12" else "3.11"
    python = asyncio.run(find_python(minor))
    if python is None:
        pytest.skip(f"this host has no Python {minor} (the refusal is tested in test_bundle_flavours)")
    venv = _venv(wheel, python, "numpy")
    script = Path(__file__).with_name("client_wheel_script.py")
    out = run(str(venv / "bin" / "python"), str(script), server.url, alice_key, "--no-sklearn")
    assert "ROUND-TRIP OK" in out.stdout and f"Python {minor}" in out.stdout, out.stdout + out.stderr
