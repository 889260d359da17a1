"""Python environments for bundles: the server's own interpreter when it already satisfies a bundle's
requirements, otherwise a virtualenv built with uv, cached by the hash of the requirements.

A bundle environment sees its own packages first and the server's packages after them (through a ``.pth``
file), so the worker runtime is always importable while the bundle's pins win.

Requirements are resolved (``uv pip compile``, nothing installed) when a bundle is created, so a set that can
never be installed is refused then, with uv's reason, instead of failing every endpoint that uses it later.

A bundle pickled on another Python minor than the server's gets an environment built on that minor's
interpreter, where the host has one (cloudpickle's pickled functions are code objects of one minor); the
worker runtime's compiled dependencies are then installed into it too, at the server's versions.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import hashlib
import logging
import os
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


def requirements_hash(requirements: list[str], python_minor: str | None = None) -> str:
    text = "\n".join(sorted(requirements)) + (f"\npython=={python_minor}" if python_minor else "")
    return hashlib.sha256(text.encode()).hexdigest()[:16]


SERVER_MINOR = f"{sys.version_info[0]}.{sys.version_info[1]}"
# what the worker runtime imports that is compiled for one Python minor (installed into foreign-minor envs)
WORKER_RUNTIME_PACKAGES = ("orjson", "uvloop", "cloudpickle")


def _candidates(minor: str) -> list[str]:
    """Interpreters that may be Python ``minor``: on PATH, pyenv's (``$PYENV_ROOT``) and uv's installs,
    /usr/local."""
    found = [shutil.which(f"python{minor}") or ""]
    home = os.path.expanduser("~")
    pyenv = os.environ.get("PYENV_ROOT") or f"{home}/.pyenv"
    for pattern in (f"{pyenv}/versions/{minor}.*/bin/python{minor}", f"/usr/local/bin/python{minor}",
                    f"/usr/bin/python{minor}", f"{home}/.local/share/uv/python/cpython-{minor}.*/bin/python{minor}"):
        found += sorted(glob.glob(pattern), reverse=True)
    return [c for c in dict.fromkeys(found) if c]


async def find_python(minor: str) -> str | None:
    """An interpreter of Python ``minor`` ("3.12") on this host, or None."""
    if minor == SERVER_MINOR:
        return sys.executable
    for candidate in _candidates(minor):
        proc = await asyncio.create_subprocess_exec(
            candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        out, _ = await proc.communicate()
        if proc.returncode == 0 and out.decode().strip() == minor:
            return candidate
    return None


def _uv() -> str:
    return shutil.which("uv") or str(Path(sys.executable).with_name("uv"))


class Environments:
    def __init__(self, root: Path, enabled: bool = True) -> None:
        self.root = root
        self.enabled = enabled
        self._locks: dict[str, asyncio.Lock] = {}
        self._pythons: dict[str, str | None] = {}
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

    async def interpreter(self, minor: str) -> str | None:
        """This host's interpreter for Python ``minor`` (looked up once), or None."""
        if minor not in self._pythons:
            self._pythons[minor] = await find_python(minor)
        return self._pythons[minor]

    async def python_problem(self, minor: str) -> str | None:
        """Why bundles pickled on Python ``minor`` cannot run here, or None when they can."""
        if minor == SERVER_MINOR:
            return None
        if not self.enabled:
            return (f"the bundle was pickled on Python {minor}, but this server runs Python {SERVER_MINOR} and "
                    "builds no environments; create the bundle from Python " + SERVER_MINOR)
        if await self.interpreter(minor) is None:
            return (f"the bundle was pickled on Python {minor}, but this server runs Python {SERVER_MINOR} and "
                    f"has no Python {minor} interpreter to run it with (pickled functions only load on the "
                    f"Python minor that pickled them): create the bundle from Python {SERVER_MINOR}, or ask the "
                    f"operator to install Python {minor}")
        return None

    async def python_for(self, requirements: list[str], log_path: Path, python_minor: str | None = None) -> str:
        """The interpreter a bundle with ``requirements`` (pickled on ``python_minor``) runs on; builds its
        environment if needed."""
        return (await self.resolve(requirements, log_path, python_minor))[0]

    async def resolve(self, requirements: list[str], log_path: Path,
                      python_minor: str | None = None) -> tuple[str, str]:
        """``python_for`` and how the interpreter was had: ``server`` (the server's own), ``cached`` or
        ``built`` (the cold-start timeline and the metrics say which)."""
        foreign = python_minor is not None and python_minor != SERVER_MINOR
        if not foreign and (not requirements or satisfied_here(requirements) or not self.enabled):
            return sys.executable, "server"
        base = sys.executable
        if foreign:
            assert python_minor is not None
            found = await self.interpreter(python_minor)
            problem = await self.python_problem(python_minor)
            if found is None or problem is not None:
                raise EnvironmentBuildError(problem or f"no Python {python_minor} here")
            base = found
            requirements = [*requirements, *_runtime_pins(requirements)]
        digest = requirements_hash(requirements, python_minor if foreign else None)
        lock = self._locks.setdefault(digest, asyncio.Lock())
        async with lock:
            env = self.root / digest
            python = env / "bin" / "python"
            if (env / ".complete").exists():
                _note(log_path, f"using the cached environment {env} of: {' '.join(requirements)}\n")
                return str(python), "cached"
            await self._build(env, requirements, log_path, base)
            return str(python), "built"

    async def _build(self, env: Path, requirements: list[str], log_path: Path, base: str) -> None:
        uv = _uv()
        shutil.rmtree(env, ignore_errors=True)
        env.parent.mkdir(parents=True, exist_ok=True)
        await _run([uv, "venv", "--quiet", "--python", base, str(env)], log_path)
        await _run([uv, "pip", "install", "--python", str(env / "bin" / "python"), *requirements], log_path)
        site = _site_packages(env)
        ours = sysconfig.get_paths()["purelib"]
        (site / "_launch_server_packages.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
        (env / ".complete").touch()


def _runtime_pins(requirements: list[str]) -> list[str]:
    """The worker runtime's compiled dependencies at the server's versions, unless the bundle names them."""
    named = set()
    for line in requirements:
        try:
            named.add(Requirement(line).name.lower())
        except InvalidRequirement:
            continue
    return [f"{name}=={metadata.version(name)}" for name in WORKER_RUNTIME_PACKAGES if name not in named]


def _site_packages(env: Path) -> Path:
    matches = list((env / "lib").glob("python*/site-packages"))
    if not matches:
        raise EnvironmentBuildError(f"no site-packages in {env}")
    return matches[0]


def _note(log_path: Path, line: str) -> None:
    with contextlib.suppress(OSError):
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a", encoding="utf-8") as out:
            out.write(line)


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
