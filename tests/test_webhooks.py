"""server/webhooks.py: delivery, retries with backoff, and never blocking the caller."""

from __future__ import annotations

import logging
import time

import pytest

from server.alerts.webhooks import WebhookSender
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
        for _ in range(300):  # more than the queue holds
            sender.send(ALERT)
        assert time.monotonic() - started < 0.5  # send() only queues
        wait_until(lambda: len(good.bodies) >= 100)
        assert sender.stats()["dropped"] > 0  # the hanging one's queue overflowed
    finally:
        hanging.close()
        sender.stop()
        good.close()


def test_unreachable_receiver_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    sender = WebhookSender(["http://127.0.0.1:9/nothing-listens"], timeout=1, retries=0)
    sender.start()
    with caplog.at_level(logging.WARNING, logger="dashboard.webhooks"):
        sender.send(ALERT)
        wait_until(lambda: sender.stats()["failed"] == 1)
    sender.stop()
    assert "Connection refused" in caplog.text or "URLError" in caplog.text
