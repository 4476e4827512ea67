"""End to end: the real server process, a real Socket.IO client over WebSocket."""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from testkit.serverproc import ServerProcess, run_server_command
from testkit.sioclient import RecordingClient, open_socket
from tests.contract import check_sample, check_static

pytestmark = pytest.mark.e2e


def test_client_gets_static_then_history_then_metrics(server: ServerProcess) -> None:
    client = RecordingClient()
    client.connect(server.url)
    try:
        assert client.sio.transport() == "websocket"
        metrics = client.wait_for("metrics", count=4, timeout=10)
    finally:
        client.close()
    names = client.names()
    assert names[:2] == ["static", "history"]
    assert set(names[2:]) == {"metrics"}
    static = client.received("static")[0]
    check_static(static)
    assert (
        static["hostname"] == requests.get(server.url + "/api/static", timeout=5).json()["hostname"]
    )
    history = client.received("history")[0]["samples"]
    assert history, "the server has been sampling since it started"
    for sample in history:
        check_sample(sample, with_processes=False)
    for sample in metrics:
        check_sample(sample)
    seqs = [m["seq"] for m in metrics]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert seqs[0] == history[-1]["seq"] + 1  # nothing missed, nothing repeated
    gaps = [
        b - a for a, b in zip(client.times("metrics"), client.times("metrics")[1:], strict=False)
    ]
    assert all(0.6 < gap < 1.4 for gap in gaps), gaps
    ts_gaps = [b["ts"] - a["ts"] for a, b in itertools.pairwise(metrics)]
    assert all(0.8 < gap < 1.2 for gap in ts_gaps), ts_gaps


def test_twenty_clients_receive_the_same_samples(server: ServerProcess) -> None:
    clients = [RecordingClient() for _ in range(20)]
    with ThreadPoolExecutor(max_workers=20) as pool:
        list(pool.map(lambda c: c.connect(server.url), clients))
    try:
        for client in clients:
            client.wait_for("metrics", count=3, timeout=15)
    finally:
        # In parallel: a client's close waits up to 3 s for the server's close frame.
        with ThreadPoolExecutor(max_workers=20) as pool:
            list(pool.map(lambda c: c.close(), clients))
    seq_lists = [[m["seq"] for m in c.received("metrics")] for c in clients]
    for seqs in seq_lists:
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # none missed
    common = set.intersection(*(set(s) for s in seq_lists))
    assert len(common) >= 2
    by_seq: dict[int, list[dict[str, object]]] = {}
    for client in clients:
        for sample in client.received("metrics"):
            if sample["seq"] in common:
                # Every client gets the same sample for a seq: one sample, N sends.
                assert by_seq.setdefault(sample["seq"], sample) == sample


def test_rest_answers_match_the_contract(server: ServerProcess) -> None:
    check_static(requests.get(server.url + "/api/static", timeout=5).json())
    latest = requests.get(server.url + "/api/metrics", timeout=5)
    assert latest.status_code == 200
    check_sample(latest.json())
    history = requests.get(server.url + "/api/history?seconds=60", timeout=5).json()["samples"]
    assert history and history[-1]["seq"] >= latest.json()["seq"] - 1
    bad = requests.get(server.url + "/api/history?seconds=soon", timeout=5)
    assert bad.status_code == 400 and "seconds" in bad.json()["error"]
    health = requests.get(server.url + "/healthz", timeout=5).json()
    assert health["status"] == "ok" and health["last_sample_age"] < 2
    missing = requests.get(server.url + "/api/missing", timeout=5)
    assert missing.status_code == 404 and missing.json()["error"]


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (["--port", "web"], "port"),
        (["--interval", "0"], "interval"),
        (["--interval", "banana"], "interval"),
        (["--config", "/nonexistent/dashboard.toml"], "config"),
        (["--async-mode", "asyncio"], "async_mode"),
    ],
)
def test_bad_setting_exits_with_one_line(args: list[str], name: str) -> None:
    result = run_server_command(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"setting '{name}'" in lines[0]


def test_bad_environment_setting_exits(tmp_path: Path) -> None:
    result = run_server_command(env={"PATH": "/usr/bin", "DASHBOARD_PORT": "eighty"})
    assert result.returncode == 2
    assert "setting 'port' (from DASHBOARD_PORT)" in result.stderr


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    first = ServerProcess(tmp_path / "a", "--async-mode", "threading").start()
    try:
        result = run_server_command("--port", str(first.port), "--log-dir", str(tmp_path / "b"))
    finally:
        first.stop()
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "cannot listen on 127.0.0.1:" in result.stderr


def test_help_lists_every_flag() -> None:
    result = run_server_command("--help")
    assert result.returncode == 0
    for flag in (
        "--host",
        "--port",
        "--interval",
        "--config",
        "--history-seconds",
        "--log-config",
        "--log-dir",
        "--async-mode",
    ):
        assert flag in result.stdout


@pytest.mark.parametrize("mode", ["eventlet", "threading"])
def test_sigterm_is_a_clean_exit(mode: str, tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "logs", "--async-mode", mode).start()
    client = RecordingClient(reconnection=False)
    told: list[object] = []
    client.sio.on("shutdown", told.append)
    client.connect(server.url)
    client.wait_for("metrics")
    assert server.stop() == 0
    assert told == [{"reason": "the server is stopping"}]  # clients are told
    client.close()
    output = server.output()
    assert "Traceback" not in output
    assert "Eventlet is deprecated" not in output  # not on the console
    log = (tmp_path / "logs" / "dashboard.log").read_text()
    assert "sampler stopped" in log


MALFORMED = [
    "9zz",
    '42["x"',
    "4{bad",
    '45-["a"]',
    '42/nope,["e"]',
    "6",
    "3",
    "\x00",
    "2probe",
    '42["metrics",{}]',
    "4" + "x" * 1000,
]


def test_malformed_packets_do_not_flood_the_log(server: ServerProcess) -> None:

    watcher = RecordingClient()
    watcher.connect(server.url)
    try:
        for _ in range(30):
            ws = open_socket(server.url, timeout=5)
            for message in MALFORMED:
                ws.send(message)
            ws.close()
        before = len(watcher.received("metrics"))
        watcher.wait_for("metrics", count=before + 2, timeout=5)  # still served at 1 Hz
    finally:
        watcher.close()
    server.stop()
    log = (server.log_dir / "dashboard.log").read_text()
    assert log.count("Traceback") <= 2, log  # one per noisy logger at most, not 330
    assert len(log.splitlines()) < 150
    assert "Eventlet is deprecated" not in server.output()
