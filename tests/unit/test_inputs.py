"""The gateway's side of a worker request: plain JSON frames, fetched ``url`` inputs, results over the cap."""

from __future__ import annotations

import asyncio

import orjson

from launch import wire
from launch.net_guard import FetchPolicy
from launch.server.inputs import prepare
from launch.worker.runtime import Outcome
from launch.worker.server import outcome_frame


def test_a_request_without_url_is_one_json_frame() -> None:
    request = {"args": {"x": 1}, "return_pickled": False}
    prepared = asyncio.run(prepare(request, FetchPolicy()))
    assert prepared.failure is None and prepared.kind == wire.PREDICT
    assert orjson.loads(prepared.payload) == request


def test_a_denied_scheme_fails_without_running() -> None:
    prepared = asyncio.run(prepare({"url": "file:///etc/passwd"}, FetchPolicy()))
    assert prepared.failure is not None and "'file' is not allowed" in prepared.failure


def test_an_internal_address_is_denied_by_default_and_names_the_flag() -> None:
    prepared = asyncio.run(prepare({"url": "http://127.0.0.1:9/x"}, FetchPolicy()))
    assert prepared.failure is not None and "internal" in prepared.failure
    assert "--allow-private-fetch" in prepared.failure


def test_input_frames_round_trip() -> None:
    payload = wire.pack_input(b'{"return_pickled": false}', b"\x00\x01bytes")
    assert wire.unpack_input(payload) == (b'{"return_pickled": false}', b"\x00\x01bytes")


def test_a_result_over_the_cap_becomes_a_failure_that_names_the_setting() -> None:
    kind, body = outcome_frame(Outcome(ok=True, result="x" * 5000), max_result_bytes=1024)
    assert kind == wire.RESULT_JSON
    failure = orjson.loads(body)
    assert failure["status"] == "FAILURE" and "LAUNCH_MAX_RESULT_BYTES" in failure["traceback"]
    kind, body = outcome_frame(Outcome(ok=True, pickled=b"p" * 100), max_result_bytes=1024)
    assert kind == wire.RESULT_PICKLE and body == b"p" * 100
