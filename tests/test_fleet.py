"""The fleet end to end: a hub and 20 real agent processes, some in network namespaces.

One hub and its agents serve the whole module; the tests run in file order
and each leaves the fleet whole (every agent reporting) for the next.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import socketio

import server
from server.fleet.tokens import AgentTokens
from testkit.auth import basic_auth_headers, password_hash
from testkit.chromium import Chromium
from testkit.config import write_toml
from testkit.fleet import AgentProcess, Netns, connect_as_agent, wait_until_the_hub_takes
from testkit.history import samples_between
from testkit.serverproc import ServerProcess
from testkit.system import require_binary
from testkit.wait import wait_until
from tests.contract import check_sample, check_static
from tests.receivers import Receiver

pytestmark = pytest.mark.e2e

AGENTS = 20
NETNS_AGENTS = 3
PASSWORD = "fleet password 1"
AUTH = basic_auth_headers("ops", PASSWORD)


class Fleet:
    def __init__(self, hub: ServerProcess, agents: dict[str, AgentProcess], receiver: Receiver):
        self.hub = hub
        self.agents = agents
        self.receiver = receiver
        self.tokens: AgentTokens = AgentTokens(str(hub.data_dir))
        self.started = 0.0  # when the agent processes were started

    def get(self, path: str, **kw: Any) -> requests.Response:
        return requests.get(self.hub.url + path, headers=AUTH, timeout=10, **kw)


class FleetWatcher:
    """A Socket.IO client on the fleet view that keeps every `fleet` event with its time."""

    def __init__(self, url: str) -> None:
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.changes: list[tuple[float, dict[str, Any]]] = []  # host_state, as they come
        self.lock = threading.Lock()
        self.sio = socketio.Client(reconnection_delay=0.5, reconnection_delay_max=2)
        self.sio.on("fleet", self._record)
        self.sio.on("host_state", lambda d: self.changes.append((time.monotonic(), d)))
        self.sio.connect(
            url,
            auth={"view": "fleet"},
            headers=AUTH,
            transports=["websocket"],
            wait_timeout=10,
        )

    def _record(self, data: dict[str, Any]) -> None:
        with self.lock:
            self.events.append((time.monotonic(), data))

    def tiles(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            return {t["id"]: t for t in self.events[-1][1]["hosts"]} if self.events else {}

    def since(self, start: float) -> list[dict[str, Any]]:
        with self.lock:
            return [data for at, data in self.events if at >= start]

    def became(self, host: str, state: str, after: float) -> float | None:
        """When `host` changed to `state` after `after` (monotonic), if it did."""
        for at, change in list(self.changes):
            if at >= after and change["host"] == host and change["state"] == state:
                return at
        return None

    def close(self) -> None:
        self.sio.disconnect()


def can_make_netns() -> bool:
    return os.geteuid() == 0 and (os.path.exists("/usr/sbin/ip") or os.path.exists("/sbin/ip"))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    work = tmp_path_factory.mktemp("fleet")
    receiver = Receiver("ok")
    namespaces = [Netns(i + 1) for i in range(NETNS_AGENTS)] if can_make_netns() else []
    created: list[Netns] = []
    hub: ServerProcess | None = None
    agents: dict[str, AgentProcess] = {}
    try:
        for ns in namespaces:
            created.append(ns.create())
        allowed = ["localhost", "127.0.0.1", *[ns.outer for ns in created]]
        config = write_toml(
            work / "hub.toml",
            password_hash=password_hash(PASSWORD),
            allowed_hosts=allowed,
            alerts={"webhooks": [receiver.url], "webhook_retries": 0},
        )
        # On every address when agents come from namespaces (a password is set).
        bind = ["--host", "0.0.0.0"] if created else []
        hub = ServerProcess(work / "hub" / "logs", "--config", str(config), *bind)
        tokens = AgentTokens(str(hub.data_dir))
        for i in range(AGENTS):
            name = f"agent-{i + 1:02d}"
            inside = created[i] if i < len(created) else None
            url = f"http://{inside.outer}:{hub.port}" if inside else hub.url
            agents[name] = AgentProcess(
                work, name, tokens.add(name), url, netns=inside.name if inside else None
            )
        hub.start()
        for agent in agents.values():
            agent.start()
        fleet = Fleet(hub, agents, receiver)
        fleet.started = time.monotonic()
        yield fleet
    finally:
        for agent in agents.values():
            agent.stop()
        if hub is not None:
            hub.stop()
        for ns in created:
            ns.remove()
        receiver.close()


def all_ok(watcher: FleetWatcher, count: int = AGENTS + 1) -> bool:
    tiles = watcher.tiles()
    return len(tiles) == count and all(t["state"] == "ok" for t in tiles.values())


def test_every_agent_appears_on_the_fleet_view(fleet: Fleet) -> None:
    watcher = FleetWatcher(fleet.hub.url)
    try:
        wait_until(lambda: all_ok(watcher), timeout=30, what="21 hosts ok")
        # From starting 20 Python processes on this machine's 2 cores (~2 s here).
        assert time.monotonic() - fleet.started <= 5
        started = time.monotonic()
        time.sleep(3)
        # Each agent's tile moves every second: its age stays under two intervals.
        for event in watcher.since(started):
            for tile in event["hosts"]:
                assert tile["age"] is not None and tile["age"] < 2.5, tile
        hosts = fleet.get("/api/hosts").json()["hosts"]
        assert {h["id"] for h in hosts} >= set(fleet.agents)
        payload = len(json.dumps(watcher.since(started)[-1], separators=(",", ":")))
        assert payload / (AGENTS + 1) <= 150, f"{payload / (AGENTS + 1):.0f} bytes per host"
    finally:
        watcher.close()


def test_agents_in_namespaces_have_their_own_addresses(fleet: Fleet) -> None:
    if not can_make_netns():
        pytest.skip("network namespaces need root; the agents used loopback")
    log = (fleet.hub.log_dir / "dashboard.log").read_text()
    for i in range(NETNS_AGENTS):
        assert f"agent agent-{i + 1:02d} connected from 10.231.{i + 1}.2" in log


def test_an_agent_page_has_its_own_static_history_and_metrics(fleet: Fleet) -> None:
    static = fleet.get("/api/hosts/agent-04/static").json()
    check_static(static)
    assert static["host"] == "agent-04" and static["cpu"]["logical"] >= 1
    latest = fleet.get("/api/hosts/agent-04/metrics").json()
    check_sample(latest)
    assert latest["host"] == "agent-04" and latest["cpu"]["percent"] is not None
    history = fleet.get("/api/hosts/agent-04/history?seconds=60").json()["samples"]
    assert len(history) >= 3 and all(s["host"] == "agent-04" for s in history)
    assert fleet.get("/api/hosts/nobody/static").status_code == 404
    # Each agent said its version at connect; the hub's own host has no agent.
    listed = {h["id"]: h for h in fleet.get("/api/hosts").json()["hosts"]}
    assert listed["agent-04"]["agent_version"] == server.__version__ != "0+unknown"
    assert listed["agent-04"]["agent_outdated"] is False
    assert [h["agent_version"] for i, h in listed.items() if i not in fleet.agents] == [None]
    # The old paths still mean the hub's own host.
    assert fleet.get("/api/static").json()["host"] not in fleet.agents
    text = fleet.get("/metrics").text
    assert re.search(r'dashboard_cpu_usage_ratio\{host="agent-04"\} ', text)


def test_an_agents_log_lines_reach_a_page_on_the_hub(fleet: Fleet) -> None:
    static = wait_until(
        lambda: (r := fleet.get("/api/hosts/agent-03/static")).ok and r.json(),
        timeout=30,
        what="agent-03's static at the hub",
    )
    assert static["log_sources"] == ["dashboard"]
    lines: list[dict[str, Any]] = []
    page = socketio.Client()
    page.on("firehose", lines.append)
    page.connect(fleet.hub.url, headers=AUTH, transports=["websocket"], wait_timeout=10)
    try:
        answer = page.call("firehose_subscribe", {"host": "agent-03"}, timeout=10)
        assert answer == {"ok": True, "host": "agent-03"}
        log = fleet.agents["agent-03"].workdir / "logs" / "dashboard.log"
        marker = f"firehose check {time.time()} password=hunter2"

        def arrived() -> bool:
            with open(log, "a") as handle:  # again until the agent follows the file
                handle.write(marker + "\n")
            time.sleep(0.5)
            return any(marker.replace("hunter2", "[redacted]") == line["text"]
                       for batch in lines for line in batch["lines"])  # fmt: skip

        wait_until(arrived, timeout=15, interval=0, what="the agent's line at the page")
        assert all(b["host"] == "agent-03" and b["source"] == "dashboard" for b in lines)
        assert not any("hunter2" in line["text"] for b in lines for line in b["lines"])
    finally:
        page.disconnect()


def test_the_fleet_page_in_chromium(fleet: Fleet) -> None:
    browser = Chromium(require_binary("chromium", "chromium-browser"))
    try:
        browser.navigate(fleet.hub.url + "/login")
        browser.wait_for("!!document.querySelector('input[name=password]')")
        browser.evaluate(
            f"document.querySelector('input[name=password]').value = {json.dumps(PASSWORD)};"
            "document.querySelector('form').submit()"
        )
        browser.wait_for(f"document.body.dataset.hosts === '{AGENTS + 1}'", timeout=20)
        assert browser.evaluate("document.querySelectorAll('.tile').length") == AGENTS + 1
        assert browser.evaluate("document.title") == "Fleet · dashboard"
        browser.evaluate(
            "[...document.querySelectorAll('.tile')]"
            ".find(t => t.querySelector('.tile-name').textContent === 'agent-05').click()"
        )
        browser.wait_for("location.pathname === '/host/agent-05'")
        browser.wait_for("document.body.dataset.status === 'live'")
        browser.wait_for(
            "window.__dashboardPlots && window.__dashboardPlots.cpu.data[0].length >= 3"
        )
        before = browser.evaluate("window.__dashboardPlots.cpu.data[0].length")
        browser.wait_for(f"window.__dashboardPlots.cpu.data[0].length > {before}", timeout=5)
        assert browser.evaluate("document.getElementById('hostname').textContent")

        # Wall mode: one 1920x1080 screen, a host in focus, the next one every 3 s.
        browser.viewport(1920, 1080)
        browser.navigate(fleet.hub.url + "/?kiosk=1&cycle=3")
        first = browser.wait_for("document.body.dataset.focus", timeout=20)
        second = browser.wait_for(
            f"document.body.dataset.focus !== {json.dumps(first)} && document.body.dataset.focus",
            timeout=8,
        )
        assert {first, second} <= {h["id"] for h in fleet.get("/api/hosts").json()["hosts"]}
        name = browser.evaluate("document.querySelector('#focus .focus-name').textContent")
        assert name and browser.evaluate("getComputedStyle(document.getElementById('filter')"
                                         ".closest('label')).display") == "none"  # fmt: skip
        size = browser.evaluate(
            "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
        )
        assert size[0] <= 1920 and size[1] <= 1080, size
    finally:
        browser.close()


def test_a_killed_agent_goes_stale_then_down_and_comes_back(fleet: Fleet) -> None:
    watcher = FleetWatcher(fleet.hub.url)
    victim = fleet.agents["agent-07"]
    try:
        wait_until(lambda: all_ok(watcher), timeout=20)
        killed = time.monotonic()
        victim.kill()
        stale = wait_until(lambda: watcher.became("agent-07", "stale", killed), timeout=6)
        assert stale - killed <= 3.5
        down = wait_until(lambda: watcher.became("agent-07", "down", killed), timeout=20)
        assert down - killed <= 15
        alerts = fleet.get("/api/hosts/agent-07/alerts").json()["active"]
        assert any(a["rule"] == "host_down" and a["host"] == "agent-07" for a in alerts)
        wait_until(
            lambda: any(b.get("rule") == "host_down" for b in fleet.receiver.bodies), timeout=10
        )
        hook = next(b for b in fleet.receiver.bodies if b.get("rule") == "host_down")
        assert hook["host"] == "agent-07" and hook["level"] == "critical"
        # The other 19 kept updating every second all along.
        for event in watcher.since(killed):
            for tile in event["hosts"]:
                if tile["id"] != "agent-07":
                    assert tile["state"] == "ok" and tile["age"] < 2.5, tile
        back = time.monotonic()
        victim.start()
        ok = wait_until(lambda: watcher.became("agent-07", "ok", back), timeout=10)
        assert ok - back <= 5
        log = (fleet.hub.log_dir / "dashboard.log").read_text()
        assert "alert host_down CRITICAL" in log and "on host agent-07" in log
    finally:
        watcher.close()


def history_rows(fleet: Fleet, host: str, start: float, end: float) -> list[float]:
    samples = samples_between(fleet.hub.url, start, end, host=host, headers=AUTH)
    return [s["ts"] for s in samples]


def stored_up_to(fleet: Fleet, until: float) -> bool:
    """Every agent has a sample stored from within 2 s before `until` (epoch seconds)."""
    return all(history_rows(fleet, name, until - 2, until) for name in fleet.agents)


def test_a_hub_outage_is_replayed_without_gaps_or_duplicates(fleet: Fleet) -> None:
    outage = 60.0
    before = FleetWatcher(fleet.hub.url)
    wait_until(lambda: all_ok(before), timeout=20)
    before.close()
    wait_until(
        lambda: stored_up_to(fleet, time.time() - 3.5),
        timeout=20,
        interval=0.5,
        what="every agent's samples stored from before the outage",
    )
    began = time.time()
    fleet.hub.stop()
    time.sleep(outage)
    fleet.hub.start()
    ended = time.time()
    watcher = FleetWatcher(fleet.hub.url)
    try:
        wait_until(lambda: all_ok(watcher), timeout=60, what="every agent back")
        # The last replayed batches: an agent sends its samples in order, and the
        # store commits every 5 s.
        wait_until(
            lambda: stored_up_to(fleet, ended + 5),
            timeout=30,
            interval=0.5,
            what="every agent's samples stored past the outage",
        )
        for name in fleet.agents:
            stamps = history_rows(fleet, name, began - 5, ended + 5)
            assert len(stamps) == len(set(stamps)), f"{name}: duplicates"
            gaps = [b - a for a, b in itertools.pairwise(stamps)]
            assert stamps and max(gaps) <= 2.0, f"{name}: a gap of {max(gaps):.1f} s"
            assert stamps[0] <= began - 3 and stamps[-1] >= ended + 3, name
    finally:
        watcher.close()


def test_an_agent_restarted_while_the_hub_is_away_sends_what_it_kept(fleet: Fleet) -> None:
    """An upgrade or a restart while the hub is away: the stopping agent keeps what the
    hub has not acknowledged, and the next process sends it first. The history has the
    samples of the outage from before the restart, and only the restart's own gap."""
    name = "agent-01"
    agent = fleet.agents[name]
    wait_until(lambda: stored_up_to(fleet, time.time() - 3.5), timeout=20, interval=0.5,
               what="the samples from before the outage stored")  # fmt: skip
    began = time.time()
    fleet.hub.stop()
    try:
        time.sleep(10)  # ten samples only in the agent's buffer
        agent.stop()  # SIGTERM, as systemctl restart sends it
        stopped = time.time()
        assert "kept" in agent.log() and "samples the hub has not acknowledged" in agent.log()
        agent.start()
        time.sleep(3)
    finally:
        fleet.hub.start()
    ended = time.time()
    wait_until(lambda: stored_up_to(fleet, ended + 5), timeout=60, interval=0.5,
               what="the samples past the outage stored")  # fmt: skip
    stamps = history_rows(fleet, name, began - 5, ended + 5)
    assert len(stamps) == len(set(stamps)), "duplicates"
    kept = [ts for ts in stamps if began < ts < stopped]
    assert len(kept) >= stopped - began - 2, f"{len(kept)} samples of the {stopped - began:.0f} s"
    gaps = [(a, b - a) for a, b in itertools.pairwise(stamps) if b - a > 2.0]
    assert len(gaps) <= 1, f"gaps: {gaps}"  # the restart's: down, then its first sample
    assert all(stopped - 3 <= at <= stopped + 1 and gap <= 6 for at, gap in gaps), gaps
    assert "sending first the" in agent.log()


