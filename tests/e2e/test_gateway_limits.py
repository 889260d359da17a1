"""The gateway's own limits on a real server: API keys listed with their last use and revoked while it runs,
request heads capped (a 16 MiB header gets 431 and leaves memory alone) and timed (slowloris is cut)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import LAUNCH, RunningServer, start_server
from tests.e2e.helpers import http, unique, wait_until
from tests.engines import engine_env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

HEAD_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("gateway"), None, env={
        "LAUNCH_HEADER_TIMEOUT_SECONDS": str(HEAD_TIMEOUT), "LAUNCH_API_KEY_LAST_USED_SECONDS": "1"})
    yield running
    running.stop()


def keys_cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LAUNCH, "api-keys", *args, "--data-dir", str(data_dir)], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **engine_env(data_dir), "COLUMNS": "200"})


def listed(data_dir: Path) -> dict[str, dict[str, object]]:
    """``launch api-keys list --json``, by prefix."""
    out = keys_cli(data_dir, "list", "--json")
    assert out.returncode == 0, out.stderr
    return {row["prefix"]: row for row in json.loads(out.stdout)}


def status_with(url: str, key: str) -> int:
    return http(url, key).get("/v1/model-bundles").status_code


# -- API keys ------------------------------------------------------------------------------------------------


def test_list_shows_each_key_with_its_last_use(gateway: RunningServer) -> None:
    user = unique("kate")
    used, unused = gateway.key(user), gateway.key(user)
    assert status_with(gateway.url, used) == 200
    wait_until(lambda: listed(gateway.data_dir)[used[:11]]["last_used_at"], 10, "last_used_at of the used key")
    rows = listed(gateway.data_dir)
    assert rows[used[:11]]["owner"] == rows[unused[:11]]["owner"] == user
    assert rows[unused[:11]]["last_used_at"] is None and rows[used[:11]]["revoked_at"] is None
    table = keys_cli(gateway.data_dir, "list", "--user", user)
    assert table.returncode == 0 and used[:11] in table.stdout and unused[:11] in table.stdout
    assert "last used" in table.stdout
    assert used not in table.stdout + json.dumps(rows)  # the keys themselves are never shown


def test_a_revoked_key_is_refused_at_once_by_the_running_server(gateway: RunningServer) -> None:
    user = unique("rex")
    doomed, kept, by_full_key = gateway.key(user), gateway.key(user), gateway.key(user)
    for key in (doomed, kept, by_full_key):
        assert status_with(gateway.url, key) == 200  # now cached in the server
    revoked = keys_cli(gateway.data_dir, "revoke", doomed[:11])  # the prefix that list shows
    assert revoked.returncode == 0, revoked.stdout + revoked.stderr
    started = time.monotonic()
    wait_until(lambda: status_with(gateway.url, doomed) == 401, 5, "the revoked key to be refused", 0.05)
    assert time.monotonic() - started < 3
    assert keys_cli(gateway.data_dir, "revoke", by_full_key).returncode == 0
    wait_until(lambda: status_with(gateway.url, by_full_key) == 401, 5, "the key revoked by value to be refused")
    assert status_with(gateway.url, kept) == 200  # the owner's other key still works
    rows = listed(gateway.data_dir)
    assert rows[doomed[:11]]["revoked_at"] and rows[by_full_key[:11]]["revoked_at"]
    assert rows[kept[:11]]["revoked_at"] is None


def test_revoke_names_what_it_cannot_find(gateway: RunningServer) -> None:
    out = keys_cli(gateway.data_dir, "revoke", "lk_nothing")
    assert out.returncode == 1 and "no key" in out.stdout


# -- request heads -------------------------------------------------------------------------------------------


def vmrss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def huge_header(port: int, size: int) -> bytes:
    """Send a request whose one header is ``size`` bytes; what came back (or b'' if cut off)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        # the server stops reading and closes: what it answered may still be readable
        with contextlib.suppress(OSError):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * size + b"\r\n\r\n")
        try:
            return sock.recv(4096)
        except OSError:
            return b""


def test_a_16_mib_header_gets_431_and_memory_stays_bounded(gateway: RunningServer) -> None:
    port = int(gateway.url.rsplit(":", 1)[1])
    key = gateway.key(unique("heady"))
    assert status_with(gateway.url, key) == 200
    before = vmrss_kib(gateway.process.pid)
    answers: list[bytes] = []
    threads = [threading.Thread(target=lambda: answers.append(huge_header(port, 16 << 20))) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    after = vmrss_kib(gateway.process.pid)
    assert len(answers) == 20
    assert all(a.startswith(b"HTTP/1.1 431 ") or a == b"" for a in answers), answers
    assert any(a.startswith(b"HTTP/1.1 431 ") for a in answers)
    assert b"limit of 32768 bytes" in next(a for a in answers if a)
    # before the cap, 20 such requests took the gateway from 170 to 522 MB
    assert after - before < 64 * 1024, f"RSS grew from {before} KiB to {after} KiB"
    assert status_with(gateway.url, key) == 200  # and it keeps serving


def test_headers_under_the_cap_are_served(gateway: RunningServer) -> None:
    response = httpx.get(gateway.url + "/healthz", headers={"X-Big": "a" * 20_000}, timeout=10)
    assert response.status_code == 200
    over = httpx.get(gateway.url + "/healthz", headers={"X-Big": "a" * 40_000}, timeout=10)
    assert over.status_code == 431 and "32768" in over.json()["detail"]


def test_a_slowloris_connection_is_cut(gateway: RunningServer) -> None:
    port = int(gateway.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        answer, closed_after = b"", None
        while time.monotonic() - started < HEAD_TIMEOUT + 8:
            try:
                sock.sendall(b"X-Drip: 1\r\n")  # a header line every half second, never the blank line
                chunk = sock.recv(4096)
            except TimeoutError:
                assert httpx.get(gateway.url + "/healthz", timeout=5).status_code == 200  # others are served
                continue
            except OSError:
                chunk = b""
            answer += chunk
            if not chunk:
                closed_after = time.monotonic() - started
                break
    assert closed_after is not None, "the trickling connection was never closed"
    assert closed_after < HEAD_TIMEOUT + 3
    assert answer.startswith(b"HTTP/1.1 408 ") or answer == b""
