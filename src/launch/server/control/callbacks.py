"""Callback delivery: when a task with a callback ends, POST its outcome to the receiver, signed.

The outbox is the task row (``domain.tasks`` arms ``callback_state`` in the statement that stores the
outcome), so delivery survives restarts: a task ending in this process is delivered at once from memory;
the database is scanned for retries and for what a previous process left. Delivery is at-least-once
(``Launch-Task-Id`` lets receivers drop repeats). Receivers are guarded like ``url`` inputs (no internal
addresses unless the operator allows them), retried with exponential backoff while they fail, and
authenticated by basic auth or a client certificate (mTLS) when the task asks for it. A callback is sent for
every task, so the client is the small keep-alive one of ``callback_client`` (httptools parses the answers):
httpx cost 1.5 ms of CPU per delivery, aiohttp 0.15-0.27 ms, this one 0.02-0.03 ms.

Signature: ``Launch-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(key, "<t>." + body)>`` with the
owner's callback signing key (``GET /v1/callbacks/signing-key``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import ssl
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable

import orjson

from launch.net_guard import FetchDenied, FetchPolicy
from launch.server.control.callback_client import CallbackClient, CallbackHTTPError
from launch.server.domain.task_policy import TERMINAL, callback_backoff
from launch.server.domain.task_view import task_view
from launch.server.domain.tasks import Task, Tasks
from launch.server.sealing import Sealer, SealError

log = logging.getLogger("launch.callbacks")
SIGNATURE_HEADER = "Launch-Signature"


def signing_key(secret: bytes, owner: str) -> str:
    """The owner's callback signing key: derived from the server's secret, so nothing more to store."""
    return hmac.new(secret, b"callback-signing:" + owner.encode(), hashlib.sha256).hexdigest()


def signature(key: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(key.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_signature(key: str, body: bytes, header: str, tolerance: float = 300.0) -> bool:
    """What a receiver does (the documented snippet, in Python)."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance:
        return False
    return hmac.compare_digest(signature(key, body, timestamp), header)


