"""Alerts end to end: a real client gets `alert`, webhooks get JSON, nothing waits."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import socketio
from prometheus_client.parser import text_string_to_metric_families

from testkit.config import write_toml
from testkit.serverproc import ServerProcess
from testkit.sioclient import RecordingClient
from testkit.wait import wait_until
from tests.receivers import Receiver

pytestmark = pytest.mark.e2e


def alert_config(path: Path, webhooks: list[str]) -> Path:
    # CPU above 0.1 % at once: a running test machine always is. Critical
    # past 100 %, never reached: a busy tick at 100 % is not this test's alert.
    cpu = {"warning": 0.1, "critical": 1000, "for_seconds": 0, "clear_seconds": 3600}
    alerts = {"webhooks": webhooks, "webhook_timeout": 2, "webhook_retries": 1, "cpu": cpu}
    return write_toml(path, alerts=alerts)


@pytest.fixture
def receivers() -> Iterator[dict[str, Receiver]]:
    made = {mode: Receiver(mode) for mode in ("ok", "error", "hang")}
    try:
        yield made
    finally:
        for receiver in made.values():
            receiver.close()


@pytest.mark.parametrize("mode", ["eventlet", "threading"])
def test_alert_reaches_clients_webhooks_log_and_api(
    mode: str, tmp_path: Path, receivers: dict[str, Receiver]
) -> None:
    config = alert_config(
        tmp_path / "alerts.toml",
        [receivers["hang"].url, receivers["error"].url, receivers["ok"].url],
    )
    server = ServerProcess(tmp_path / "logs", "--async-mode", mode, "--config", str(config)).start(
        wait=False
    )
    alerts: list[dict[str, object]] = []
    snapshots: list[dict[str, object]] = []
    client = RecordingClient()
    client.sio.on("alert", alerts.append)
    client.sio.on("alerts", snapshots.append)
    try:
        server.wait_healthy()
        client.connect(server.url)
        wait_until(lambda: alerts or (snapshots and snapshots[0]["active"]), timeout=8)
        # Either the change arrived live, or it had fired before we connected
        # and the snapshot on connect carries it.
        fired = alerts[0] if alerts else snapshots[0]["active"][0]  # type: ignore[index]
        assert fired["rule"] == "cpu" and fired["metric"] == "cpu.percent"
        assert fired["level"] == "warning" and fired["threshold"] == 0.1
        assert set(fired) >= {"rule", "metric", "level", "value", "threshold", "ts"}

        # The good receiver gets the JSON although the others hang or fail.
        wait_until(lambda: receivers["ok"].bodies, timeout=10)
        assert receivers["ok"].bodies[0]["rule"] == "cpu"
        assert receivers["ok"].bodies[0]["level"] == "warning"

        # And `metrics` kept its 1 Hz beat throughout.
        before = len(client.received("metrics"))
        client.wait_for("metrics", count=before + 4, timeout=8)
        times = client.times("metrics")
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert max(gaps) < 1.6, gaps

        listed = requests.get(server.url + "/api/alerts", timeout=5).json()
        assert [a["rule"] for a in listed["active"]] == ["cpu"]
        assert listed["recent"][0]["rule"] == "cpu"

        scraped = requests.get(server.url + "/metrics", timeout=5).text
        families = {f.name: f for f in text_string_to_metric_families(scraped)}
        active = {s.labels["level"]: s.value for s in families["dashboard_alerts_active"].samples}
        assert active["warning"] == 1
    finally:
        client.close()
        server.stop()
    log = (tmp_path / "logs" / "dashboard.log").read_text()
    assert "WARNING dashboard.alerts: alert cpu WARNING: cpu.percent" in log
    assert "failed after 2 attempts" in log  # the 500 receiver


def test_snapshot_on_connect_comes_after_history(tmp_path: Path) -> None:
    config = alert_config(tmp_path / "alerts.toml", [])
    server = ServerProcess(
        tmp_path / "logs", "--async-mode", "eventlet", "--config", str(config)
    ).start()
    order: list[str] = []
    sio = socketio.Client()
    for name in ("static", "history", "alerts", "metrics"):
        sio.on(name, lambda data, name=name: order.append(name))
    try:
        wait_until(  # the alert has fired before we connect
            lambda: requests.get(server.url + "/api/alerts", timeout=5).json()["active"],
            timeout=5,
            what="the cpu alert active",
        )
        sio.connect(server.url, transports=["websocket"], wait_timeout=10)
        wait_until(lambda: "metrics" in order, timeout=5)
    finally:
        sio.disconnect()
        server.stop()
    assert order[:3] == ["static", "history", "alerts"]
    assert "metrics" in order
