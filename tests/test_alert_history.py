"""The alerts' history (server/history/alert_log.py): kept in the store per host as long
as the 1 min tier, read back filtered, as JSON and CSV; on a real server its events
(fired, sent, acknowledged) survive a restart, and the page's History lists them."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from server.history import alert_log
from server.history.store import HistoryStore, Retention
from testkit.chromium import Chromium
from testkit.config import write_toml
from testkit.serverproc import ServerProcess
from testkit.wait import wait_until
from tests.receivers import Receiver
from tests.test_channels import json_url

# A running machine passes it at once, and it holds.
LOW = {"warning": 0.1, "critical": 1000, "for_seconds": 0, "clear_seconds": 3600}


def change(rule: str, level: str, host: str = "db-1", value: float = 97.0) -> dict[str, Any]:
    return {"host": host, "rule": rule, "level": level, "previous": "ok", "value": value,
            "metric": rule, "threshold": 90.0}  # fmt: skip


def test_events_are_kept_per_host_filtered_aged_out_and_quoted_in_csv(tmp_path: Path) -> None:
    now = [time.time()]
    store = HistoryStore(str(tmp_path / "h.sqlite3"), Retention(tier_1m=3600), clock=lambda: now[0])
    store.open()
    history = alert_log.HistoryChannel(store.alert_log)
    history.send(change("cpu", "critical"))
    history.send(change("container_exited:=cmd|' /c calc'!A1", "critical"))
    history.send(change("container_exited:web-1", "critical"))
    history.send({**change("cpu", "ok", value=12.0), "previous": "critical"})
    store.alert_log.note(change("cpu", "critical"), "sent", "to chat")
    history.acknowledged({"host": "db-1", "rule": "cpu", "by": "ann", "at": now[0]})
    history.send(change("cpu", "warning", host="web-3"))
    store.flush()
    every = store.alert_events("db-1", now[0] - 60, now[0] + 60)
    assert [(e["event"], e["rule"]) for e in every] == [
        ("acknowledged", "cpu"), ("sent", "cpu"), ("cleared", "cpu"),
        ("fired", "container_exited:web-1"), ("fired", "container_exited:=cmd|' /c calc'!A1"),
        ("fired", "cpu"),
    ]  # newest first; web-3's are its own  # fmt: skip
    assert every[2]["detail"] == "critical -> ok: cpu = 12.0 (threshold 90.0)"
    assert every[0]["detail"] == "by ann" and every[0]["level"] is None
    family = store.alert_events("db-1", now[0] - 60, now[0] + 60, rule="container_exited")
    assert len(family) == 2  # a rule's family: its items' rules
    assert store.alert_events("db-1", now[0] - 60, now[0] + 60, rule="container_%") == []
    sent = store.alert_events("db-1", now[0] - 60, now[0] + 60, event="sent")
    assert [e["detail"] for e in sent] == ["to chat"]
    rows = list(csv.reader(io.StringIO(alert_log.as_csv(family))))
    assert rows[0] == ["ts", "time_utc", "host", "rule", "event", "level", "value", "detail"]
    assert rows[2][3] == "container_exited:=cmd|' /c calc'!A1"  # not at a cell's start
    assert alert_log._cell("=cmd|' /c calc'!A1") == "'=cmd|' /c calc'!A1"
    now[0] += 3601 + 60  # past the 1 min tier's retention; retention runs once a minute
    store.flush()
    assert store.alert_events("db-1", 0, now[0]) == []
    store.stop()


@pytest.mark.e2e
@pytest.mark.browser
def test_fired_sent_and_acknowledged_survive_a_restart_and_show_on_the_page(
    tmp_path: Path, chat: Receiver, browser: Chromium
) -> None:
    config = write_toml(
        tmp_path / "dashboard.toml",
        alerts={"cpu": LOW},
        notify_group_wait=0,
        notify={"chat": {"url": json_url(chat)}},
    )
    server = ServerProcess(tmp_path / "logs", "--config", str(config))

    def events(**query: str) -> list[dict[str, Any]]:
        answer = requests.get(server.url + "/api/alerts/history", params=query, timeout=5)
        assert answer.status_code == 200, answer.text
        found: list[dict[str, Any]] = answer.json()["events"]
        return found

    try:
        server.start()
        wait_until(lambda: chat.bodies, timeout=15, what="the chat's message")
        ack = requests.post(server.url + "/api/alerts/ack", json={"rule": "cpu"}, timeout=5)
        assert ack.status_code == 200, ack.text
        wait_until(lambda: len(events()) >= 3, timeout=15, what="three events stored")
        server.stop()
        server.start()  # the same data_dir
        kept = [(e["event"], e["rule"]) for e in events() if e["rule"] == "cpu"]
        assert ("fired", "cpu") in kept and ("sent", "cpu") in kept
        assert ("acknowledged", "cpu") in kept
        assert [e["detail"] for e in events(event="sent")][-1] == "to chat"
        answer = requests.get(server.url + "/api/alerts/history",
                              params={"format": "csv", "rule": "cpu"}, timeout=5)  # fmt: skip
        assert answer.headers["Content-Type"].startswith("text/csv")
        assert answer.text.splitlines()[0].startswith("ts,time_utc,host,rule,event")
        for bad in ({"event": "exploded"}, {"start": "x"}, {"start": "10", "end": "5"},
                    {"format": "xml"}, {"rule": "r" * 201}):  # fmt: skip
            refused = requests.get(server.url + "/api/alerts/history", params=bad, timeout=5)
            assert refused.status_code == 400 and "error" in refused.json(), bad
        missing = requests.get(server.url + "/api/hosts/nobody/alerts/history", timeout=5)
        assert missing.status_code == 404

        browser.navigate(server.url + "/")
        browser.wait_for("document.body.dataset.status === 'live'", timeout=20)
        browser.evaluate("document.querySelector('#alert-history-panel summary').click()")
        browser.wait_for("document.querySelectorAll('#alert-history li').length >= 3")
        texts = browser.evaluate(
            "[...document.querySelectorAll('#alert-history li')].map(li => li.textContent)"
        )
        assert any(" · acknowledged · cpu · by anonymous" in t for t in texts), texts
        browser.evaluate("""(() => { const s = document.getElementById('alert-history-event');
          s.value = 'sent'; s.dispatchEvent(new Event('change')); })()""")
        browser.wait_for("[...document.querySelectorAll('#alert-history li')]"
                         ".every(li => li.textContent.includes(' · sent · '))")  # fmt: skip
        assert "format=csv" in browser.evaluate("document.getElementById('alert-history-csv').href")
        assert browser.console_errors() == []
    finally:
        server.stop()
