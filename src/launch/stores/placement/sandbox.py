"""The worker sandbox: how a worker process is contained with bubblewrap (as Flatpak uses it).

Each worker runs as its own unprivileged user (a uid no other process has) in new mount, PID, IPC, UTS and
(by default) network namespaces. Its filesystem is a fresh tmpfs root holding, read-only, the system
libraries, its interpreter and environment; writable, only a private scratch directory and the directory
of its own socket. Its bundle arrives as a read-only file descriptor the server opened, not as a path.
It sees neither the data directory nor other workers' sockets nor other processes, cannot signal the gateway
(which is outside its PID namespace), and its environment holds
nothing of the platform's. ``setpriv`` (util-linux) drops to the worker's uid with no capabilities and
``no_new_privs`` before the interpreter starts.

``sandbox_argv`` is pure (paths in, argv out) so the policy can be read and tested on its own.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from launch.stores.placement.limits import processes_of

INSIDE_ROOT = "/launch"
INSIDE_SCRATCH = f"{INSIDE_ROOT}/scratch"
INSIDE_SOCKET_DIR = f"{INSIDE_ROOT}/sock"
SOCKET_NAME = "worker.sock"
# system directories every interpreter needs, bound read-only (a symlink on merged-/usr hosts stays one)
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# the few files of /etc a Python process reads; not the rest of /etc (it may hold the operator's config)
ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/ssl", "/etc/ca-certificates",
             "/etc/localtime", "/etc/nsswitch.conf", "/etc/hosts", "/etc/mime.types", "/etc/alternatives",
             "/etc/os-release")
SAFE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": INSIDE_SCRATCH, "TMPDIR": "/tmp",
            "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}


@dataclass(frozen=True)
class SandboxPaths:
    """Host paths one worker's sandbox is made of."""

    readable: tuple[str, ...]  # interpreter prefixes, the server's import path, the bundle's environment
    scratch: str  # private writable directory, bound at INSIDE_SCRATCH (HOME)
    socket_dir: str  # the worker's own socket directory, bound at INSIDE_SOCKET_DIR
    uid: int
    network: bool  # True: share the host's network; False: an empty network namespace


def sandbox_argv(bwrap: str, setpriv: str, paths: SandboxPaths, command: list[str],
                 clear_env: bool = True) -> list[str]:
    """The bubblewrap command line that runs ``command`` in the worker sandbox described by ``paths``.
    ``clear_env=False``: the caller starts bubblewrap with exactly the environment the worker may have (a value
    that must not appear in an argv, such as a token)."""
    argv = [bwrap, "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--hostname", "launch-worker"]
    if clear_env:
        argv.append("--clearenv")
    if not paths.network:
        argv.append("--unshare-net")
    for name, value in SAFE_ENV.items():
        argv += ["--setenv", name, value]
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/run"]
    for directory in SYSTEM_DIRS:
        argv += _bind_system(directory)
    for path in ETC_FILES:
        argv += ["--ro-bind-try", path, path]
    # bubblewrap makes a bind's missing parents mode 0700 (root's): make them traversable for the worker's uid
    parents = {str(parent) for path in (*paths.readable, INSIDE_SCRATCH, INSIDE_SOCKET_DIR)
               for parent in Path(path).parents if str(parent) != "/"}
    for parent in sorted(parents, key=lambda p: (p.count("/"), p)):
        argv += ["--perms", "0755", "--dir", parent]
    for path in paths.readable:
        argv += ["--ro-bind", path, path]
    argv += ["--bind", paths.scratch, INSIDE_SCRATCH,
             "--bind", paths.socket_dir, INSIDE_SOCKET_DIR, "--chdir", INSIDE_SCRATCH,
             "--remount-ro", "/"]
    uid = str(paths.uid)
    return [*argv, "--", setpriv, "--reuid", uid, "--regid", uid, "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all", "--no-new-privs", "--", *command]


