"""Validation of what a task asks besides its prediction: priority, TTL, callbacks and endpoint defaults."""

from __future__ import annotations

import httpx
import pytest

from launch._transport import Transport, retry_after
from launch.net_guard import FetchPolicy
from launch.server.api.prediction_routes import task_object
from launch.server.domain.errors import InvalidRequest
from launch.server.domain.task_options import (
    Callback,
    TaskOptions,
    endpoint_defaults,
    task_options,
    validate_callback_auth,
    validate_callback_url,
)

STRICT = FetchPolicy()
OPEN = FetchPolicy(allow_private=True)


def test_defaults_and_overrides() -> None:
    defaults = endpoint_defaults({"default_callback_url": "https://hooks.example.com/a", "task_timeout_seconds": 5,
                                  "task_queue_ttl_seconds": 60}, STRICT)
    assert defaults == TaskOptions(queue_ttl=60.0, timeout=5.0, callback=Callback("https://hooks.example.com/a"))
    own = task_options({"priority": 3, "callback_url": "https://hooks.example.com/b", "queue_ttl_seconds": 1},
                       defaults, STRICT, "key-1")
    assert own == TaskOptions(priority=3, queue_ttl=1.0, timeout=5.0, callback=Callback("https://hooks.example.com/b"),
                              idempotency_key="key-1")
    auth = {"kind": "basic", "username": "u", "password": "p"}
    assert task_options({"callback_auth": auth}, defaults, STRICT).callback == Callback(
        "https://hooks.example.com/a", auth)


@pytest.mark.parametrize("body, message", [
    ({"priority": 1001}, "priority"),
    ({"priority": True}, "priority"),
    ({"queue_ttl_seconds": 0}, "queue_ttl_seconds"),
    ({"callback_auth": {"kind": "basic", "username": "u", "password": "p"}}, "needs a callback_url"),
    ({"callback_url": "ftp://example.com/x"}, "scheme 'ftp' is not allowed"),
    ({"callback_url": "http://10.0.0.7/hook"}, "internal"),
    ({"callback_url": "http://localhost:9000/hook"}, "internal"),
    ({"callback_url": "http://example.com/x", "callback_auth": {"kind": "mtls", "cert": "x", "key": "y"}}, "PEM"),
    ({"callback_url": "http://example.com/x", "callback_auth": {"kind": "basic", "username": "u"}}, "password"),
])
def test_invalid_options(body: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        task_options(body, TaskOptions(), STRICT)


def test_private_callbacks_when_the_operator_allows_them() -> None:
    assert validate_callback_url("http://127.0.0.1:9000/hook", OPEN) == "http://127.0.0.1:9000/hook"
    assert validate_callback_auth(None) is None


def test_idempotency_key_length() -> None:
    with pytest.raises(InvalidRequest, match="Idempotency-Key"):
        task_options({}, TaskOptions(), STRICT, "k" * 256)


def test_legacy_states_are_the_three_the_client_knows() -> None:
    assert task_object({"status": "STARTED", "attempt": 1})["state"] == "PENDING"
    cancelled = task_object({"status": "CANCELLED", "reason": "task cancelled by its owner"})
    assert cancelled["state"] == "FAILURE" and cancelled["traceback"] == "CANCELLED: task cancelled by its owner"
    assert task_object({"status": "EXPIRED", "reason": "r"})["state"] == "FAILURE"
    assert task_object({"status": "SUCCESS", "result": "1"})["state"] == "SUCCESS"


def test_the_sdk_waits_as_long_as_retry_after_says(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = [httpx.Response(429, headers={"Retry-After": "7"}, json={"detail": "full"}),
               httpx.Response(200, json={"task_id": "t1"})]
    transport = Transport("http://launch.test", "key")
    transport._client = httpx.Client(base_url="http://launch.test",
                                     transport=httpx.MockTransport(lambda request: answers.pop(0)))
    slept: list[float] = []
    monkeypatch.setattr("launch._transport.time.sleep", slept.append)
    assert transport.request("POST", "/v1/async-tasks", json={}) == {"task_id": "t1"}
    assert slept == [7.0]
    assert retry_after(httpx.Response(429, headers={"Retry-After": "3600"})) == 60.0
    assert retry_after(httpx.Response(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})) is None