def sample(host: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"ts": time.time(), "seq": 1, "cpu": {"percent": 1.0}}
    if host:
        data["host"] = host
    return data


def test_bad_agents_are_refused_and_the_fleet_goes_on(fleet: Fleet) -> None:
    watcher = FleetWatcher(fleet.hub.url)
    try:
        wait_until(lambda: all_ok(watcher), timeout=20)
        started = time.monotonic()
        # A wrong token, twice: refused with a reason, logged once.
        for _ in range(2):
            client, errors = connect_as_agent(fleet.hub.url, "x" * 43)
            assert not client.connected and "unknown or revoked" in " ".join(errors)
        # A valid token whose payload claims another host, malformed samples,
        # an oversized message, and a flood.
        token = fleet.tokens.add("mallory")
        client = wait_until_the_hub_takes(fleet.hub.url, token)  # no protocol: speaks 1
        # An agent newer than the hub's link protocol is told which side to upgrade.
        future, errors = connect_as_agent(fleet.hub.url, token, protocol=99, version="9.0")
        assert not future.connected and "this agent (9.0) speaks link protocol 99" in errors[0]
        assert "upgrade the hub, or install the hub's version of the agent" in errors[0]
        claim = client.call("samples", [sample("agent-02")], namespace="/agent", timeout=5)
        assert "host" in claim["error"]
        for bad in ("not a list", [{"ts": "soon"}], [{"ts": time.time(), "evil": 1}]):
            assert "error" in client.call("samples", bad, namespace="/agent", timeout=5)
        answers: list[dict[str, Any]] = []
        for _ in range(300):  # as fast as it goes, not waiting for the answers (commits)
            client.emit("samples", [sample()], namespace="/agent", callback=answers.append)
        wait_until(lambda: len(answers) == 300, timeout=20, what="300 answers")
        limited = [a for a in answers if "too many" in a.get("error", "")]
        assert len(limited) > 200, answers[-3:]
        client.emit("samples", [{"ts": time.time(), "pad": "x" * 100_000}], namespace="/agent")
        wait_until(lambda: not client.connected, timeout=10, what="oversized message closes")
        # Revoked: its token is refused from now on. The hub has read the agents file
        # again when it drops the host's tile.
        wait_until(lambda: "mallory" in watcher.tiles(), timeout=5, what="mallory's tile")
        fleet.tokens.remove("mallory")
        wait_until(lambda: "mallory" not in watcher.tiles(), timeout=15, what="mallory forgotten")
        again, errors = connect_as_agent(fleet.hub.url, token)
        assert not again.connected and "unknown or revoked" in " ".join(errors)
        # Every real agent kept its 1 Hz throughout.
        for event in watcher.since(started):
            for tile in event["hosts"]:
                if tile["id"] in fleet.agents:
                    assert tile["state"] == "ok" and tile["age"] < 2.5, tile
        log = (fleet.hub.log_dir / "dashboard.log").read_text()
        for kind in ("unknown or revoked token", "claims host", "sends too fast"):
            assert log.count(kind) == 1, (kind, log.count(kind))
        malformed = [
            line
            for line in log.splitlines()
            if "agent 'mallory'" in line and ("a batch is" in line or "sample refused" in line)
        ]
        assert len(malformed) == 1, malformed  # one line per kind
    finally:
        watcher.close()


