"""Streaming endpoints end to end: items in order as server-sent events or JSON lines, long streams, error
events, a client that disconnects (the generator's ``finally`` runs and its slot frees), 50 concurrent streams
on one worker, a slow consumer that slows the generator instead of filling the gateway, and the same bundle
on a sync endpoint."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from launch import EndpointRequest, LaunchClient, StreamError, StreamingEndpoint, SyncEndpoint
from tests.conftest import LAUNCH, RunningServer, start_server
from tests.e2e import models
from tests.e2e.helpers import deployed, file_server, unique, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def streamer_bundle(alice: LaunchClient) -> Any:
    return alice.create_model_bundle(unique("streamer"), {}, predict_fn_or_cls=models.streamer, requirements=[])


@pytest.fixture(scope="module")
def streaming(alice: LaunchClient, streamer_bundle: Any) -> Iterator[StreamingEndpoint]:
    with deployed(alice, streamer_bundle, "streaming", per_worker=8) as endpoint:
        yield endpoint


def _post(server: RunningServer, key: str, endpoint: str, args: dict[str, Any], **params: str) -> Any:
    return httpx.stream("POST", f"{server.url}/v1/streaming-tasks", json={"args": args}, auth=(key, ""),
                        params={"model_endpoint_name": endpoint, **params}, timeout=60, trust_env=False)


def _sse(lines: Iterator[str]) -> Iterator[tuple[str, Any]]:
    """(event name, parsed data) of each server-sent event."""
    name, data = "message", []
    for line in lines:
        if not line:
            if data:
                yield name, json.loads("\n".join(data))
            name, data = "message", []
        elif line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])


def _probe(endpoint: StreamingEndpoint, tag: str) -> dict[str, Any]:
    (state,) = list(endpoint.predict(EndpointRequest(args={"op": "probe", "tag": tag})))
    return state  # type: ignore[no-any-return]


def test_items_arrive_in_order_as_server_sent_events(server: RunningServer, alice_key: str,
                                                     streaming: StreamingEndpoint) -> None:
    with _post(server, alice_key, streaming.model_endpoint.name, {"n": 200}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = list(_sse(response.iter_lines()))
    assert [data for name, data in events[:-1]] == [{"i": i} for i in range(200)]
    assert all(name == "message" for name, _ in events[:-1])
    assert events[-1] == ("end", {"status": "SUCCESS", "items": 200})


def test_json_lines_alternative(server: RunningServer, alice_key: str, streaming: StreamingEndpoint) -> None:
    name = streaming.model_endpoint.name
    for params in ({"format": "ndjson"}, {}):
        headers = {} if params else {"Accept": "application/x-ndjson"}
        with httpx.stream("POST", f"{server.url}/v1/streaming-tasks", json={"args": {"n": 3}}, headers=headers,
                          auth=(alice_key, ""), params={"model_endpoint_name": name, **params}, timeout=60) as r:
            assert r.headers["content-type"].startswith("application/x-ndjson")
            lines = [json.loads(line) for line in r.iter_lines() if line]
        assert lines == [{"item": {"i": 0}}, {"item": {"i": 1}}, {"item": {"i": 2}}, {"status": "SUCCESS", "items": 3}]


def test_ten_thousand_items_through_the_sdk(streaming: StreamingEndpoint) -> None:
    assert isinstance(streaming, StreamingEndpoint)
    items = list(streaming.predict(EndpointRequest(args={"n": 10_000})))
    assert items == [{"i": i} for i in range(10_000)]


def test_async_sdk_variant(streaming: StreamingEndpoint) -> None:
    async def collect() -> list[Any]:
        return [item async for item in streaming.apredict(EndpointRequest(args={"n": 50}))]

    assert asyncio.run(collect()) == [{"i": i} for i in range(50)]


def test_error_mid_stream_arrives_as_an_error_event(server: RunningServer, alice_key: str,
                                                     streaming: StreamingEndpoint) -> None:
    tag = unique("raise")
    with _post(server, alice_key, streaming.model_endpoint.name, {"op": "raise", "n": 3, "tag": tag}) as response:
        assert response.status_code == 200
        events = list(_sse(response.iter_lines()))
    assert [data for _, data in events[:3]] == [{"i": 0}, {"i": 1}, {"i": 2}]
    name, data = events[3]
    assert name == "error" and data["status"] == "FAILURE"
    assert f"ValueError: stream-boom-{tag}" in data["traceback"]
    assert len(events) == 4

    received: list[Any] = []
    with pytest.raises(StreamError) as caught:
        for item in streaming.predict(EndpointRequest(args={"op": "raise", "n": 2, "tag": tag})):
            received.append(item)
    assert received == [{"i": 0}, {"i": 1}]
    assert caught.value.traceback is not None and f"stream-boom-{tag}" in caught.value.traceback


def test_errors_before_the_stream_are_plain_json(server: RunningServer, alice_key: str,
                                                 streaming: StreamingEndpoint,
                                                 sync_toolbox: SyncEndpoint) -> None:
    with httpx.Client(base_url=server.url, auth=(alice_key, ""), timeout=30) as http:
        missing = http.post("/v1/streaming-tasks", params={"model_endpoint_name": "nope"}, json={"args": {}})
        wrong = http.post("/v1/streaming-tasks", params={"model_endpoint_name": sync_toolbox.model_endpoint.name},
                          json={"args": {}})
        bad = http.post("/v1/streaming-tasks", params={"model_endpoint_name": streaming.model_endpoint.name},
                        content=b"{")
        sync_on_stream = http.post("/v1/sync-tasks", params={"model_endpoint_name": streaming.model_endpoint.name},
                                   json={"args": {}})
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]
    assert wrong.status_code == 422 and "is sync, not streaming" in wrong.json()["detail"]
    assert bad.status_code == 422 and "not valid JSON" in bad.json()["detail"]
    assert sync_on_stream.status_code == 422 and "is streaming, not sync" in sync_on_stream.json()["detail"]


def test_disconnect_closes_the_generator_and_frees_the_slot(alice: LaunchClient, server: RunningServer,
                                                            alice_key: str, streamer_bundle: Any) -> None:
    with deployed(alice, streamer_bundle, "streaming", per_worker=1) as endpoint:
        tag = unique("gone")
        with _post(server, alice_key, endpoint.model_endpoint.name, {"n": 1_000_000, "delay": 0.01, "tag": tag}
                   ) as response:
            events = _sse(response.iter_lines())
            assert [next(events)[1] for _ in range(3)] == [{"i": 0}, {"i": 1}, {"i": 2}]
        # the only slot was taken by the stream: the probe runs only once it is free again
        probe = wait_until(lambda: (p := _probe(endpoint, tag))["closed"] and p, 30, "the generator's finally")
        assert 3 <= probe["produced"] < 1_000


def test_fifty_concurrent_streams_on_one_worker(alice: LaunchClient, streamer_bundle: Any) -> None:
    with deployed(alice, streamer_bundle, "streaming", per_worker=50) as endpoint:
        async def one(i: int) -> list[Any]:
            request = EndpointRequest(args={"n": 20, "delay": 0.05, "tag": f"c{i}"})
            return [item async for item in endpoint.apredict(request)]

        async def all_of_them() -> list[list[Any]]:
            return await asyncio.gather(*(one(i) for i in range(50)))

        started = time.monotonic()
        results = asyncio.run(all_of_them())
        elapsed = time.monotonic() - started
        assert all(items == [{"i": i} for i in range(20)] for items in results)
        assert _probe(endpoint, "c0")["max_active"] == 50  # all 50 generators ran at the same time
        assert elapsed < 20  # 50 sequential streams would take 50 s


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_slow_consumer_slows_the_generator_not_the_gateway_memory(server: RunningServer, alice_key: str,
                                                                  streaming: StreamingEndpoint) -> None:
    tag = unique("slow")
    items, size = 2_000, 64 * 1024  # 128 MiB in all
    rss_before = _rss_bytes(server.process.pid)
    with _post(server, alice_key, streaming.model_endpoint.name, {"n": items, "size": size, "tag": tag}) as response:
        lines = response.iter_lines()
        events = _sse(lines)
        assert [next(events)[1]["i"] for _ in range(5)] == [0, 1, 2, 3, 4]
        time.sleep(3)  # the client stops reading
        produced = _probe(streaming, tag)["produced"]
        rss_paused = _rss_bytes(server.process.pid)
        # a credit window (256 KiB) plus socket buffers: far from the 2,000 items an unbounded relay would pull
        assert produced < 600, produced
        assert rss_paused - rss_before < 64 * 2**20
        rest = [data["i"] for name, data in events if name == "message"]
    assert rest == list(range(5, items))


def test_async_generator_bundle(alice: LaunchClient) -> None:
    bundle = alice.create_model_bundle(unique("astreamer"), {}, predict_fn_or_cls=models.astreamer, requirements=[])
    with deployed(alice, bundle, "streaming") as endpoint:
        assert list(endpoint.predict(EndpointRequest(args={"n": 5, "delay": 0.01}))) == [0, 1, 2, 3, 4]


def test_the_same_bundle_on_a_sync_endpoint_returns_the_list(alice: LaunchClient, streamer_bundle: Any) -> None:
    with deployed(alice, streamer_bundle, "sync") as endpoint:
        response = endpoint.predict(EndpointRequest(args={"n": 4}, return_pickled=False))
        assert response.status == "SUCCESS"
        assert json.loads(response.result) == [{"i": 0}, {"i": 1}, {"i": 2}, {"i": 3}]


def test_the_sync_timeout_bounds_the_wait_for_each_item_not_the_stream(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", env={"LAUNCH_SYNC_TIMEOUT_SECONDS": "1"})
    try:
        key = server.key("dave")
        client = LaunchClient(api_key=key, endpoint=server.url)
        bundle = client.create_model_bundle(unique("streamer"), {}, predict_fn_or_cls=models.streamer,
                                            requirements=[])
        with deployed(client, bundle, "streaming") as endpoint:
            started = time.monotonic()
            items = list(endpoint.predict(EndpointRequest(args={"n": 6, "delay": 0.4})))
            assert items == [{"i": i} for i in range(6)] and time.monotonic() - started > 2  # > the timeout
            tag = unique("stalled")
            with _post(server, key, endpoint.model_endpoint.name, {"n": 3, "stall": 2.5, "tag": tag}) as response:
                assert response.status_code == 200
                events = list(_sse(response.iter_lines()))
            assert events == [("message", {"i": 0}), ("error", {
                "status": "FAILURE", "detail": "the predict function produced no item within 1 s"})]
            wait_until(lambda: _probe(endpoint, tag)["closed"], 30, "the stalled generator closed")
            with httpx.Client(base_url=server.url, auth=(key, ""), timeout=30) as http:  # stalled before any item
                late = http.post("/v1/streaming-tasks", params={"model_endpoint_name": endpoint.model_endpoint.name},
                                 json={"args": {"n": 1, "delay": 2.5}})
            assert late.status_code == 504 and "produced nothing within 1 s" in late.json()["detail"]
        schema = httpx.get(f"{server.url}/openapi.json", timeout=30).json()
        assert "post" in schema["paths"]["/v1/streaming-tasks"]
        assert "get" in schema["paths"]["/v1/async-tasks/{task_id}/events"]
    finally:
        server.stop()


def test_a_url_input_is_fetched_by_the_gateway_and_streamed(alice: LaunchClient) -> None:
    bundle = alice.create_model_bundle(unique("chunks"), {}, predict_fn_or_cls=models.byte_chunks, requirements=[])
    with deployed(alice, bundle, "streaming") as endpoint, file_server({"/input.txt": b"abcdefghij"}) as base:
        assert list(endpoint.predict(EndpointRequest(url=f"{base}/input.txt"))) == ["abcd", "efgh", "ij"]


def test_cli_streams_items_as_json_lines(server: RunningServer, alice_key: str, streaming: StreamingEndpoint) -> None:
    env = {**os.environ, "LAUNCH_API_KEY": alice_key, "LAUNCH_ENDPOINT": server.url}
    name = streaming.model_endpoint.name
    out = subprocess.run([LAUNCH, "endpoints", "stream", name, "--args", '{"n": 3}'], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert [json.loads(line) for line in out.stdout.splitlines()] == [{"i": 0}, {"i": 1}, {"i": 2}]
    failed = subprocess.run([LAUNCH, "endpoints", "stream", name, "--args", '{"op": "raise", "n": 1, "tag": "cli"}'],
                            env=env, capture_output=True, text=True, timeout=60)
    assert failed.returncode == 1 and failed.stdout.splitlines() == ['{"i": 0}']
    assert "stream-boom-cli" in failed.stderr
