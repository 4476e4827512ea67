"""The real server behind a real Nginx on a loopback port, as deployed."""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import websocket

from testkit.deploytools import SITE_TEMPLATE, NginxProcess, checkout_site, render_epp
from testkit.serverproc import ROOT, ServerProcess, free_port
from testkit.sioclient import RecordingClient, assert_foreign_origin_refused
from testkit.system import require_binary
from testkit.wait import wait_until
from tests.contract import check_sample, check_static

pytestmark = pytest.mark.e2e


class Stack:
    def __init__(self, app: ServerProcess, nginx: NginxProcess) -> None:
        self.app = app
        self.nginx = nginx
        self.url = f"http://127.0.0.1:{nginx.port}"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    nginx_binary = require_binary("nginx")
    puppet = require_binary("puppet")
    app = ServerProcess(tmp_path / "logs", "--async-mode", "eventlet").start()
    port = free_port()  # like a forwarded port: not 80
    site = render_epp(
        puppet,
        SITE_TEMPLATE,
        checkout_site(f"127.0.0.1:{port}", app.port, "localhost 127.0.0.1"),
    )
    nginx = NginxProcess(nginx_binary, tmp_path / "nginx", site, port)
    try:
        yield Stack(app, nginx)
    finally:
        nginx.stop()
        app.stop()


def raw_get(port: int, path: str, host: str = "127.0.0.1") -> tuple[int, bytes]:
    """A GET with the path sent exactly as given (no client-side normalising)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_page_static_and_api_through_nginx(stack: Stack) -> None:
    page = requests.get(stack.url + "/", timeout=5)
    assert page.status_code == 200 and "uPlot" in page.text
    assert page.headers["Server"] == "nginx"  # no version
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and f"ws://127.0.0.1:{stack.nginx.port}" in csp
    script = requests.get(
        stack.url + "/static/app.js", timeout=5, headers={"Accept-Encoding": "gzip"}
    )
    assert script.status_code == 200
    assert script.headers["Content-Encoding"] == "gzip"
    assert script.text == (ROOT / "server" / "static" / "app.js").read_text()
    assert "Content-Security-Policy" in script.headers  # static answers carry them too
    check_static(requests.get(stack.url + "/api/static", timeout=5).json())
    latest = requests.get(
        stack.url + "/api/metrics", timeout=5, headers={"Accept-Encoding": "br, gzip"}
    )
    check_sample(latest.json())
    # Nginx's gzip: the app was asked for no encoding (it would have chosen brotli).
    assert latest.headers["Content-Encoding"] == "gzip"
    assert requests.get(stack.url + "/healthz", timeout=5).json()["status"] == "ok"
    bad = requests.get(stack.url + "/api/history?seconds=x", timeout=5)
    assert bad.status_code == 400 and "error" in bad.json()


@pytest.mark.parametrize("transports", [("websocket",), ("polling", "websocket")])
def test_socketio_through_nginx_ends_on_websocket(
    stack: Stack, transports: tuple[str, ...]
) -> None:
    client = RecordingClient()
    client.connect(stack.url, transports=transports)
    try:
        client.wait_for("metrics", count=2, timeout=10)
        # Starting on polling, the client upgrades: it must not stay there.
        wait_until(lambda: client.sio.transport() == "websocket", timeout=5)
    finally:
        client.close()
    assert client.names()[:2] == ["static", "history"]
    check_static(client.received("static")[0])


def test_foreign_host_is_refused(stack: Stack) -> None:
    status, _ = raw_get(stack.nginx.port, "/api/static", host="evil.example")
    assert status == 421
    status, _ = raw_get(stack.nginx.port, "/", host=f"rebind.example:{stack.nginx.port}")
    assert status == 421
    status, _ = raw_get(stack.nginx.port, "/api/static", host=f"localhost:{stack.nginx.port}")
    assert status == 200


def test_foreign_origin_upgrade_is_refused(stack: Stack) -> None:
    assert_foreign_origin_refused(stack.url)
    ws_url = f"ws://127.0.0.1:{stack.nginx.port}/socket.io/?EIO=4&transport=websocket"
    ok = websocket.create_connection(ws_url, origin=stack.url, timeout=5)
    try:
        assert str(ok.recv()).startswith("0{")  # the Engine.IO open packet
    finally:
        ok.close()


@pytest.mark.parametrize(
    "path",
    [
        "/static/../server/config.py",
        "/static/..%2fserver%2fconfig.py",
        "/static/%2e%2e/server/config.py",
        "/static/%2e%2e%2fserver%2fconfig.py",
        "/static/..%252fserver%252fconfig.py",
        "/static../server/config.py",
        "/static/vendor/../../config.py",
        "/static/....//server/config.py",
    ],
)
def test_static_traversal_is_404(stack: Stack, path: str) -> None:
    status, body = raw_get(stack.nginx.port, path)
    assert status == 404, (path, status)
    assert b"ConfigError" not in body and b"import" not in body


def test_502_page_then_reconnect(stack: Stack) -> None:
    client = RecordingClient()
    client.connect(stack.url)
    try:
        client.wait_for("static")
        stack.app.stop()
        down = requests.get(stack.url + "/", timeout=5)
        assert down.status_code == 502
        assert "restarting" in down.text and 'http-equiv="refresh"' in down.text
        stack.app.start()  # same port
        client.wait_for("static", count=2, timeout=30)  # reconnected, greeted again
        statics = client.received("static")
        assert statics[0]["hostname"] == statics[1]["hostname"]
        client.wait_for("metrics", count=len(client.received("metrics")) + 1, timeout=5)
    finally:
        client.close()
    assert requests.get(stack.url + "/", timeout=5).status_code == 200


def test_slowloris_headers_are_closed_by_nginx(stack: Stack) -> None:
    import socket

    client = RecordingClient()
    client.connect(stack.url)
    slow = socket.create_connection(("127.0.0.1", stack.nginx.port), timeout=30)
    try:
        started = time.monotonic()
        slow.sendall(b"GET /api/static HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for _ in range(5):  # a header line now and then, never the end of the headers
            time.sleep(1)
            slow.sendall(b"X-Slow: 1\r\n")
        answer = b""
        while True:
            chunk = slow.recv(4096)
            if not chunk:
                break
            answer += chunk
        waited = time.monotonic() - started
        # client_header_timeout is 10 s: closed then (with a 408, or silently).
        assert 9 <= waited <= 20, waited
        assert answer == b"" or b" 408 " in answer.split(b"\r\n")[0]
        before = len(client.received("metrics"))
        client.wait_for("metrics", count=before + 2, timeout=5)  # others unaffected
    finally:
        slow.close()
        client.close()