def _bind_system(directory: str) -> list[str]:
    path = Path(directory)
    if path.is_symlink():
        return ["--symlink", os.readlink(path), directory]
    if path.is_dir():
        return ["--ro-bind", directory, directory]
    return []


def import_paths(python: str, hidden: Path) -> tuple[str, ...]:
    """Host directories a worker on ``python`` must read: both interpreters' prefixes (the server's and the
    bundle environment's) and the server's import path (the worker runtime, its dependencies, an editable
    install's source tree). Nothing that is, holds or lies in ``hidden`` (the data directory) is included,
    except the bundle's own environment."""
    env_root = Path(python).parent.parent.resolve()
    base_root = Path(python).resolve().parent.parent  # the interpreter a venv links to (another minor's too)
    hidden = hidden.resolve()
    chosen: list[Path] = []
    for entry in [sys.base_prefix, sys.prefix, sys.exec_prefix, str(env_root), str(base_root), *sys.path]:
        path = Path(entry).resolve() if entry else None
        if path is None or not path.is_dir() or path == Path("/") or hidden.is_relative_to(path):
            continue
        if path.is_relative_to(hidden) and not path.is_relative_to(env_root):
            continue
        if any(path.is_relative_to(c) for c in chosen):
            continue
        chosen = [c for c in chosen if not c.is_relative_to(path)] + [path]
    return tuple(str(c) for c in chosen)


@dataclass(frozen=True)
class SandboxTools:
    bwrap: str
    setpriv: str


def find_tools() -> tuple[SandboxTools | None, str]:
    """The sandbox tools if this host can run them (root, bubblewrap that works), else why not."""
    bwrap, setpriv = shutil.which("bwrap"), shutil.which("setpriv")
    if bwrap is None:
        return None, "bubblewrap (bwrap) is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    if setpriv is None:
        return None, "setpriv (util-linux) is not installed"
    if os.geteuid() != 0:
        return None, "the server does not run as root, so it cannot give workers users of their own"
    probe = [bwrap, "--unshare-pid", "--unshare-ipc", "--ro-bind", "/", "/", "--proc", "/proc", "--dev",
             "/dev", "--", setpriv, "--reuid", "65534", "--regid", "65534", "--clear-groups", "true"]
    try:
        result = subprocess.run(probe, capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"bubblewrap does not run here: {exc}"
    if result.returncode != 0:
        return None, f"bubblewrap does not run here: {result.stderr.decode(errors='replace').strip()}"
    return SandboxTools(bwrap, setpriv), ""


class UidPool:
    """Worker uids no other process on this host uses. Several servers may share a host (tests, gateways), so
    a uid is claimed with an exclusive ``flock`` on a file named for it in a host-wide directory — held while
    the worker lives, released by the kernel if the server dies — and only if no process runs as it."""

    def __init__(self, base: int, count: int, lock_dir: Path | None = None) -> None:
        self.base, self.count = base, count
        self.lock_dir = lock_dir or _default_lock_dir()
        self.lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._held: dict[int, int] = {}  # uid -> lock file descriptor
        self._next = secrets.randbelow(count)

    def acquire(self) -> int | None:
        """A free uid (now held by this process), or None when all ``count`` are taken."""
        for step in range(self.count):
            uid = self.base + (self._next + step) % self.count
            if uid in self._held:
                continue
            fd = os.open(self.lock_dir / str(uid), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            if processes_of(uid):  # a worker of a server that died, still being torn down, or a stranger
                os.close(fd)
                continue
            self._held[uid] = fd
            self._next = (self._next + step + 1) % self.count
            return uid
        return None

    def release(self, uid: int) -> None:
        fd = self._held.pop(uid, None)
        if fd is not None:
            os.close(fd)


def _default_lock_dir() -> Path:
    run = Path("/run")
    base = run if run.is_dir() and os.access(run, os.W_OK) else Path(tempfile.gettempdir())
    return base / "launch-worker-uids"
