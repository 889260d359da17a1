"""Validation of user-chosen names (they appear raw in URL paths of the legacy client)."""

from __future__ import annotations

import re

from launch.server.domain.errors import InvalidRequest

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
RESERVED = {"creation_logs"}


def validate_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidRequest(
            f"invalid {kind} name {name!r}: use 1-128 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    if name in RESERVED:
        raise InvalidRequest(f"{kind} name {name!r} is reserved")
    return name
