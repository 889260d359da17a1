"""What a task asks of the platform besides its prediction request: priority, queue TTL, callback, and the
endpoint's defaults for them. Pure validation; the lifecycle (``domain.tasks``) stores the result."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from launch.net_guard import FetchDenied, FetchPolicy, check_address, check_url
from launch.server.domain.errors import InvalidRequest

MAX_PRIORITY = 1000
MAX_IDEMPOTENCY_KEY = 255


@dataclass(frozen=True)
class Callback:
    """Where the outcome is POSTed, and how the gateway authenticates to the receiver."""

    url: str
    auth: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, "auth": self.auth}


@dataclass(frozen=True)
class TaskOptions:
    priority: int = 0
    queue_ttl: float | None = None  # seconds a task may wait for a worker before it is EXPIRED
    timeout: float | None = None  # seconds a started attempt may run before the task fails as timed out
    callback: Callback | None = None
    idempotency_key: str | None = None


def validate_callback_auth(auth: Any, where: str = "callback_auth") -> dict[str, str] | None:
    """``{"kind": "basic", "username", "password"}`` or ``{"kind": "mtls", "cert", "key"}`` (PEM text)."""
    if auth is None:
        return None
    if not isinstance(auth, dict):
        raise InvalidRequest(f"{where} must be an object with 'kind' 'basic' or 'mtls'")
    kind = auth.get("kind")
    fields = {"basic": ("username", "password"), "mtls": ("cert", "key")}.get(kind)  # type: ignore[arg-type]
    if fields is None:
        raise InvalidRequest(f"{where}.kind must be 'basic' or 'mtls'")
    for name in fields:
        if not isinstance(auth.get(name), str) or not auth[name]:
            raise InvalidRequest(f"{where}.{name} must be a non-empty string for kind {kind!r}")
    if kind == "mtls":
        for name in fields:
            if "-----BEGIN" not in auth[name]:
                raise InvalidRequest(f"{where}.{name} must be PEM text (-----BEGIN ...)")
    return {"kind": str(kind), **{name: auth[name] for name in fields}}


def validate_callback_url(url: Any, policy: FetchPolicy, where: str = "callback_url") -> str:
    """Scheme and literal addresses checked now; host names are resolved and checked at each delivery."""
    if not isinstance(url, str) or not url:
        raise InvalidRequest(f"{where} must be a non-empty string")
    try:
        host, _ = check_url(url, policy)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if host.lower() in ("localhost", "localhost.localdomain") or host.lower().endswith(".localhost"):
                check_address("127.0.0.1", policy)
        else:
            check_address(host, policy)
    except FetchDenied as exc:
        raise InvalidRequest(f"{where} is not allowed: {exc}") from None
    return url


def _positive(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise InvalidRequest(f"{name} must be a number of seconds greater than 0")
    return float(value)


def endpoint_defaults(extra: dict[str, Any], policy: FetchPolicy) -> TaskOptions:
    """The task options an endpoint's settings give every task (``default_callback_url`` and friends)."""
    url = extra.get("default_callback_url")
    callback = None
    if url is not None:
        callback = Callback(validate_callback_url(url, policy, "default_callback_url"),
                            validate_callback_auth(extra.get("default_callback_auth"), "default_callback_auth"))
    return TaskOptions(queue_ttl=_positive(extra.get("task_queue_ttl_seconds"), "task_queue_ttl_seconds"),
                       timeout=_positive(extra.get("task_timeout_seconds"), "task_timeout_seconds"),
                       callback=callback)


def task_options(body: dict[str, Any], defaults: TaskOptions, policy: FetchPolicy,
                 idempotency_key: str | None = None) -> TaskOptions:
    """The options of one submitted task: its own fields, else the endpoint's defaults."""
    priority = body.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int) or not -MAX_PRIORITY <= priority <= MAX_PRIORITY:
        raise InvalidRequest(f"priority must be an integer between {-MAX_PRIORITY} and {MAX_PRIORITY}")
    callback = defaults.callback
    if body.get("callback_url") is not None:
        callback = Callback(validate_callback_url(body["callback_url"], policy),
                            validate_callback_auth(body.get("callback_auth")))
    elif body.get("callback_auth") is not None:
        if callback is None:
            raise InvalidRequest("callback_auth needs a callback_url (or the endpoint's default_callback_url)")
        callback = Callback(callback.url, validate_callback_auth(body["callback_auth"]))
    ttl = _positive(body.get("queue_ttl_seconds"), "queue_ttl_seconds") or defaults.queue_ttl
    if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
        raise InvalidRequest(f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters")
    return TaskOptions(priority=priority, queue_ttl=ttl, timeout=defaults.timeout, callback=callback,
                       idempotency_key=idempotency_key)
