"""Python environments for bundles: the server's own interpreter when it already satisfies a bundle's
requirements, otherwise a virtualenv built with uv, cached by the hash of the requirements.

A bundle environment sees its own packages first and the server's packages after them (through a ``.pth``
file), so the worker runtime is always importable while the bundle's pins win.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement


class EnvironmentBuildError(Exception):
    """The bundle's requirements could not be installed; the message carries the installer's output."""


def satisfied_here(requirements: list[str]) -> bool:
    """True when every requirement is already met by the running interpreter's packages."""
    for line in requirements:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            return False
        if req.marker is not None and not req.marker.evaluate():
            continue
        if req.url:
            return False
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            return False
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            return False
    return True


def requirements_hash(requirements: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(requirements)).encode()).hexdigest()[:16]


class Environments:
    def __init__(self, root: Path, enabled: bool = True) -> None:
        self.root = root
        self.enabled = enabled
        self._locks: dict[str, asyncio.Lock] = {}

    async def python_for(self, requirements: list[str], log_path: Path) -> str:
        """The interpreter a bundle with ``requirements`` runs on (builds its environment if needed)."""
        return (await self.resolve(requirements, log_path))[0]

    async def resolve(self, requirements: list[str], log_path: Path) -> tuple[str, str]:
        """(interpreter, how it was had): ``server`` (the server's own), ``cached`` or ``built``."""
        if not requirements or satisfied_here(requirements) or not self.enabled:
            return sys.executable, "server"
        digest = requirements_hash(requirements)
        lock = self._locks.setdefault(digest, asyncio.Lock())
        async with lock:
            env = self.root / digest
            python = env / "bin" / "python"
            if (env / ".complete").exists():
                return str(python), "cached"
            await self._build(env, requirements, log_path)
            return str(python), "built"

    async def _build(self, env: Path, requirements: list[str], log_path: Path) -> None:
        uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
        shutil.rmtree(env, ignore_errors=True)
        env.parent.mkdir(parents=True, exist_ok=True)
        await _run([uv, "venv", "--quiet", "--python", sys.executable, str(env)], log_path)
        await _run([uv, "pip", "install", "--python", str(env / "bin" / "python"), *requirements], log_path)
        site = _site_packages(env)
        ours = sysconfig.get_paths()["purelib"]
        (site / "_launch_server_packages.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
        (env / ".complete").touch()


def _site_packages(env: Path) -> Path:
    matches = list((env / "lib").glob("python*/site-packages"))
    if not matches:
        raise EnvironmentBuildError(f"no site-packages in {env}")
    return matches[0]


async def _run(argv: list[str], log_path: Path) -> None:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"$ {' '.join(argv)}\n".encode())
        log.flush()
        proc = await asyncio.create_subprocess_exec(*argv, stdout=log, stderr=log)
        code = await proc.wait()
    if code != 0:
        tail = log_path.read_bytes()[-3000:].decode("utf-8", "replace")
        raise EnvironmentBuildError(f"installing requirements failed (exit {code}):\n{tail}")
