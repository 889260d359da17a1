"""Python environments for bundles: the server's own interpreter when it already satisfies a bundle's
requirements, otherwise a virtualenv built with uv, cached by the hash of the requirements.

A bundle environment sees its own packages first and the server's packages after them (through a ``.pth``
file), so the worker runtime is always importable while the bundle's pins win.

Requirements are resolved (``uv pip compile``, nothing installed) when a bundle is created, so a set that can
never be installed is refused then, with uv's reason, instead of failing every endpoint that uses it later.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from launch.server.domain.errors import InvalidRequest

log = logging.getLogger("launch.environments")
RESOLVE_TIMEOUT_SECONDS = 60.0  # under the SDK's request timeout (120 s)
# uv's words for "the index could not be reached": no verdict on the requirements themselves
_NETWORK_TROUBLE = ("Failed to fetch", "error sending request", "dns error", "Request failed after",
                    "connection", "timed out", "Could not connect")


class EnvironmentBuildError(Exception):
    """The bundle's requirements could not be installed; the message carries the installer's output."""


class RequirementsUnresolvable(InvalidRequest):
    """No set of packages satisfies the requirements (a user error: 422 with uv's reason)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the requirements cannot be installed: {reason}")


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


def _uv() -> str:
    return shutil.which("uv") or str(Path(sys.executable).with_name("uv"))


class Environments:
    def __init__(self, root: Path, enabled: bool = True) -> None:
        self.root = root
        self.enabled = enabled
        self._locks: dict[str, asyncio.Lock] = {}
        self._unresolvable: dict[str, str] = {}  # requirements hash -> uv's reason

    async def check(self, requirements: list[str]) -> None:
        """Refuse requirements that no set of packages satisfies (``RequirementsUnresolvable``). Cached by
        hash; nothing to do when the server's own packages satisfy them. An unreachable index is no verdict:
        the set is accepted (its environment build will say more)."""
        if not requirements or not self.enabled or satisfied_here(requirements):
            return
        digest = requirements_hash(requirements)
        if digest in self._unresolvable:
            raise RequirementsUnresolvable(self._unresolvable[digest])
        marker = self.root / "resolved" / digest
        if marker.exists() or (self.root / digest / ".complete").exists():
            return
        argv = [_uv(), "pip", "compile", "-", "--quiet", "--no-header", "--python", sys.executable]
        proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE,
                                                    stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.PIPE)
        try:
            _, err = await asyncio.wait_for(proc.communicate("\n".join(requirements).encode()),
                                            RESOLVE_TIMEOUT_SECONDS)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            log.warning("resolving %s took over %.0f s; accepted unresolved", requirements, RESOLVE_TIMEOUT_SECONDS)
            return
        output = err.decode("utf-8", "replace").strip()
        if proc.returncode == 0:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
            return
        if any(word.lower() in output.lower() for word in _NETWORK_TROUBLE):
            log.warning("could not reach the package index to resolve %s: %s", requirements, output[-500:])
            return
        reason = output[-3000:] or f"uv pip compile exited with code {proc.returncode}"
        self._unresolvable[digest] = reason
        raise RequirementsUnresolvable(reason)

    async def python_for(self, requirements: list[str], log_path: Path) -> str:
        """The interpreter a bundle with ``requirements`` runs on (builds its environment if needed)."""
        if not requirements or satisfied_here(requirements) or not self.enabled:
            return sys.executable
        digest = requirements_hash(requirements)
        lock = self._locks.setdefault(digest, asyncio.Lock())
        async with lock:
            env = self.root / digest
            python = env / "bin" / "python"
            if (env / ".complete").exists():
                return str(python)
            await self._build(env, requirements, log_path)
            return str(python)

    async def _build(self, env: Path, requirements: list[str], log_path: Path) -> None:
        uv = _uv()
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
    with open(log_path, "ab") as out:
        out.write(f"$ {' '.join(argv)}\n".encode())
        out.flush()
        start = out.tell()
        proc = await asyncio.create_subprocess_exec(*argv, stdout=out, stderr=out)
        code = await proc.wait()
    if code != 0:  # this run's output only (the log keeps earlier attempts too)
        with open(log_path, "rb") as log_file:
            log_file.seek(start)
            tail = log_file.read()[-3000:].decode("utf-8", "replace")
        raise EnvironmentBuildError(f"installing requirements failed (exit {code}):\n{tail}")
