"""A hostile client on the LAN, against the real server (eventlet, as deployed).

Each case was once reproduced as getting through; each now fails to. Every
request targets loopback; several client addresses come from 127.0.0.0/8.
Load-like cases are bounded in count and time.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import http.client
import itertools
import os
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
import socketio

from server.history.store import HistoryStore
from testkit.auth import PASSWORD, basic_auth_headers, basic_authorization, password_hash
from testkit.config import write_toml
from testkit.serverproc import ServerProcess, run_server_command
from testkit.sioclient import RecordingClient
from testkit.synthetic import fill
from testkit.wait import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[ServerProcess]:
    config = write_toml(tmp_path / "d.toml", password_hash=password_hash())
    server = ServerProcess(tmp_path / "logs", "--config", str(config)).start()
    try:
        yield server
    finally:
        server.stop()


def request_from(
    server: ServerProcess, source: str, method: str, path: str, **kw: object
) -> http.client.HTTPResponse:
    """One request from a chosen loopback address."""
    conn = http.client.HTTPConnection(
        "127.0.0.1", server.port, timeout=30, source_address=(source, 0)
    )
    headers = {"Host": f"127.0.0.1:{server.port}", **kw.pop("headers", {})}  # type: ignore[dict-item]
    conn.request(method, path, headers=headers, **kw)  # type: ignore[arg-type]
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def watch(server: ServerProcess) -> RecordingClient:
    client = RecordingClient()
    client.connect(server.url, headers=basic_auth_headers("ops", PASSWORD))
    client.wait_for("metrics", count=1)
    return client


def largest_gap(client: RecordingClient, since: float) -> float:
    times = [since, *[t for t in client.times("metrics") if t >= since], time.monotonic()]
    return max(b - a for a, b in itertools.pairwise(times))


def test_password_checks_and_long_queries_do_not_stall_the_stream(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    clock = [time.time() - 7200]
    store = HistoryStore(str(data / "history.sqlite3"), clock=lambda: clock[0])
    store.open()
    fill(store, clock, 7200, clock[0])
    store.stop()
    config = write_toml(tmp_path / "d.toml", password_hash=password_hash())
    server = ServerProcess(tmp_path / "logs", "--config", str(config)).start()
    client = watch(server)
    try:
        started = time.monotonic()
        jobs = [
            *[("GET", "/api/static", f"127.0.1.{i}", "ops", "wrong") for i in range(1, 41)],
            *[("GET", "/api/static", "127.0.2.1", "ops", PASSWORD) for _ in range(20)],
            *[("GET", "/api/history?seconds=604800", "127.0.3.1", "ops", PASSWORD)] * 60,
        ]

        def run(job: tuple[str, str, str, str, str]) -> tuple[str, int, str | None]:
            method, path, source, user, password = job
            answer = request_from(
                server, source, method, path, headers=basic_auth_headers(user, password)
            )
            return path, answer.status, answer.getheader("Retry-After")

        with concurrent.futures.ThreadPoolExecutor(max_workers=60) as pool:
            results = list(pool.map(run, jobs))
        time.sleep(1.5)
        gap = largest_gap(client, started)
        assert gap <= 1.5, f"the 1 Hz stream stalled for {gap:.1f} s"
        static = [status for path, status, _ in results if path == "/api/static"]
        assert static.count(401) == 40 and static.count(200) == 20, static
        history = [(s, r) for path, s, r in results if path.startswith("/api/history")]
        assert any(s == 200 for s, _ in history)
        assert all(s == 200 or (s == 503 and r) for s, r in history), history
    finally:
        client.close()
        server.stop()


def test_login_race_cannot_pass_the_limit(secured: ServerProcess) -> None:
    """40 logins from one address, headers first, bodies a second later; the last is right."""
    sockets = []
    for i in range(40):
        password = PASSWORD if i == 39 else f"guess {i}"
        body = f"user=ops&password={password.replace(' ', '+')}".encode()
        sock = socket.create_connection(("127.0.0.1", secured.port), timeout=30)
        sock.sendall(
            f"POST /login HTTP/1.1\r\nHost: 127.0.0.1:{secured.port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        )
        sockets.append((sock, body))
    time.sleep(1)
    statuses = []
    for sock, body in sockets:
        with contextlib.suppress(OSError):  # answered 429 already and closed
            sock.sendall(body)
    for sock, _ in sockets:
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        statuses.append(int(data.split(b" ")[1]))
        sock.close()
    assert statuses.count(429) >= 35, statuses
    assert statuses[-1] == 429, "the right password, sent 40th, got in"
    assert 303 not in statuses


def test_a_saved_cookie_is_refused_after_logout(secured: ServerProcess) -> None:
    browser = requests.Session()
    assert (
        browser.post(
            secured.url + "/login",
            data={"user": "ops", "password": PASSWORD},
            allow_redirects=False,
        ).status_code
        == 303
    )
    saved = str(browser.cookies["dashboard_session"])
    assert browser.get(secured.url + "/api/static").status_code == 200
    live = RecordingClient()
    live.connect(secured.url, headers={"Cookie": f"dashboard_session={saved}"})
    live.wait_for("metrics", count=1)
    assert browser.post(secured.url + "/logout", allow_redirects=False).status_code == 303
    # The open stream of that login is closed, and the saved cookie opens nothing.
    wait_until(lambda: not live.sio.connected, timeout=0.5, what="the logged-out stream closed")
    replay = {"dashboard_session": saved}
    assert requests.get(secured.url + "/api/static", cookies=replay, timeout=5).status_code == 401
    client = socketio.Client(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(
            secured.url,
            transports=["websocket"],
            headers={"Cookie": f"dashboard_session={saved}"},
            wait_timeout=5,
        )


def login_cookie(server: ServerProcess, user: str) -> str:
    browser = requests.Session()
    answer = browser.post(
        server.url + "/login", data={"user": user, "password": PASSWORD}, allow_redirects=False
    )
    assert answer.status_code == 303
    return str(browser.cookies["dashboard_session"])


def test_a_saved_cookie_is_refused_after_a_password_change_or_removal(
    tmp_path: Path,
) -> None:
    config = tmp_path / "d.toml"
    other = password_hash("another password entirely")
    write_toml(config, users={"alice": password_hash(), "bob": password_hash()})
    server = ServerProcess(tmp_path / "logs", "--config", str(config)).start()
    try:
        alice, bob = login_cookie(server, "alice"), login_cookie(server, "bob")
        server.stop()
        # alice's password changes; bob is removed.
        write_toml(config, users={"alice": other})
        server.start()
        for cookie in (alice, bob):
            answer = requests.get(
                server.url + "/api/static", cookies={"dashboard_session": cookie}, timeout=5
            )
            assert answer.status_code == 401
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        ([], {"DASHBOARD_PASSWORD_HASH": ""}, "password_hash"),
        ([], {"DASHBOARD_PASSWORDHASH": "x"}, "DASHBOARD_PASSWORDHASH"),
        (["--proxy-hops", "1"], {}, "proxy_hops"),
        (["--cors-origins", "*"], {}, "cors_origins"),
        (["--allowed-hosts", "*"], {}, "allowed_hosts"),
        (["--password-hash", "scrypt:abc$x$y"], {}, "password_hash"),
    ],
)
def test_a_setting_that_would_fail_open_stops_the_start(
    tmp_path: Path, args: list[str], env: dict[str, str], named: str
) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DASHBOARD_")}
    result = run_server_command("--log-dir", str(tmp_path), *args, env={**clean, **env})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], result.stderr


def test_handshakes_from_one_address_are_capped(secured: ServerProcess) -> None:
    process = psutil.Process(secured.proc.pid)  # type: ignore[union-attr]
    before = process.memory_info().rss
    session = requests.Session()
    statuses = [
        session.get(secured.url + "/socket.io/?EIO=4&transport=polling", timeout=5).status_code
        for _ in range(3000)
    ]
    grown = (process.memory_info().rss - before) / 2**20
    assert statuses.count(429) > 2500, statuses.count(429)
    assert grown < 10, f"RSS grew {grown:.1f} MiB"
    assert requests.get(secured.url + "/healthz", timeout=5).status_code == 200


def test_forwarded_for_is_believed_only_from_trusted_proxies(
    tmp_path: Path,
) -> None:
    config = write_toml(
        tmp_path / "d.toml",
        password_hash=password_hash(),
        proxy_hops=1,
        trusted_proxies="127.0.0.2",
    )
    server = ServerProcess(tmp_path / "logs", "--config", str(config)).start()
    try:

        def attempt(source: str, forwarded: str, password: str) -> int:
            headers = {
                "X-Forwarded-For": forwarded,
                "Authorization": basic_authorization("ops", password),
            }
            return request_from(server, source, "GET", "/api/static", headers=headers).status

        # Five wrong guesses, each claiming another address: all one address.
        assert [attempt("127.0.0.1", f"10.9.9.{i}", "bad") for i in range(5)] == [401] * 5
        assert attempt("127.0.0.1", "10.9.9.99", PASSWORD) == 401  # limited, right or not
        # From the trusted proxy, the forwarded address is the client's own.
        assert attempt("127.0.0.2", "10.8.8.8", PASSWORD) == 200
    finally:
        server.stop()


def test_a_silent_connection_is_cut(secured: ServerProcess) -> None:
    sock = socket.create_connection(("127.0.0.1", secured.port), timeout=30)
    sock.sendall(b"GET /heal")  # and nothing more
    started = time.monotonic()
    assert sock.recv(1024) == b""  # closed by the server
    assert time.monotonic() - started < 15
    sock.close()


def test_logs_cannot_be_forged(secured: ServerProcess) -> None:
    requests.get(secured.url + "/api/%0aFORGED%20line%1b[31m", timeout=5)
    with socket.create_connection(("127.0.0.1", secured.port), timeout=5) as raw:
        raw.sendall(b"GET /raw\x1b[31mRED HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        raw.recv(4096)
    secured.stop()
    for name in ("dashboard.log", "access.log"):
        text = (secured.log_dir / name).read_text()
        assert "\x1b" not in text, name
        assert not any(line.startswith("FORGED") for line in text.splitlines()), name
    assert "\\nFORGED" in (secured.log_dir / "dashboard.log").read_text()
    assert "/raw\\x1b[31mRED" in (secured.log_dir / "access.log").read_text()


def test_bad_numbers_are_400_and_answers_are_not_cached(secured: ServerProcess) -> None:
    auth = basic_auth_headers("ops", PASSWORD)
    for query in ("seconds=99999999999999999999", "start=1e400", "seconds=-5"):
        answer = requests.get(secured.url + "/api/history?" + query, headers=auth, timeout=5)
        assert answer.status_code == 400 and "error" in answer.json(), query
    answer = requests.get(secured.url + "/api/static", headers=auth, timeout=5)
    assert answer.headers["Cache-Control"] == "no-store"


def test_cross_origin_login_and_logout_are_refused(secured: ServerProcess) -> None:
    evil = {"Origin": "http://evil.example"}
    form = {"user": "ops", "password": PASSWORD}
    login = requests.post(secured.url + "/login", data=form, headers=evil, timeout=5)
    assert login.status_code == 403 and "dashboard_session" not in login.cookies
    assert requests.post(secured.url + "/logout", headers=evil, timeout=5).status_code == 403
    same = requests.post(
        secured.url + "/login",
        data=form,
        headers={"Origin": secured.url},
        allow_redirects=False,
        timeout=5,
    )
    assert same.status_code == 303


def test_data_and_logs_are_private(secured: ServerProcess) -> None:
    for directory in (secured.data_dir, secured.log_dir):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
        for path in directory.iterdir():
            if path.is_file():
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_a_hung_filesystem_freezes_nothing(hung_mount: str, secured: ServerProcess) -> None:
    client = watch(secured)
    auth = basic_auth_headers("ops", PASSWORD)
    try:
        started = time.monotonic()
        for _ in range(5):
            asked = time.monotonic()
            assert requests.get(secured.url + "/healthz", timeout=5).status_code == 200
            assert time.monotonic() - asked < 1.0
            time.sleep(0.5)
        assert largest_gap(client, started) <= 1.7
        disks = requests.get(secured.url + "/api/metrics", headers=auth, timeout=5).json()["disks"]
        hung = next(d for d in disks if d["mount"] == hung_mount)
        assert hung["answering"] is False and hung["percent"] is None
    finally:
        client.close()


def test_a_process_title_is_never_published(secured: ServerProcess, tmp_path: Path) -> None:
    """A process that sets its title with an argument: only its executable's name shows."""
    busy = tmp_path / "titledprocess1x"  # 15 characters: all of comm
    shutil.copy("/usr/bin/yes", busy)
    secret = "--token=hunter2-SECRET-77"
    title = subprocess.Popen(
        # argv[0] carries the title, and a second argument keeps the arguments
        # NUL-separated: psutil's name() would then read "titledprocess1x --token=...".
        ["bash", "-c", f'exec -a "titledprocess1x {secret}" {busy} y > /dev/null'],
    )
    auth = basic_auth_headers("ops", PASSWORD)
    try:

        def listed() -> list[dict[str, Any]] | None:
            latest = requests.get(secured.url + "/api/metrics", headers=auth, timeout=5).json()
            mine = [p for p in latest["processes"] if p["pid"] == title.pid]
            return mine or None

        (row,) = wait_until(listed, timeout=20, what="the busy process in the top table")
        assert row["name"] == "titledprocess1x"
        for path in ("/api/metrics", "/metrics", "/api/history?seconds=60"):
            text = requests.get(secured.url + path, headers=auth, timeout=5).text
            assert "SECRET" not in text, path
    finally:
        title.kill()
        title.wait(5)
