"""Which engines the test servers run on: the embedded defaults, or with ``LAUNCH_TEST_ENGINES=scaleout``
PostgreSQL + Redis + S3 and, when it runs, a Ray cluster (started by ``scripts/engines start``, which writes
their URLs to ``.engines/env``).

Every data directory gets engines of its own (a database, a Redis namespace and an S3 prefix named after it),
so independent test servers never join each other as gateways of one deployment, and a server restarted on
the same data directory finds its state again.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from pathlib import Path

import pytest

SCALE_OUT = os.environ.get("LAUNCH_TEST_ENGINES", "embedded") == "scaleout"
# workers on a Ray cluster instead of local processes (scripts/engines starts one when Ray is installed)
RAY = os.environ.get("LAUNCH_TEST_PLACEMENT_URL", "") if SCALE_OUT else ""
LOCAL_WORKERS = not RAY
# for tests that inspect worker processes, sockets, logs or the sandbox of the server's own host
local_workers_only = pytest.mark.skipif(not LOCAL_WORKERS, reason="inspects the server's worker processes on "
                                        "this host (local:// placement); workers run on the Ray cluster")


def _setting(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"LAUNCH_TEST_ENGINES=scaleout needs {name}: run scripts/engines start and source "
                           ".engines/env")
    return value


_SESSION = uuid.uuid4().hex  # a data dir path can come back in a later test session: its engines must not


def deployment_name(data_dir: Path) -> str:
    return "t" + hashlib.sha256(f"{_SESSION}:{data_dir.resolve()}".encode()).hexdigest()[:16]


def engine_env(data_dir: Path, name: str | None = None, scale_out: bool = SCALE_OUT) -> dict[str, str]:
    """``LAUNCH_*_URL`` variables for a server on ``data_dir`` (empty on the embedded defaults). Servers given
    the same ``name`` share their engines (several gateways of one deployment)."""
    if not scale_out:
        return {}
    name = name or deployment_name(data_dir)
    database = _setting("LAUNCH_TEST_DATABASE_URL")
    _create_database(database, name)
    base, _, _ = database.rpartition("/")
    broker = _setting("LAUNCH_TEST_BROKER_URL")
    objects = _setting("LAUNCH_TEST_OBJECTS_URL").rstrip("/")
    env = {"LAUNCH_DATABASE_URL": f"{base}/{name}", "LAUNCH_BROKER_URL": f"{broker}?namespace={name}",
           "LAUNCH_OBJECTS_URL": f"{objects}/{name}"}
    if RAY:
        env["LAUNCH_PLACEMENT_URL"] = RAY
    return env


def _create_database(url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):  # another test made it meanwhile
                conn.execute(f'CREATE DATABASE "{name}"')
