"""Turning a bundle into a worker spec: its environment, its bundle's object key, its runtime config.
Shared by the reconciler (endpoint workers) and the batch job runner (job workers)."""

from __future__ import annotations

import time
from pathlib import Path

from launch.server.domain.bundles import Bundle
from launch.server.environments import EnvironmentBuildError, Environments
from launch.server.metrics import Metrics
from launch.server.settings import Settings
from launch.stores.placement import WorkerSpec


class BundleUnavailable(Exception):
    """The bundle's bytes are not where the server can read them."""


class WorkerFactory:
    def __init__(self, settings: Settings, environments: Environments, metrics: Metrics | None = None,
                 remote_environments: bool = False) -> None:
        """``remote_environments``: placement builds environments where workers run (none are built here)."""
        self.settings = settings
        self.environments = environments
        self.metrics = metrics or Metrics()
        self.remote_environments = remote_environments

    async def spec(self, bundle: Bundle, *, owner_id: str, worker_id: str, generation: int, threads: int,
                   log_dir: Path, cpus: float | None = None, memory: str | None = None,
                   gpus: int = 0) -> WorkerSpec:
        """A worker spec for ``bundle``; builds the bundle's environment first if it needs one. ``cpus`` and
        ``memory`` are the limits placement enforces (a batch job's worker gets the server's defaults)."""
        s = self.settings
        began = time.monotonic()
        if self.remote_environments:
            python, environment = "", ""
        else:
            try:
                python, environment = await self.environments.resolve(
                    bundle.environment_requirements, log_dir / "environment.log", bundle.python_version)
            except EnvironmentBuildError:
                self.metrics.environment("failed", time.monotonic() - began)
                raise
        environment_seconds = time.monotonic() - began
        if environment:
            self.metrics.environment(environment, environment_seconds if environment == "built" else None)
        runtime = {
            "packaging_type": bundle.packaging_type, "metadata": bundle.metadata, "app_config": bundle.app_config,
            "threads": threads, "drain_seconds": s.worker_drain_seconds, "max_result_bytes": s.max_result_bytes,
            "memory_limit": memory or s.batch_worker_memory,
            "workdir": str(s.data_dir / "work" / owner_id / worker_id),
        }
        return WorkerSpec(
            worker_id=worker_id, endpoint_id=owner_id, generation=generation, python=python,
            bundle_key=self.bundle_key(bundle), runtime=runtime,
            log_path=str(log_dir / f"worker-{worker_id}.log"), start_timeout=s.worker_start_timeout_seconds,
            cpus=cpus or s.batch_worker_cpus, memory=memory or s.batch_worker_memory, gpus=gpus,
            environment=environment, environment_seconds=environment_seconds,
            requirements=tuple(bundle.environment_requirements), python_minor=bundle.python_version,
        )

    def bundle_key(self, bundle: Bundle) -> str:
        """The object key of the bundle's bytes (placement ships them to the worker)."""
        if bundle.object_key is None:
            raise BundleUnavailable(
                f"bundle {bundle.name!r} points at {bundle.location!r}, which is not in this server's object "
                "store; upload the bundle through the server's upload URL"
            )
        return bundle.object_key
