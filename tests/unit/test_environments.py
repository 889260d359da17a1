"""Whether the server's own interpreter already satisfies a bundle's requirements (no venv to build)."""

from __future__ import annotations

from importlib import metadata

import pytest

from launch.server.environments import requirements_hash, satisfied_here

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
