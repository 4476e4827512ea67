"""Evidence in notifications (server/alerts/evidence.py): the item an alert names, the
top processes, the host's last log lines (redacted) and a link to its page at that
moment; on a real server with a real SMTP relay and chat receiver, and the linked
page in Chromium."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest
import requests

from server.alerts.evidence import _Deadlined, _named_item, _top_processes
from testkit.chromium import Chromium
from testkit.config import write_toml
from testkit.serverproc import ServerProcess
from testkit.wait import wait_until
from tests.receivers import MailReceiver, Receiver
from tests.test_channels import json_url, mail_url

SAMPLE = {
    "ts": 1_800_000_000.0,
    "processes": [
        {"pid": 4242, "name": "postgres", "cpu_percent": 91.5, "memory_percent": 12.0},
        {"pid": 17, "name": "backup", "cpu_percent": 4.0, "memory_percent": 1.5},
    ],
    "containers": {
        "running": 1,
        "unhealthy": 0,
        "stopped": 1,
        "items": [
            {
                "name": "web-1",
                "state": "exited",
                "health": None,
                "exit_code": 3,
                "cpu_percent": None,
                "memory_used": None,
                "restarts": 7,
            },
        ],
    },
    "services": {
        "units": [
            {
                "name": "nginx.service",
                "state": "failed",
                "sub": "failed",
                "result": "exit-code",
                "restarts": 2,
            }
        ]
    },
    "disks": [{"mount": "/var", "device": "/dev/vdb", "fstype": "ext4", "percent": 96.5}],
}


def test_the_item_an_alert_names_is_shown_from_the_sample() -> None:
    assert _named_item("container_exited:web-1", SAMPLE) == (
        "Container web-1", ["state: exited", "exit_code: 3", "restarts: 7"])  # fmt: skip
    assert _named_item("unit_failed:nginx.service", SAMPLE) == (
        "Unit nginx.service",
        ["state: failed", "sub: failed", "result: exit-code", "restarts: 2"],
    )
    assert _named_item("disk:/var", SAMPLE) == (
        "Disk /var", ["device: /dev/vdb", "fstype: ext4", "percent: 96.5"])  # fmt: skip
    assert _named_item("container_unhealthy:gone", SAMPLE) == (
        "Container gone", ["not in the latest sample (gone, or not listed)"])  # fmt: skip
    assert _named_item("cpu", SAMPLE) is None  # a host's rule names no item
    heading, lines = _top_processes(SAMPLE) or ("", [])
    assert heading.startswith("Top processes at ")
    assert lines[0].split() == ["4242", "postgres", "cpu", "91.5", "%", "mem", "12.0", "%"]
    assert _top_processes({"processes": []}) is None


def test_a_log_read_that_hangs_is_left_out_after_its_deadline_and_not_started_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """As a hung NFS would: the read holds its own thread, the caller waits 0.2 s, and
    no second thread is started until the first returns."""
    release = threading.Event()
    calls: list[int] = []

    def tails(count: int) -> dict[str, list[str]]:
        calls.append(count)
        release.wait(10)
        return {"app": ["late"]}

    reader = _Deadlined(0.2)
    started = time.monotonic()
    assert reader.read(tails, 10) == {}
    assert 0.2 <= time.monotonic() - started < 1.0
    assert reader.read(tails, 10) == {}  # still hung: not asked again
    assert calls == [10]
    release.set()
    wait_until(lambda: not reader._reading, timeout=5, what="the hung read to return")
    assert reader.read(tails, 10) == {"app": ["late"]}
    said = [r.getMessage() for r in caplog.records]
    assert any("took over 0.2 s" in m for m in said)
    assert any("has not returned" in m for m in said)


@pytest.mark.e2e
@pytest.mark.browser
def test_the_email_and_the_chat_carry_the_evidence_and_the_link_opens_that_moment(
    tmp_path: Path, relay: MailReceiver, chat: Receiver, browser: Chromium
) -> None:
    """The server's own cpu alert (warning at 0.1: a running machine passes it): the
    email has the top processes, the log source's last lines with its secret hidden,
    and the link; the chat a line of it and the link. The link opens the page on the
    hour around the alert, not live, until a range is chosen."""
    app_log = tmp_path / "app.log"
    app_log.write_text("".join(f"worker {i} ok\n" for i in range(30))
                       + "ERROR disk full on /var\nretrying with password=hunter2\n")  # fmt: skip
    server = ServerProcess(tmp_path / "logs", "--config", str(tmp_path / "dashboard.toml"))
    write_toml(
        tmp_path / "dashboard.toml",
        alerts={"cpu": {"warning": 0.1, "critical": 1000, "for_seconds": 0, "clear_seconds": 3600}},
        notify_group_wait=0,
        notify={"mail": {"url": mail_url(relay)}, "chat": {"url": json_url(chat)}},
        log_sources={"app": str(app_log)},
        public_url=server.url + "/",
    )
    try:
        server.start()
        wait_until(lambda: relay.messages and chat.bodies, timeout=15, what="the messages")
        mail = relay.text(relay.messages[0]).replace("\r\n", "\n")
        short = chat.bodies[0]["message"]
        link = re.search(r"http://127\.0\.0\.1:\d+/host/[\w.-]+\?at=(\d+)", mail)
        assert link is not None, mail
        at = int(link.group(1))
        assert abs(at - time.time()) < 30
        assert link.group(0) in short.splitlines()  # the chat has the link too
        top = mail.split("Top processes at ")[1].split("\n\n")[0].splitlines()[1:]
        assert 1 <= len(top) <= 5 and all(re.search(r"cpu [\d.]+ %  mem [\d.]+ %", t) for t in top)
        assert short.splitlines()[1].startswith("Top processes at ")
        tail = mail.split("Last lines of app\n")[1].split("\n\n")[0].splitlines()
        assert tail[-2].strip() == "ERROR disk full on /var"
        assert len(tail) == 10 and "hunter2" not in mail + short  # redacted as on the page
        assert "retrying with password=" in tail[-1]

        # The store writes in batches: the page asks it for the hour around `at`.
        wait_until(
            lambda: requests.get(
                f"{server.url}/api/history?start={at - 5}&end={time.time()}", timeout=5
            ).json()["samples"],
            timeout=30,
            what="the store's first samples",
        )
        browser.navigate(link.group(0))
        browser.wait_for("document.body.dataset.rangeLoaded === '3600'", timeout=20)
        assert "from a notification" in browser.evaluate(
            "document.getElementById('range-note').textContent"
        )
        last = "window.__dashboardPlots.cpu.data[0].at(-1)"
        shown = float(browser.evaluate(last))
        assert at <= shown <= time.time() + 1
        time.sleep(2.5)  # live samples come to the cards, not to these charts
        assert float(browser.evaluate(last)) == shown
        browser.evaluate("document.querySelector('#ranges button[data-seconds=\"900\"]').click()")
        browser.wait_for(f"{last} > {shown} + 1", timeout=10)  # live again
        assert browser.console_errors() == []
    finally:
        server.stop()
