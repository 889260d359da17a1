"""The ``ModelBundle`` record, as returned by the server."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass
class ModelBundle:
    """A model bundle: code (a pickled callable or a zip of modules) plus the requirements it needs."""

    name: str
    """The name of the bundle. Unique among the bundles of its owner."""
    bundle_id: str | None = None
    """The server's identifier of the bundle."""
    env_params: dict[str, Any] | None = None
    """Environment information given at creation (stored and shown back)."""
    location: str | None = None
    """An opaque location for the bundle's bytes."""
    metadata: dict[str, Any] | None = None
    """Metadata of the bundle (for pickled bundles, the source code of its functions)."""
    packaging_type: str | None = None
    """``cloudpickle``, ``zip`` or ``command``."""
    requirements: list[str] | None = None
    """Python requirements installed for the bundle's workers."""
    app_config: Any = None
    """Configuration passed to the bundle's loaders."""
    cloudpickle_version: str | None = None
    """The cloudpickle that pickled the bundle (its workers unpickle it, and pickle results, with the same)."""
    python_version: str | None = None
    """The Python minor that pickled the bundle (its workers run on the same)."""
    request_schema: dict[str, Any] | None = None
    """JSON Schema of a request's ``args`` (checked by the server, 422 naming the field)."""
    response_schema: dict[str, Any] | None = None
    """JSON Schema of a result (in the endpoint's OpenAPI document)."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelBundle:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values.setdefault("bundle_id", data.get("id"))
        return cls(**values)

    def __str__(self) -> str:
        return f"ModelBundle(bundle_name={self.name})"
