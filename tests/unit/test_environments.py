"""Whether the server's own interpreter already satisfies a bundle's requirements (no venv to build), and
the resolution of the others when a bundle is created."""

from __future__ import annotations

import asyncio
import shlex
from importlib import metadata
from pathlib import Path

import pytest

from launch.server import environments
from launch.server.environments import Environments, RequirementsUnresolvable, requirements_hash, satisfied_here

PYTEST = metadata.version("pytest")


@pytest.mark.parametrize("requirements", [
    [], ["pytest"], [f"pytest=={PYTEST}"], [f"pytest>={PYTEST}", "httpx"], ["PyTest"], ["cloudpickle<3"],
    ['not-installed-anywhere-xyz; python_version < "3"'],  # marker false: not needed here
    ["pytest[testing]"],
])
def test_satisfied(requirements: list[str]) -> None:
    assert satisfied_here(requirements)


@pytest.mark.parametrize("requirements", [
    ["not-installed-anywhere-xyz"], [f"pytest!={PYTEST}"], ["pytest<1"], ["httpx", "pytest>999"],
    ["!!! not a requirement"], ["pytest @ https://example.com/pytest.whl"],
    ['not-installed-anywhere-xyz; python_version >= "3"'],
])
def test_not_satisfied(requirements: list[str]) -> None:
    assert not satisfied_here(requirements)


def test_requirements_hash_ignores_order_but_not_content() -> None:
    assert requirements_hash(["a", "b==1"]) == requirements_hash(["b==1", "a"])
    assert requirements_hash(["a", "b==1"]) != requirements_hash(["a", "b==2"])
    assert len(requirements_hash([])) == 16


# -- Environments.check: requirements resolved when a bundle is created ------------------------------------------


def _fake_uv(tmp_path: Path, stderr: str, code: int) -> str:
    """A stand-in for uv that prints ``stderr`` and exits ``code``, counting its calls in ``calls``."""
    script = tmp_path / "uv"
    script.write_text(f"#!/bin/sh\necho x >> {tmp_path / 'calls'}\ncat > /dev/null\n"
                      f"printf '%s' {shlex.quote(stderr)} >&2\nexit {code}\n")
    script.chmod(0o755)
    return str(script)


def _calls(tmp_path: Path) -> int:
    calls = tmp_path / "calls"
    return len(calls.read_text().splitlines()) if calls.exists() else 0


def test_an_unresolvable_set_is_refused_with_uvs_reason_once(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    reason = "error: No solution found when resolving dependencies: there is no version of x==99"
    monkeypatch.setattr(environments, "_uv", lambda: _fake_uv(tmp_path, reason, 1))
    envs = Environments(tmp_path / "envs")
    for _ in range(2):
        with pytest.raises(RequirementsUnresolvable, match="no version of x==99") as refused:
            asyncio.run(envs.check(["not-installed-anywhere-xyz==99"]))
        assert refused.value.detail.count("no version of x==99") == 1
    assert _calls(tmp_path) == 1, "the verdict is cached"


def test_a_resolvable_set_is_remembered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(environments, "_uv", lambda: _fake_uv(tmp_path, "", 0))
    envs = Environments(tmp_path / "envs")
    asyncio.run(envs.check(["not-installed-anywhere-xyz==1"]))
    asyncio.run(Environments(tmp_path / "envs").check(["not-installed-anywhere-xyz==1"]))  # a restarted server
    assert _calls(tmp_path) == 1


def test_an_unreachable_index_is_no_verdict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(environments, "_uv", lambda: _fake_uv(
        tmp_path, "error: Request failed after 3 retries\n  Caused by: Failed to fetch: https://pypi.org/", 2))
    asyncio.run(Environments(tmp_path / "envs").check(["not-installed-anywhere-xyz==1"]))


def test_nothing_to_resolve_runs_no_resolver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(environments, "_uv", lambda: _fake_uv(tmp_path, "boom", 1))
    for requirements in ([], [f"pytest=={PYTEST}"]):
        asyncio.run(Environments(tmp_path / "envs").check(requirements))
    asyncio.run(Environments(tmp_path / "envs", enabled=False).check(["not-installed-anywhere-xyz"]))
    assert _calls(tmp_path) == 0
