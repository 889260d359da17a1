"""The SDK's transport says at once when there is no Launch server at its address."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from launch._transport import Transport
from launch.errors import NoLaunchServer


def test_a_refused_connection_fails_at_once() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    transport = Transport(f"http://127.0.0.1:{port}", "key")
    started = time.monotonic()
    with pytest.raises(NoLaunchServer, match=f"no Launch server at http://127.0.0.1:{port}"):
        transport.request("GET", "/v1/model-bundles")
    assert time.monotonic() - started < 1.0


class _NotLaunch(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html>not found</html>"
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_another_kind_of_server_is_named_as_such() -> None:
    server = HTTPServer(("127.0.0.1", 0), _NotLaunch)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        transport = Transport(f"http://127.0.0.1:{server.server_address[1]}", "key")
        with pytest.raises(NoLaunchServer, match="answered 404 text/html"):
            transport.request("GET", "/v1/model-bundles")
    finally:
        server.shutdown()
