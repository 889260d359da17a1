"""Every CLI command documents itself: `--help` works everywhere (a typer/click mismatch once broke it)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from launch.cli import app

COMMANDS = [
    [], ["server"], ["bench"], ["api-keys"], ["api-keys", "create"], ["bundles"], ["bundles", "list"],
    ["bundles", "get"], ["bundles", "delete"], ["endpoints"], ["endpoints", "list"], ["endpoints", "get"],
    ["endpoints", "delete"], ["endpoints", "logs"], ["endpoints", "wait"], ["tasks"], ["tasks", "get"],
    ["batch-jobs"], ["batch-jobs", "get"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "launch")
def test_help(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == "0.1.0"
