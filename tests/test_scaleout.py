"""One core and two web processes on a real Redis, behind a real Nginx.

One tier serves the whole module; the tests run in file order and each
leaves it whole (core, both webs, Redis up) for the next.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from testkit.chromium import Chromium
from testkit.deploytools import SITE_TEMPLATE, NginxProcess, checkout_site, render_epp
from testkit.history import samples_between
from testkit.redisproc import RedisProcess
from testkit.serverproc import ServerProcess, free_port, run_server_command
from testkit.sioclient import RecordingClient
from testkit.system import require_binary
from testkit.wait import wait_until

pytestmark = pytest.mark.e2e


def three_free_ports() -> int:
    """A port P with P+1 and P+2 free too: the core, then its web processes."""
    for _ in range(50):
        base = free_port()
        try:
            for offset in (1, 2):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        return base
    raise RuntimeError("no three free ports in a row")


class Tier:
    def __init__(self, work: Path, redis: RedisProcess, base: int) -> None:
        self.work = work
        self.redis = redis
        self.data = work / "data"
        common = [
            "--message-queue", redis.url, "--data-dir", str(self.data),
            "--proxy-hops", "1", "--allow-anonymous", "true",
        ]  # fmt: skip
        self.core = ServerProcess(work / "core" / "logs", "--role", "core", *common, port=base)
        self.webs = [
            ServerProcess(work / f"web{i}" / "logs", "--role", "web", *common, port=base + i)
            for i in (1, 2)
        ]
        self.nginx: NginxProcess | None = None

    @property
    def url(self) -> str:
        assert self.nginx is not None
        return f"http://127.0.0.1:{self.nginx.port}"


@pytest.fixture(scope="module")
def tier(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tier]:
    work = tmp_path_factory.mktemp("tier")
    redis = RedisProcess(require_binary("redis-server"), work / "redis").start()
    tier = Tier(work, redis, three_free_ports())
    try:
        tier.core.start()
        for web in tier.webs:
            web.start()
        port = free_port()
        values = checkout_site(
            f"127.0.0.1:{port}", tier.core.port, "localhost 127.0.0.1", web_workers=2
        )
        site = render_epp(require_binary("puppet"), SITE_TEMPLATE, values)
        tier.nginx = NginxProcess(require_binary("nginx"), work / "nginx", site, port)
        yield tier
    finally:
        if tier.nginx is not None:
            tier.nginx.stop()
        for web in tier.webs:
            with contextlib.suppress(AssertionError):
                web.stop()
        with contextlib.suppress(AssertionError):
            tier.core.stop()
        redis.kill()


def clients_on(web: ServerProcess) -> int:
    text = requests.get(web.url + "/metrics", timeout=5).text
    line = next(li for li in text.splitlines() if li.startswith("dashboard_socketio_clients"))
    return int(float(line.split()[-1]))


def client(url: str, route: str, transports: tuple[str, ...] = ("websocket",)) -> RecordingClient:
    """A client with a route cookie on every request, as a browser has after the page."""
    session = requests.Session()
    session.cookies.set("dashboard_route", route)
    recording = RecordingClient(http_session=session)
    recording.connect(url, transports=transports, headers={"Cookie": f"dashboard_route={route}"})
    return recording


def test_every_client_gets_the_same_seq_through_nginx(tier: Tier) -> None:
    clients = []
    try:
        # Routes until both web processes hold clients (the hash spreads them).
        for i in range(20):
            clients.append(client(tier.url, f"route-{i}"))
            if len(clients) >= 4 and all(clients_on(web) >= 1 for web in tier.webs):
                break
        assert all(clients_on(web) >= 1 for web in tier.webs)
        clients.append(client(tier.url, "polling-route", transports=("polling",)))
        time.sleep(3.5)
        tails = []
        for recording in clients:
            seqs = [m["seq"] for m in recording.received("metrics")]
            assert len(seqs) >= 3, seqs
            tails.append(set(seqs[-3:]))
            history = recording.received("history")[0]["samples"]
            assert [s["seq"] for s in history][-3:] == sorted([s["seq"] for s in history][-3:])
        assert set.intersection(*tails), tails  # the same samples, whichever backend
        assert requests.get(tier.url + "/api/static", timeout=5).json()["hostname"]
        assert len(requests.get(tier.url + "/api/history", timeout=5).json()["samples"]) >= 3
    finally:
        for recording in clients:
            recording.close()


def test_a_second_core_refuses_to_start(tier: Tier, tmp_path: Path) -> None:
    result = run_server_command(
        "--role", "core", "--message-queue", tier.redis.url,
        "--port", str(free_port()), "--log-dir", str(tmp_path), "--data-dir", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "another core holds the lease" in lines[0]
    assert f":{tier.core.proc.pid}" in lines[0]  # type: ignore[union-attr]


def contiguous(seqs: list[int]) -> bool:
    return seqs == list(range(seqs[0], seqs[0] + len(seqs)))


def test_a_killed_web_process_hands_its_clients_to_the_other(tier: Tier) -> None:
    victim, other = tier.webs
    clients = []
    try:
        for i in range(20):
            clients.append(client(tier.url, f"move-{i}"))
            if clients_on(victim) >= 2 and clients_on(other) >= 1:
                break
        moved = [c for c in clients if c.sio.connected]
        time.sleep(1.5)
        before = {id(c): len(c.received("history")) for c in moved}
        killed = time.monotonic()
        victim.stop(sig=9)

        def live_again(recording: RecordingClient) -> bool:
            times = recording.times("metrics")
            return bool(recording.sio.connected and times and times[-1] > killed)

        for recording in moved:
            # Those on the dead one connect again through Nginx, to the other.
            wait_until(functools.partial(live_again, recording), timeout=8)
        assert time.monotonic() - killed <= 5
        again = [c for c in moved if len(c.received("history")) > before[id(c)]]
        assert again, "no client was on the killed process"
        for recording in again:
            assert recording.received("static")[-1]["hostname"]
            history = [s["seq"] for s in recording.received("history")[-1]["samples"]]
            assert len(history) >= 3 and contiguous(history), history
    finally:
        for recording in clients:
            recording.close()
        victim.start()


def page_status(browser: Chromium) -> str:
    return str(browser.evaluate("document.getElementById('status').textContent"))


def test_pages_stall_without_the_core_and_come_back(tier: Tier) -> None:
    browser = Chromium(require_binary("chromium", "chromium-browser"))
    try:
        browser.navigate(tier.url + "/")
        browser.wait_for("document.body.dataset.status === 'live' && document.body.dataset.seq")
        killed = time.monotonic()
        tier.core.stop(sig=9)
        wait_until(lambda: page_status(browser) == "stalled", timeout=8)
        assert time.monotonic() - killed <= 3 + 1  # three intervals, and the test's polling
        tier.core.start()  # takes over the dead core's lease at once
        wait_until(lambda: page_status(browser) == "live", timeout=15)
    finally:
        browser.close()


def test_a_redis_outage_stalls_the_pages_and_loses_nothing(tier: Tier) -> None:
    watcher = client(tier.url, "outage-route")
    try:
        watcher.wait_for("metrics", count=2)
        began = time.time()
        tier.redis.kill()
        time.sleep(8)
        # The web processes go on serving REST from what they hold and the store.
        assert requests.get(tier.url + "/api/static", timeout=5).status_code == 200
        during = time.monotonic()
        tier.redis.start()
        ended = time.time()
        # Live again without a restart: the queue's listeners reconnect.
        wait_until(
            lambda: watcher.times("metrics") and watcher.times("metrics")[-1] > during,
            timeout=40,
            what="metrics again after Redis came back",
        )
        wait_until(  # the store commits every 5 s: the samples up to `ended` on disk
            lambda: samples_between(tier.url, ended - 1, ended + 1),
            timeout=15,
            interval=0.5,
            what="a store batch past the outage",
        )
        params: dict[str, Any] = {"start": began - 3, "end": ended + 1}
        samples = requests.get(tier.url + "/api/history", params=params, timeout=10).json()
        stamps = [s["ts"] for s in samples["samples"]]
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        assert stamps and max(gaps) <= 2.0, f"a gap of {max(gaps):.1f} s in the store"
        assert stamps[0] <= began and stamps[-1] >= ended - 1
        assert len(stamps) == len(set(stamps))
        json.dumps(samples)  # a whole JSON answer
    finally:
        watcher.close()
