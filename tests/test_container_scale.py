"""Containers at scale, on a real dockerd of the test's own: 200 running on one host, and
churn (600 containers started and removed, one after another). Memory, the payload,
the history series and /metrics series stay within their bounds."""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from server.fleet.protocol import MAX_MESSAGE
from server.sampling.containers import MAX_ITEMS
from server.wire import json_bytes
from testkit.chromium import Chromium
from testkit.docker import IMAGE, Docker
from testkit.serverproc import ServerProcess
from testkit.sioclient import RecordingClient
from testkit.wait import wait_until

pytestmark = pytest.mark.e2e

CHURN = 600  # the "a container a second for ten minutes", as fast as dockerd goes
MiB = 1024 * 1024


def latest_table(page: RecordingClient) -> dict[str, Any] | None:
    samples = page.received("metrics")
    return samples[-1].get("containers") if samples else None


def container_series(url: str) -> set[str]:
    """The container names /metrics has a series for."""
    text = requests.get(url + "/metrics", timeout=10).text
    return set(re.findall(r'^dashboard_container_\w+\{[^}]*container="([^"]*)"', text, re.M))


def stored_names(data_dir: Path) -> dict[int, int]:
    """Per 10 s bucket, how many containers the store keeps a row for."""
    db = sqlite3.connect(f"file:{data_dir / 'history.sqlite3'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT ts, count(*) FROM containers_10s GROUP BY ts").fetchall()
    finally:
        db.close()
    return {int(ts): int(count) for ts, count in rows}


@pytest.mark.browser
def test_two_hundred_containers_stay_within_the_bounds(
    docker: Docker, tmp_path: Path, browser: Chromium
) -> None:
    ids = [docker.cli("create", "--network", "none", "--name", f"many-{k:03d}", IMAGE,
                      "sleep", "100000").stdout.strip() for k in range(200)]  # fmt: skip
    for start in range(0, len(ids), 50):
        docker.cli("start", *ids[start : start + 50])
    server = ServerProcess(tmp_path / "logs", "--containers", docker.socket).start()
    page = RecordingClient()
    try:
        page.connect(server.url)

        def all_listed() -> dict[str, Any] | None:
            table = latest_table(page)
            if not table or table["running"] < 200 or len(table["items"]) != MAX_ITEMS:
                return None
            return table if all(i["cpu_percent"] is not None for i in table["items"]) else None

        table = wait_until(all_listed, timeout=60, what="200 containers listed")
        assert {i["name"] for i in table["items"]} == {f"many-{k:03d}" for k in range(200)}
        frame = len(json_bytes(page.received("metrics")[-1]))
        assert frame < MAX_MESSAGE, frame  # a page's frame fits what an agent may send
        assert len(container_series(server.url)) == 200
        # The page: the busiest 15, the rest one click away.
        browser.navigate(server.url + "/")
        shown = browser.wait_for(
            "(n => n >= 15 && n)(document.querySelectorAll('#containers tr[data-name]').length)"
        )
        assert shown == 15
        more = browser.evaluate("document.getElementById('containers-more').textContent")
        assert more == "show all 200 (185 more)"
        browser.evaluate("document.getElementById('containers-more').click()")
        assert browser.wait_for(
            "(n => n === 200 && n)(document.querySelectorAll('#containers tr[data-name]').length)"
        ) == 200  # fmt: skip
        assert browser.console_errors() == []
        # History: a row per container per 10 s bucket, no more.
        buckets = wait_until(lambda: stored_names(server.data_dir) or None, timeout=30)
        assert max(buckets.values()) <= MAX_ITEMS and 200 in buckets.values()
    finally:
        page.close()
        server.stop()
        docker.cli("rm", "-f", *ids, check=False)


def test_churn_grows_neither_memory_nor_payload_nor_series(docker: Docker, tmp_path: Path) -> None:
    """600 containers, each started and removed (as fast as dockerd goes: about two a
    second here, more names per bucket than one a second would give)."""
    docker.run("steady", IMAGE, "sleep", "100000")
    server = ServerProcess(tmp_path / "logs", "--containers", docker.socket).start()
    page = RecordingClient()
    try:
        page.connect(server.url)
        wait_until(lambda: (latest_table(page) or {}).get("running"), timeout=30)
        assert server.proc is not None
        process = psutil.Process(server.proc.pid)

        def churn(count: int, offset: int) -> None:
            for k in range(offset, offset + count):
                docker.run(f"churn-{k}", IMAGE, "sleep", "100000")
                docker.cli("rm", "-f", f"churn-{k}")

        churn(100, 0)  # warm up: the collector, the rules and the store at work
        time.sleep(3)
        rss_before = process.memory_info().rss
        started = time.monotonic()
        churn(CHURN - 100, 100)
        took = time.monotonic() - started
        time.sleep(3)  # the last removals seen
        rss_after = process.memory_info().rss
        # Memory: what a name left behind would show as at 500 names (a rule, an
        # entry, a series: a few KiB each): well under that.
        assert rss_after - rss_before < 16 * MiB, (rss_before, rss_after, took)
        table = wait_until(
            lambda: (t := latest_table(page)) and [i["name"] for i in t["items"]] == ["steady"]
            and t, timeout=40, what="only steady left",
        )  # fmt: skip
        assert table["running"] == 1
        sizes = [len(json_bytes(s)) for s in page.received("metrics")[-20:]]
        assert max(sizes) < 8 * 1024, sizes  # the churned names left nothing in the payload
        assert container_series(server.url) == {"steady"}  # /metrics: the living only
        buckets = stored_names(server.data_dir)
        assert buckets and max(buckets.values()) <= MAX_ITEMS
        alerts = requests.get(server.url + "/api/alerts", timeout=5).json()
        assert not [a for a in alerts["active"] if a["rule"].startswith("container_")]
    finally:
        page.close()
        server.stop()
        docker.cli("rm", "-f", "steady", check=False)
