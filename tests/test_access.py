"""server/access/ in-process, with Flask's test client: login, logout, caps."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from flask import Flask
from flask_socketio import ConnectionRefusedError, SocketIO
from werkzeug.security import generate_password_hash

from server.access.connections import ConnectionCaps
from server.app import create_app
from server.config import Config
from server.state import current_state
from testkit.auth import PASSWORD, basic_auth_headers, password_hash


@pytest.fixture
def guarded(config: Config) -> tuple[Flask, SocketIO]:
    app, socketio = create_app(dataclasses.replace(config, password_hash=password_hash()))
    app.config["TESTING"] = True
    return app, socketio


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
    assert client.get("/api/static", headers=basic_auth_headers("ops", PASSWORD)).status_code == 200
    assert client.get("/api/static", headers=basic_auth_headers("ops", "wrong")).status_code == 401
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


def test_sessions_end_when_idle_and_when_old(guarded: tuple[Flask, SocketIO]) -> None:
    app = guarded[0]
    with app.app_context():
        sessions = current_state().access.login.sessions
    now = [1_800_000_000.0]
    sessions._clock = lambda: now[0]
    client = app.test_client()
    client.post("/login", data={"user": "ops", "password": PASSWORD})
    now[0] += sessions.idle - 10
    assert client.get("/api/static").status_code == 200  # used: the idle clock restarts
    now[0] += sessions.idle - 10
    assert client.get("/api/static").status_code == 200
    now[0] += sessions.idle + 1
    assert client.get("/api/static").status_code == 401  # unused too long

    client.post("/login", data={"user": "ops", "password": PASSWORD})
    for _ in range(sessions.lifetime // (sessions.idle - 60) + 1):
        now[0] += sessions.idle - 60
        client.get("/api/static")
    assert client.get("/api/static").status_code == 401  # older than its lifetime


def test_an_unknown_user_is_checked_like_a_known_one() -> None:
    from server.access.passwords import Credentials

    known = generate_password_hash("x" * 12, method="pbkdf2:sha256:100000")
    credentials = Credentials(users={"alice": known})
    # The dummy an unknown name is checked against has the real hashes' method and cost.
    assert credentials._dummy.startswith("pbkdf2:sha256:100000$")
    assert not credentials.check("mallory", "x" * 12)
    assert credentials.check("alice", "x" * 12)


def test_cross_origin_posts_are_refused(guarded: tuple[Flask, SocketIO]) -> None:
    client = guarded[0].test_client()
    form = {"user": "ops", "password": PASSWORD}
    evil = {"Origin": "http://evil.example"}
    assert client.post("/login", data=form, headers=evil).status_code == 403
    assert client.get("/api/static").status_code == 401
    same = client.post("/login", data=form, headers={"Origin": "http://localhost"})
    assert same.status_code == 303
    assert client.post("/logout", headers=evil).status_code == 403
    assert client.get("/api/static").status_code == 200  # still logged in


def test_a_fake_sid_parameter_does_not_dodge_the_handshake_cap() -> None:
    from server.access.connections import HandshakeLimiter
    from server.ratelimit import TokenBucket

    calls: list[str] = []

    def app(environ: dict[str, object], start_response: object) -> list[bytes]:
        calls.append(str(environ["QUERY_STRING"]))
        return [b""]

    limiter = HandshakeLimiter(app, TokenBucket(burst=2, rate=0.001), TokenBucket(100, 100))
    statuses: list[str] = []
    for query in (
        "EIO=4&transport=polling",
        "EIO=4&xsid=1",
        "EIO=4&transport=polling&sid=",
        "EIO=4",
    ):
        limiter(
            {"PATH_INFO": "/socket.io/", "QUERY_STRING": query, "REMOTE_ADDR": "10.0.0.9"},
            lambda status, headers: statuses.append(status),
        )
    # Two handshakes pass; "xsid" and an empty sid are handshakes too, so refused.
    assert len(calls) == 2 and statuses == ["429 Too Many Requests"] * 2
