"""Per-target virtual environments under bench/.envs/<name>/, built with uv from pinned requirement files."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent
ENVS_DIR = BENCH_DIR / ".envs"
REQUIREMENTS_DIR = BENCH_DIR / "requirements"
STAMP = ".bench-requirements.sha256"


def python_of(name: str) -> Path:
    return ENVS_DIR / name / "bin" / "python"


def _digest(requirements: Path) -> str:
    return hashlib.sha256(requirements.read_bytes()).hexdigest()


def _base_python() -> str:
    return shutil.which("python3.11") or shutil.which("python3") or "python3"


def ensure_env(name: str) -> Path:
    """Create or refresh bench/.envs/<name> from requirements/<name>.txt; returns its python."""
    requirements = REQUIREMENTS_DIR / f"{name}.txt"
    env_dir = ENVS_DIR / name
    stamp = env_dir / STAMP
    digest = _digest(requirements)
    if python_of(name).exists() and stamp.exists() and stamp.read_text().strip() == digest:
        return python_of(name)
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    if not python_of(name).exists():
        subprocess.run(
            ["uv", "venv", "--quiet", "--python", _base_python(), str(env_dir)], check=True, env=env
        )
    subprocess.run(
        ["uv", "pip", "install", "--quiet", "--python", str(python_of(name)), "-r", str(requirements)],
        check=True,
        env=env,
    )
    stamp.write_text(digest + "\n")
    return python_of(name)
