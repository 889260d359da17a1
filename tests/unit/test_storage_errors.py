"""Failures of the database or the disk become typed, retryable answers, never a bare 500."""

from __future__ import annotations

import errno
import sqlite3

from sqlalchemy.exc import OperationalError

from launch.server.api.errors import storage_error
from launch.server.domain.errors import InsufficientStorage, Unavailable


def test_full_disk_is_507() -> None:
    assert isinstance(storage_error(OSError(errno.ENOSPC, "No space left on device")), InsufficientStorage)
    full_db = OperationalError("INSERT", {}, sqlite3.OperationalError("database or disk is full"))
    assert isinstance(storage_error(full_db), InsufficientStorage)


def test_unavailable_database_is_503() -> None:
    locked = OperationalError("UPDATE", {}, sqlite3.OperationalError("database is locked"))
    error = storage_error(locked)
    assert isinstance(error, Unavailable) and error.status_code == 503 and "nothing was changed" in error.detail


def test_other_errors_are_not_storage_errors() -> None:
    assert storage_error(ValueError("boom")) is None
    assert storage_error(OSError(errno.EACCES, "denied")) is None


def test_text_postgresql_cannot_hold_is_422_not_503() -> None:
    from sqlalchemy.exc import DBAPIError

    from launch.server.domain.errors import InvalidRequest

    nul = DBAPIError("SELECT", {}, Exception('invalid byte sequence for encoding "UTF8": 0x00'))
    error = storage_error(nul)
    assert isinstance(error, InvalidRequest) and error.status_code == 422
