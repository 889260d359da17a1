"""One typed settings object, from command-line flags and ``LAUNCH_*`` environment variables."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from launch.net_guard import FetchPolicy


def _machine_memory() -> int:
    """Physical memory in bytes (MemTotal)."""
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LAUNCH_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("launch-data")
    public_url: str | None = Field(default=None, description="Base URL clients use to reach this server")

    database_url: str | None = None
    objects_url: str | None = None
    broker_url: str = "embedded://"
    placement_url: str = "local://"

    max_request_bytes: int = 10 * 1024 * 1024
    max_bundle_bytes: int = 1024 * 1024 * 1024  # uploads (bundles, batch inputs); a larger declared length gets 413
    sync_timeout_seconds: float = 110.0
    worker_start_timeout_seconds: float = 600.0
    worker_drain_seconds: float = 30.0
    task_max_attempts: int = 3
    task_lease_seconds: float = 60.0
    task_timeout_seconds: float = 3600.0
    task_retention_seconds: float = Field(default=7 * 86400.0, gt=0,
                                          description="How long finished tasks and their results are kept")
    task_cancel_stops_worker: bool = Field(default=False, description="Cancelling a running task recycles its "
                                           "worker (other tasks on it are retried); otherwise its result is dropped")
    callback_max_attempts: int = 10
    callback_retry_base_seconds: float = 1.0
    callback_timeout_seconds: float = 10.0
    callback_ca_file: str | None = Field(default=None, description="Extra CA certificates (PEM) trusted for "
                                         "https callback receivers")
    max_queued_tasks: int = 100_000
    result_url_ttl_seconds: int = 12 * 3600
    upload_url_ttl_seconds: int = 3600
    scale_to_zero_after_seconds: float = 60.0
    reconcile_interval_seconds: float = 0.5
    worker_restart_limit: int = 3

    fetch_allow_private: bool = False
    fetch_allowed_schemes: list[str] = ["http", "https"]
    fetch_max_bytes: int = 100 * 1024 * 1024
    fetch_timeout_seconds: float = 30.0

    build_environments: bool = True

    metrics_enabled: bool = True  # count and time every request (off only to measure what that costs)
    metrics_public: bool = False  # /metrics without an admin API key (a scraper on a trusted network)
    access_log: str = "data"  # "data" (<data dir>/logs/access.log), "-" (stderr), "off", or a file path
    log_format: str = "text"  # "text" or "json" (the server's log lines and its access log)

    # containment of user code (README: "Isolation")
    sandbox: Literal["auto", "required", "off"] = "auto"
    sandbox_network: bool = False
    sandbox_uid_base: int = Field(default=524288, ge=1000, le=2**31 - 70000)
    sandbox_uid_count: int = Field(default=65536, ge=1, le=65536)
    worker_pids_limit: int = Field(default=512, ge=16)
    batch_worker_cpus: float = Field(default=1.0, gt=0, le=1024)
    batch_worker_memory: str = Field(default="4Gi", pattern=r"^\d+(\.\d+)?([KMGTPE]i?|[kmgtpe])?$")
    max_result_bytes: int = Field(default=100 * 1024 * 1024, ge=1024, le=2**31 - 1024)

    def fetch_policy(self) -> FetchPolicy:
        """What the gateway may fetch for ``url`` inputs (and callbacks)."""
        return FetchPolicy(allowed_schemes=frozenset(self.fetch_allowed_schemes),
                           allow_private=self.fetch_allow_private, max_bytes=self.fetch_max_bytes,
                           timeout=self.fetch_timeout_seconds)

    # request heads (line + headers): bigger ones get 431, slower ones 408 (uvicorn has no bound of its own)
    max_header_bytes: int = 32 * 1024
    header_timeout_seconds: float = 10.0
    # API keys revoked by `launch api-keys revoke` are refused within this; last-used times written this often
    api_key_recheck_seconds: float = 0.5
    api_key_last_used_seconds: float = 60.0

    # quotas (server policy on top of each setting's own validation; see launch.server.domain.quotas)
    max_workers_per_endpoint: int = 32
    max_workers_per_owner: int = 64
    max_endpoints_per_owner: int = 50
    max_queued_tasks_per_owner: int = 100_000
    # what the host offers workers (placement refuses what does not fit; see launch.server.control.capacity)
    host_cpus: float = Field(default_factory=lambda: float(len(os.sched_getaffinity(0))))
    host_memory: str = Field(default_factory=lambda: str(_machine_memory()))
    cpu_overcommit: float = 4.0

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'launch.db'}"

    @property
    def resolved_objects_url(self) -> str:
        return self.objects_url or f"file://{self.data_dir.resolve() / 'objects'}"

    @property
    def resolved_public_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def access_log_target(self) -> str | None:
        if self.access_log == "off":
            return None
        return str(self.data_dir / "logs" / "access.log") if self.access_log == "data" else self.access_log

    def secret_key(self) -> bytes:
        """The server's secret (API key digests, signed URLs), created on first use in the data dir."""
        path = self.data_dir / "secret.key"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:  # O_EXCL: when the server and `launch api-keys create` start at once, exactly one writes it
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            for _ in range(100):  # the other process may still be writing it
                text = path.read_text().strip()
                if len(text) == 64:
                    return bytes.fromhex(text)
                time.sleep(0.01)
            raise RuntimeError(f"{path} is not a valid secret key; delete it to make a new one") from None
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
        return bytes.fromhex(path.read_text().strip())
