"""JSON shapes of resources, shared by the native and the legacy API."""

from __future__ import annotations

from typing import Any

from launch.server.control.pool import EndpointPool
from launch.server.domain.endpoints import Endpoint
from launch.server.sealing import SECRET_FIELDS


def endpoint_view(endpoint: Endpoint, pool: EndpointPool | None) -> dict[str, Any]:
    s = endpoint.settings
    available = len(pool.serving) if pool is not None else 0
    return {
        "id": endpoint.id,
        "name": endpoint.name,
        "endpoint_type": endpoint.endpoint_type,
        "bundle_name": endpoint.bundle_name,
        "status": endpoint.status.value,
        "status_reason": endpoint.status_reason,
        "serving_bundle_name": endpoint.serving_bundle_name,  # None until a generation served
        "failed_rollout": endpoint.failed_rollout.to_dict() if endpoint.failed_rollout else None,
        "resource_settings": {"cpus": s.cpus, "gpus": s.gpus, "memory": s.memory, "gpu_type": s.gpu_type,
                              "storage": s.storage},
        "worker_settings": {"min_workers": s.min_workers, "max_workers": s.max_workers,
                            "per_worker": s.per_worker, "available_workers": available,
                            "unavailable_workers": max(0, s.min_workers - available)},
        "per_worker": s.per_worker,
        "post_inference_hooks": s.post_inference_hooks,
        "metadata": endpoint.metadata,
        "labels": endpoint.labels,
        "configs": _shown_configs(s.extra),
        "destination": endpoint.queue,
        "generation": endpoint.generation,
        "created_at": endpoint.created_at,
        "updated_at": endpoint.updated_at,
    }


def _shown_configs(extra: dict[str, Any]) -> dict[str, Any]:
    """An endpoint's extra settings as the API shows them: callback credentials redacted (they are used, never
    shown, like a task's)."""
    auth = extra.get("default_callback_auth")
    if not isinstance(auth, dict):
        return extra
    shown = {k: ("<redacted>" if k in SECRET_FIELDS else v) for k, v in auth.items()}
    return {**extra, "default_callback_auth": shown}