def test_an_agent_refused_at_start_asks_again_and_joins_once_known(
    fleet: Fleet, tmp_path: Path
) -> None:
    """Started before the hub knows its token (made on a spare agents file, as when
    that file is restored or the hub has not read it yet): refused, asked again."""
    spare = AgentTokens(str(tmp_path))
    token = spare.add("late")
    agent = AgentProcess(tmp_path, "late", token, fleet.hub.url).start()
    watcher = FleetWatcher(fleet.hub.url)
    try:
        wait_until(lambda: "refused this agent" in agent.log(), timeout=30, what="a refusal")
        known = json.loads(Path(fleet.tokens.path).read_text())
        known["late"] = json.loads(Path(spare.path).read_text())["late"]
        Path(fleet.tokens.path).write_text(json.dumps(known))
        wait_until(
            lambda: watcher.tiles().get("late", {}).get("state") == "ok",
            timeout=60,
            what="the late agent reporting",
        )
        assert agent.proc is not None and agent.proc.poll() is None
        assert agent.log().count("refused this agent") == 1  # once a minute at most
    finally:
        watcher.close()
        agent.stop()
        fleet.tokens.reload()
        with contextlib.suppress(ValueError):
            fleet.tokens.remove("late")


def test_a_removed_agent_goes_without_a_host_down_and_its_page_says_so(
    fleet: Fleet, tmp_path: Path
) -> None:
    """remove-agent: the link closed, the token refused, the tile gone with no host_down
    raised, and the host's open page says it was removed."""
    fleet.tokens.reload()
    agent = AgentProcess(tmp_path, "leaving", fleet.tokens.add("leaving"), fleet.hub.url).start()
    browser = Chromium(require_binary("chromium", "chromium-browser"))
    try:
        wait_until(lambda: any(h["id"] == "leaving" and h["state"] == "ok"
                               for h in fleet.get("/api/hosts").json()["hosts"]),
                   timeout=60, what="the agent reporting")  # fmt: skip
        browser.navigate(fleet.hub.url + "/login")
        browser.wait_for("!!document.querySelector('input[name=password]')")
        browser.evaluate(
            f"document.querySelector('input[name=password]').value = {json.dumps(PASSWORD)};"
            "document.querySelector('form').submit()"
        )
        browser.wait_for("document.readyState === 'complete' && !!document.body.dataset.hosts")
        browser.navigate(fleet.hub.url + "/host/leaving")
        browser.wait_for("document.body.dataset.status === 'live'")
        assert browser.evaluate("document.getElementById('removed-banner').hidden") is True
        wait_until(lambda: len(history_rows(fleet, "leaving", time.time() - 60, time.time())) >= 3,
                   timeout=30, interval=0.5, what="its samples stored")  # fmt: skip
        removed = time.time()
        fleet.tokens.remove("leaving")
        banner = browser.wait_for(
            "(b => !b.hidden && b.textContent)(document.getElementById('removed-banner'))",
            timeout=20,
        )
        assert "removed from the fleet" in banner and "history stays" in banner
        assert "leaving" not in {h["id"] for h in fleet.get("/api/hosts").json()["hosts"]}
        wait_until(lambda: "was removed at the hub: its token is revoked" in agent.log(),
                   timeout=30, what="the agent told why its link closed")  # fmt: skip
        time.sleep(2)  # a host_down would have been raised by now (down after 10 s closed)
        assert not [b for b in fleet.receiver.bodies
                    if b.get("host") == "leaving" and b.get("rule") == "host_down"]  # fmt: skip
        # Its history stays in the store until it ages out (no page shows it any more).
        database = sqlite3.connect(f"file:{fleet.hub.data_dir}/history.sqlite3?mode=ro", uri=True)
        try:
            kept = database.execute(
                "SELECT count(*) FROM raw WHERE host = 'leaving' AND ts < ?", (removed,)
            ).fetchone()[0]
        finally:
            database.close()
        assert kept >= 3, kept
    finally:
        browser.close()
        agent.stop()
