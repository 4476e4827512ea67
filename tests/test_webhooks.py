"""server/alerts/webhooks.py: delivery, retries, no redirects, a deadline, never blocking."""

from __future__ import annotations

import logging
import time

import pytest

from server.alerts.webhooks import FairQueue, WebhookSender
from testkit.auth import basic_authorization
from testkit.wait import wait_until
from tests.receivers import Receiver

ALERT = {
    "rule": "cpu",
    "metric": "cpu.percent",
    "level": "warning",
    "value": 80.0,
    "threshold": 75.0,
    "ts": 1.0,
}


def test_delivers_the_alert_as_json() -> None:
    receiver = Receiver("ok")
    sender = WebhookSender([receiver.url], timeout=2, retries=0)
    sender.start()
    try:
        sender.send(ALERT)
        wait_until(lambda: receiver.bodies)
    finally:
        sender.stop()
        receiver.close()
    assert receiver.bodies == [ALERT]
    assert sender.stats() == {"delivered": 1, "failed": 0, "dropped": 0}


def test_failing_receiver_is_retried_with_backoff_then_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver = Receiver("error")
    sender = WebhookSender([receiver.url + "?token=secret"], timeout=2, retries=2, backoff=0.05)
    sender.start()
    with caplog.at_level(logging.WARNING, logger="dashboard.webhooks"):
        try:
            started = time.monotonic()
            sender.send(ALERT)
            wait_until(lambda: sender.stats()["failed"] == 1)
            elapsed = time.monotonic() - started
        finally:
            sender.stop()
            receiver.close()
    assert receiver.attempts == 3  # one try and two retries
    assert elapsed >= 0.05 + 0.1  # backoff doubled between tries
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "failed after 3 attempts" in messages[0]
    assert "secret" not in messages[0]  # a token in the URL never reaches the log


def test_a_hanging_receiver_never_blocks_send_or_the_others() -> None:
    hanging, good = Receiver("hang"), Receiver("ok")
    sender = WebhookSender([hanging.url, good.url], timeout=5, retries=0)
    sender.start()
    try:
        started = time.monotonic()
        for i in range(300):  # more than the queue holds, from 10 hosts
            sender.send({**ALERT, "host": f"host-{i % 10}"})
        assert time.monotonic() - started < 0.5  # send() only queues
        wait_until(lambda: len(good.bodies) >= 100)
        assert sender.stats()["dropped"] > 0  # the hanging one's queue overflowed
    finally:
        hanging.close()
        sender.stop()
        good.close()


def test_one_hosts_flood_never_crowds_out_anothers_down_or_critical() -> None:
    """A receiver that is slow to answer; one host floods warnings. Every other host's
    alerts get their share, and a host_down or a critical goes in even over the cap."""
    queue = FairQueue(size=100, share=25)
    flood = [{**ALERT, "host": "noisy", "seq": i} for i in range(300)]
    assert sum(queue.put(a) for a in flood) == 25  # its share, no more
    assert queue.put({**ALERT, "host": "quiet"})
    for i in range(74):  # others fill the rest of the queue
        assert queue.put({**ALERT, "host": f"other-{i}"})
    down = {"rule": "host_down", "level": "critical", "host": "db-1"}
    critical = {**ALERT, "level": "critical", "host": "web-3"}
    warning = {**ALERT, "host": "web-4"}
    assert not queue.put(warning)  # full: a warning waits its turn elsewhere
    assert queue.put(down) is False and queue.put(critical) is False  # in, by eviction
    out = [queue.get() for _ in range(100)]
    assert down in out and critical in out and {**ALERT, "host": "quiet"} in out
    assert sum(1 for a in out if a and a["host"] == "noisy") == 23  # the two evicted: its


def test_unreachable_receiver_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    sender = WebhookSender(["http://127.0.0.1:9/nothing-listens"], timeout=1, retries=0)
    sender.start()
    with caplog.at_level(logging.WARNING, logger="dashboard.webhooks"):
        sender.send(ALERT)
        wait_until(lambda: sender.stats()["failed"] == 1)
    sender.stop()
    assert "Connection refused" in caplog.text or "URLError" in caplog.text


def send_one(mode: str, timeout: float = 2, credentials: str = "") -> tuple[Receiver, float]:
    """One alert to a receiver in `mode`; (the receiver, seconds until the outcome)."""
    receiver = Receiver(mode)
    url = receiver.url.replace("http://", f"http://{credentials}")
    sender = WebhookSender([url], timeout=timeout, retries=0)
    sender.start()
    try:
        started = time.monotonic()
        sender.send(ALERT)
        wait_until(lambda: sum(sender.stats().values()), timeout=10)
        receiver.outcome = sender.stats()
        return receiver, time.monotonic() - started
    finally:
        sender.stop()
        receiver.close()


def test_a_redirect_is_not_followed_and_counts_as_failed() -> None:
    receiver, _ = send_one("redirect")
    assert receiver.outcome == {"delivered": 0, "failed": 1, "dropped": 0}
    assert receiver.attempts == 1


def test_a_dripping_receiver_is_cut_at_the_overall_deadline() -> None:
    receiver, took = send_one("drip", timeout=1.5)
    assert receiver.outcome["failed"] == 1
    assert took < 4  # not 60 s of one header a second


def test_credentials_in_the_url_become_http_basic() -> None:
    receiver, _ = send_one("ok", credentials="hook%20user:s3cr%40t@")
    assert receiver.headers[0]["Authorization"] == basic_authorization("hook user", "s3cr@t")
    assert receiver.outcome["delivered"] == 1
