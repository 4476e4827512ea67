"""server/access/ in-process, with Flask's test client: login, logout, caps."""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path

import pytest
from flask import Flask
from flask_socketio import ConnectionRefusedError, SocketIO
from werkzeug.security import generate_password_hash

from server.access.connections import ConnectionCaps
from server.app import create_app
from server.config import Config

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def password_hash() -> str:
    return generate_password_hash(PASSWORD)


@pytest.fixture
def guarded(config: Config, password_hash: str) -> tuple[Flask, SocketIO]:
    app, socketio = create_app(dataclasses.replace(config, password_hash=password_hash))
    app.config["TESTING"] = True
    return app, socketio


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_every_route_but_health_and_login_needs_a_login(guarded: tuple[Flask, SocketIO]) -> None:
    client = guarded[0].test_client()
    for path in ("/api/static", "/api/metrics", "/api/history", "/api/alerts", "/metrics"):
        answer = client.get(path)
        assert answer.status_code == 401, path
        assert answer.json == {"error": "authentication required: log in or use HTTP Basic"}
        assert answer.headers["WWW-Authenticate"].startswith("Basic")
    page = client.get("/")
    assert page.status_code == 401 and b'name="password"' in page.data
    assert client.get("/healthz").status_code in (200, 503)  # open: no host facts in it
    assert client.get("/login").status_code == 200


def test_login_then_logout(guarded: tuple[Flask, SocketIO]) -> None:
    client = guarded[0].test_client()
    wrong = client.post("/login", data={"user": "ops", "password": "nope"})
    assert wrong.status_code == 401 and b"Wrong user or password" in wrong.data
    assert client.get("/api/static").status_code == 401

    right = client.post("/login", data={"user": "ops", "password": PASSWORD})
    assert right.status_code == 303 and right.headers["Location"] == "/"
    assert client.get("/api/static").status_code == 200
    assert client.get("/").status_code == 200

    out = client.post("/logout")
    assert out.status_code == 303
    assert client.get("/api/static").status_code == 401


def test_http_basic(guarded: tuple[Flask, SocketIO]) -> None:
    client = guarded[0].test_client()
    assert client.get("/api/static", headers=basic("ops", PASSWORD)).status_code == 200
    assert client.get("/api/static", headers=basic("ops", "wrong")).status_code == 401
    assert client.get("/api/static", headers={"Authorization": "Basic !!"}).status_code == 401


def test_too_many_wrong_logins_get_429(guarded: tuple[Flask, SocketIO]) -> None:
    client = guarded[0].test_client()
    codes = [
        client.post("/login", data={"user": "x", "password": f"guess {i}"}).status_code
        for i in range(7)
    ]
    assert codes[:5] == [401] * 5
    assert codes[5:] == [429, 429]
    limited = client.post("/login", data={"user": "x", "password": PASSWORD})
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1


def test_socket_needs_a_login(guarded: tuple[Flask, SocketIO]) -> None:
    app, socketio = guarded
    anonymous = socketio.test_client(app, flask_test_client=app.test_client())
    assert not anonymous.is_connected()

    browser = app.test_client()
    browser.post("/login", data={"user": "ops", "password": PASSWORD})
    watcher = socketio.test_client(app, flask_test_client=browser)
    assert watcher.is_connected()
    names = [m["name"] for m in watcher.get_received()]
    assert names[:3] == ["static", "history", "alerts"]
    watcher.disconnect()


def test_socket_caps_per_address_and_in_all(config: Config, tmp_path: Path) -> None:
    app, socketio = create_app(dataclasses.replace(config, max_connections_per_ip=2))
    first = socketio.test_client(app)
    second = socketio.test_client(app)
    third = socketio.test_client(app)
    assert first.is_connected() and second.is_connected()
    assert not third.is_connected()
    first.disconnect()
    again = socketio.test_client(app)
    assert again.is_connected()  # a released slot is free again


def test_connection_caps_count_and_release() -> None:
    caps = ConnectionCaps(max_total=3, max_per_ip=2)
    caps.admit("10.0.0.1", authorized=True)
    caps.admit("10.0.0.1", authorized=True)
    with pytest.raises(ConnectionRefusedError, match="too many connections from this address"):
        caps.admit("10.0.0.1", authorized=True)
    caps.admit("10.0.0.2", authorized=True)
    with pytest.raises(ConnectionRefusedError, match="server full"):
        caps.admit("10.0.0.3", authorized=True)
    with pytest.raises(ConnectionRefusedError, match="authentication required"):
        caps.admit("10.0.0.3", authorized=False)
    assert caps.connected == 3
    caps.release("10.0.0.1")
    assert caps.connected == 2
    caps.admit("10.0.0.3", authorized=True)