class CallbackDelivery:
    MAX_INFLIGHT = 64
    SCAN_SECONDS = 1.0

    def __init__(self, tasks: Tasks, *, secret: bytes, result_url: Callable[[str], str], policy: FetchPolicy,
                 max_attempts: int, retry_base: float, timeout: float, ca_file: str | None = None) -> None:
        self.tasks = tasks
        self.secret = secret
        self.sealer = Sealer(secret)
        self.result_url = result_url
        self.policy = policy
        self.max_attempts = max_attempts
        self.retry_base = retry_base
        self.timeout = timeout
        self.ca_file = ca_file
        self.delivered = 0
        self._inflight: set[str] = set()
        self._jobs: set[asyncio.Task[None]] = set()
        self._keys: dict[str, str] = {}
        self._client = CallbackClient(policy, timeout)
        self._contexts: OrderedDict[str, ssl.SSLContext] = OrderedDict()  # per client certificate ("": none)
        self._wake = asyncio.Event()
        self._overflow = False  # an ending was left to the scan (all delivery slots were busy)
        self._loop: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None

    def start(self) -> None:
        self._unsubscribe = self.tasks.subscribe(self._on_change)
        self._loop = asyncio.create_task(self._scan(), name="callbacks")

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        if self._jobs:  # a delivery cut short stays PENDING in the database: the next process sends it
            await asyncio.wait(self._jobs, timeout=2)
            for job in self._jobs:
                job.cancel()
        await self._client.close()

    def _on_change(self, task: Task) -> None:
        if task.callback is None or task.state not in TERMINAL or task.callback_state != "PENDING":
            return
        if task.id in self._inflight:
            return
        if len(self._inflight) >= self.MAX_INFLIGHT:
            self._overflow = True  # the scan picks it up when a slot frees
            return
        self._spawn(task)

    def _spawn(self, task: Task) -> None:
        self._inflight.add(task.id)
        job = asyncio.create_task(self._deliver(task))
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    async def _scan(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.SCAN_SECONDS)
            self._wake.clear()
            try:
                free = self.MAX_INFLIGHT - len(self._inflight)
                if free > 0:
                    for task in await self.tasks.due_callbacks(free, set(self._inflight)):
                        if task.id not in self._inflight:
                            self._spawn(task)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scanning for due callbacks failed; retrying")

    async def _deliver(self, task: Task) -> None:
        try:
            error = await self._post(task)
            attempts = task.callback_attempts + 1
            next_at = None
            if error is not None:
                if attempts < self.max_attempts:
                    next_at = time.time() + callback_backoff(attempts, self.retry_base)
                log.warning("callback of task %s failed (attempt %d): %s", task.id, attempts, error)
            else:
                self.delivered += 1
            await self.tasks.callback_done(task, delivered=error is None, error=error, next_at=next_at)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("recording the callback delivery of task %s failed; it will be sent again", task.id)
        finally:
            self._inflight.discard(task.id)
            if self._overflow:  # endings are waiting in the database: scan now rather than in a second
                self._overflow = False
                self._wake.set()

    def payload(self, task: Task) -> bytes:
        view = task_view(task, self.result_url)
        view.pop("callback", None)
        view.update(endpoint_id=task.endpoint_id, created_at=task.created_at, finished_at=task.finished_at)
        return orjson.dumps(view)

    async def _post(self, task: Task) -> str | None:
        """One delivery attempt; None when the receiver took it (2xx), else why not."""
        assert task.callback is not None
        url: str = task.callback["url"]
        try:
            auth = self.sealer.callback_auth(task.callback)
        except SealError as exc:
            return str(exc)
        body = self.payload(task)
        key = self._keys.get(task.owner)
        if key is None:
            key = self._keys[task.owner] = signing_key(self.secret, task.owner)
        headers = {"content-type": "application/json", "user-agent": "launch-callbacks",
                   SIGNATURE_HEADER: signature(key, body, int(time.time())), "Launch-Task-Id": task.id,
                   "Launch-Delivery-Attempt": str(task.callback_attempts + 1)}
        basic = (auth["username"], auth["password"]) if auth and auth["kind"] == "basic" else None
        cert = auth if auth and auth["kind"] == "mtls" else None
        try:
            name, context = await self._tls(cert) if url[:6].lower() == "https:" else ("", None)
            status = await self._client.post(url, body, headers, basic=basic, tls=context, tls_name=name)
        except FetchDenied as exc:
            return f"receiver not allowed: {exc}"
        except CallbackHTTPError as exc:
            return str(exc)
        except TimeoutError:
            return f"the receiver did not answer within {self.timeout:g} s"
        except ssl.SSLError as exc:
            return f"TLS: {exc}"
        except (OSError, ValueError) as exc:  # a malformed port, say
            return f"{type(exc).__name__}: {exc}"
        if 200 <= status < 300:
            return None
        return f"receiver answered HTTP {status}"

    async def _tls(self, cert: dict[str, str] | None) -> tuple[str, ssl.SSLContext]:
        """The TLS context for receivers: the system's CAs (and the operator's ``ca_file``), with the task's
        client certificate for mTLS; one per certificate, the last 32 kept. Made in a thread: loading the
        system's CAs takes tens of milliseconds."""
        name = hashlib.sha256((cert["cert"] + cert["key"]).encode()).hexdigest() if cert else ""
        context = self._contexts.get(name)
        if context is not None:
            self._contexts.move_to_end(name)
            return name, context
        context = await asyncio.to_thread(self._new_context, cert)
        self._contexts[name] = context
        if len(self._contexts) > 32:
            self._contexts.popitem(last=False)
        return name, context

    def _new_context(self, cert: dict[str, str] | None) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if self.ca_file:  # in addition to the system's CAs
            context.load_verify_locations(cafile=self.ca_file)
        if cert is not None:
            _load_client_cert(context, cert["cert"], cert["key"])
        return context


def _load_client_cert(context: ssl.SSLContext, cert: str, key: str) -> None:
    """``ssl`` loads certificates only from files: write them privately, load, delete at once."""
    with tempfile.TemporaryDirectory(prefix="launch-cb-") as folder:
        paths = {}
        for name, text in (("cert.pem", cert), ("key.pem", key)):
            path = os.path.join(folder, name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
            paths[name] = path
        context.load_cert_chain(paths["cert.pem"], paths["key.pem"])

