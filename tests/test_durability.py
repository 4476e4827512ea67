"""Acknowledged means kept: a hub killed again and again, a hub whose disk fills up,
and agents whose clocks are wrong. Real hub and agent processes on loopback.

Each test reads the hub's store back with its own SQLite connection and
checks every agent's samples by `seq` (the agent's sample counter, which
goes up by one a tick): no hole, no duplicate, times in order.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from server.fleet.tokens import AgentTokens
from testkit.chromium import Chromium
from testkit.fleet import FAKETIME_LIB, SLEEP_ON_EVENT, AgentProcess, wrong_clock
from testkit.history import sequence_problem, stored_samples
from testkit.serverproc import ServerProcess
from testkit.sioclient import RecordingClient
from testkit.system import require_binary, skip_or_fail_under_ci
from testkit.wait import wait_until

pytestmark = pytest.mark.e2e


def agent_up_to(hub: ServerProcess, name: str) -> int:
    """The newest seq the hub has published for an agent (its latest sample)."""
    body = requests.get(f"{hub.url}/api/hosts/{name}/metrics", timeout=5).json()
    return int(body.get("seq") or 0)


def caught_up(hub: ServerProcess, names: list[str]) -> bool:
    """Every agent's stored samples reach what it last sent, with nothing missing."""
    for name in names:
        rows = stored_samples(hub.data_dir, name)
        if sequence_problem(rows) is not None or rows[-1][1] < agent_up_to(hub, name) - 1:
            return False
    return True


def degraded_health(hub: ServerProcess, timeout: float) -> dict[str, Any]:
    """/healthz's answer once it says degraded."""

    def degraded() -> dict[str, Any] | None:
        body: dict[str, Any] = requests.get(hub.url + "/healthz", timeout=5).json()
        return body if body["status"] == "degraded" else None

    return wait_until(degraded, timeout=timeout, what="healthz degraded")


@contextlib.contextmanager
def hub_and_agents(
    work: Path,
    names: list[str],
    *hub_args: str,
    agent_env: dict[str, dict[str, str]] | None = None,
    before_agents: Callable[[ServerProcess], None] = lambda hub: None,
) -> Iterator[tuple[ServerProcess, dict[str, AgentProcess]]]:
    hub = ServerProcess(work / "hub" / "logs", *hub_args)
    tokens = AgentTokens(str(hub.data_dir))
    agents: dict[str, AgentProcess] = {}
    try:
        for name in names:  # known to the hub from its start
            env = (agent_env or {}).get(name)
            agents[name] = AgentProcess(
                work, name, tokens.add(name), hub.url, env=env,
                launcher=SLEEP_ON_EVENT if env else None,
            )  # fmt: skip
        hub.start()
        before_agents(hub)
        for agent in agents.values():
            agent.start()
        yield hub, agents
    finally:
        for agent in agents.values():
            agent.stop()
        if hub.proc is not None:
            hub.stop()


def test_a_hub_killed_five_times_loses_no_acknowledged_sample(tmp_path: Path) -> None:
    """Three agents; the hub SIGKILLed five times at random moments in two minutes and
    restarted on the same data directory. Every agent's stored history is whole."""
    names = ["agent-1", "agent-2", "agent-3"]
    seed = int(time.time())
    rng = random.Random(seed)
    with hub_and_agents(tmp_path, names) as (hub, _agents):
        wait_until(lambda: caught_up(hub, names), timeout=30, what="agents reporting")
        run_until = time.monotonic() + 120
        for _kill in range(5):  # 5 x (8-18 s up, 0-3 s down, ~3 s to start): ~75-120 s
            time.sleep(rng.uniform(8, 18))
            hub.stop(signal.SIGKILL)  # no flush, no goodbye
            assert hub.proc is not None and hub.proc.returncode == -signal.SIGKILL
            time.sleep(rng.uniform(0, 3))  # the agents buffer meanwhile
            hub.start()
        time.sleep(max(0.0, run_until - time.monotonic()))
        wait_until(lambda: caught_up(hub, names), timeout=60, interval=1, what="caught up")
        for name in names:
            rows = stored_samples(hub.data_dir, name)
            assert sequence_problem(rows) is None, f"{name} (seed {seed}): {sequence_problem(rows)}"
            assert rows[-1][0] - rows[0][0] >= 115  # the whole two minutes, hole-free


def _fill(path: Path) -> None:
    """Take every free byte of the filesystem that holds `path`."""
    with open(path, "wb") as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 65536)
            out.flush()
            os.fsync(out.fileno())


BANNER = "(b => !b.hidden && b.textContent)(document.getElementById('store-banner'))"


def test_a_full_disk_stops_acknowledgements_says_why_and_loses_nothing(
    tmp_path: Path, browser: Chromium
) -> None:
    """The hub's data directory on a 24 MiB tmpfs that the test fills: pages keep their
    1 Hz, /healthz, /metrics, the page's sample and the log say why, the agents
    buffer; once space is freed every sample lands (the hub's own too)."""
    if os.geteuid() != 0:
        skip_or_fail_under_ci("mounting a size-limited tmpfs needs root")
    data = tmp_path / "hub" / "data"
    data.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(data)], check=True)
    names = ["agent-1", "agent-2"]
    filler = data / "filler"
    try:
        with hub_and_agents(tmp_path, names) as (hub, agents):
            wait_until(lambda: caught_up(hub, names), timeout=30, what="agents reporting")
            local = requests.get(hub.url + "/api/static", timeout=5).json()["host"]
            page = RecordingClient()
            page.connect(hub.url)
            try:
                _fill(filler)
                full_at = time.monotonic()
                health = degraded_health(hub, timeout=20)
                assert "disk full" in health["degraded"][0]
                samples = page.wait_for("metrics", count=len(page.received("metrics")) + 1)
                assert "disk full" in samples[-1]["server"]["store_error"]  # the page's banner
                browser.navigate(hub.url + "/")  # the fleet page: the banner, live
                assert "disk full" in browser.wait_for(BANNER)
                browser.navigate(f"{hub.url}/host/{local}")
                assert "disk full" in browser.wait_for(BANNER)
                browser.navigate(hub.url + "/")
                time.sleep(20)  # the agents buffer; the page goes on
                times = [t for t in page.times("metrics") if t > full_at + 5]
                assert len(times) >= 14 and max(b - a for a, b in itertools.pairwise(times)) < 2.0
                metrics = requests.get(hub.url + "/metrics", timeout=5).text
                assert "dashboard_history_store_writable 0.0" in metrics
                for name in names:
                    refused = re.search(
                        rf'dashboard_agent_batches_refused_total{{host="{name}",reason="store"}} '
                        r"(\d+)",
                        metrics,
                    )
                    assert refused and int(refused.group(1)) >= 2
                hub_log = (hub.log_dir / "dashboard.log").read_text()
                assert hub_log.count("history store cannot write") == 1
                filler.unlink()
                wait_until(lambda: caught_up(hub, names), timeout=60, interval=1, what="landed")
                wait_until(
                    lambda: requests.get(hub.url + "/healthz", timeout=5).json()["status"] == "ok",
                    timeout=10,
                )
                browser.wait_for(f"!{BANNER}")  # gone once it writes again
            finally:
                page.close()
            hub.stop()  # SIGTERM writes what is pending
            for name in names:
                rows = stored_samples(hub.data_dir, name)
                assert sequence_problem(rows) is None, f"{name}: {sequence_problem(rows)}"
                lines = [line for line in agents[name].log().splitlines() if "batch(es)" in line]
                assert len(lines) == 1 and "sending them again" in lines[0], lines
            own = [r for r in stored_samples(hub.data_dir, local) if r[0] > time.time() - 600]
            assert sequence_problem(own) is None, f"the hub's own: {sequence_problem(own)}"
    finally:
        subprocess.run(["umount", "-l", str(data)], check=False)


def test_agents_with_wrong_clocks_report_on_the_hubs_timeline(
    tmp_path: Path, browser: Chromium
) -> None:
    """One agent 10 min ahead, one 7 min behind, one whose clock steps forward and back.
    Each is ok with its offset shown; its samples are stored on the hub's timeline,
    whole; an alert held 5 s fires within 2 intervals of its hold."""
    require_binary("faketime")
    if not os.path.exists(FAKETIME_LIB):
        pytest.fail(f"faketime is installed but {FAKETIME_LIB} is not")
    clocks = {"ahead": "+10m", "behind": "-7m", "stepping": "+0"}
    env: dict[str, dict[str, str]] = {}
    for name, offset in clocks.items():
        (tmp_path / f"{name}.clock").write_text(offset + "\n")
        env[name] = wrong_clock(tmp_path / f"{name}.clock")
    config = tmp_path / "hub.toml"
    # Memory above 0.1 % for 5 s: true on any machine, so the hold is what is timed.
    # The other rules out of reach: a loaded or full test machine is not what is tested.
    config.write_text(
        "[alerts.memory]\nwarning = 0.1\ncritical = 1000\nfor_seconds = 5\n"
        + "".join(f"[alerts.{rule}]\nwarning = 1000\ncritical = 1000\n"
                  for rule in ("cpu", "swap", "disk", "load"))
        + "[alerts]\nanomaly = false\n"
    )  # fmt: skip
    names = list(clocks)
    # A page on each agent's host from before it starts: when the hub published its
    # first sample (the crossing, on the hub's clock: memory is above 0.1 % at once).
    pages: dict[str, RecordingClient] = {}

    def watch_pages(hub: ServerProcess) -> None:
        for name in names:
            pages[name] = RecordingClient()
            pages[name].connect(hub.url, auth={"host": name})

    try:
        with hub_and_agents(
            tmp_path, names, "--config", str(config), agent_env=env, before_agents=watch_pages
        ) as (hub, _a):
            wait_until(lambda: caught_up(hub, names), timeout=30, what="agents reporting")

            def hosts() -> dict[str, Any]:
                answer = requests.get(hub.url + "/api/hosts", timeout=5).json()
                return {h["id"]: {**h["summary"], "clock_offset": h["clock_offset"]}
                        for h in answer["hosts"]}  # fmt: skip

            def settled() -> dict[str, Any] | None:
                tiles = hosts()
                ready = all(
                    tiles[n]["state"] in ("ok", "warn") and tiles[n]["clock_offset"] is not None
                    for n in names
                )
                return tiles if ready else None

            tiles = wait_until(settled, timeout=15, what="every agent reporting, clock measured")
            assert abs(tiles["ahead"]["clock_offset"] - 600) < 2
            assert tiles["ahead"]["clock_note"] == "clock 10 min ahead"
            assert abs(tiles["behind"]["clock_offset"] + 420) < 2
            assert tiles["behind"]["clock_note"] == "clock 7 min behind"
            assert abs(tiles["stepping"]["clock_offset"]) < 1
            assert "clock_note" not in tiles["stepping"]
            for name in names:
                assert tiles[name]["state"] in ("ok", "warn"), tiles[name]

                def memory_alerts(host: str = name) -> list[dict[str, Any]]:
                    url = f"{hub.url}/api/hosts/{host}/alerts"
                    recent = requests.get(url, timeout=5).json()["recent"]
                    return [a for a in recent if a["rule"] == "memory" and a["level"] != "ok"]

                fired = wait_until(memory_alerts, timeout=15, what=f"{name}'s memory alert")
                published = pages[name].times("metrics")[0]  # monotonic, here
                first = time.time() - (time.monotonic() - published)
                # On the hub's clock: 5 s after the hub had its first sample, within 2 intervals.
                # `first` is when the page got it, a little after the hub had it: a tenth of
                # a second of slack below (a loaded machine measured 4.9996).
                assert 4.9 <= fired[-1]["ts"] - first <= 7, (name, fired[-1]["ts"] - first)
            browser.navigate(hub.url + "/")  # the tiles say it
            notes = browser.wait_for(
                "(n => n.length === 2 && n)([...document.querySelectorAll('.tile-clock')]"
                ".filter(e => !e.hidden).map(e => e.textContent).sort())"
            )
            assert notes == ["clock 10 min ahead", "clock 7 min behind"]
            browser.navigate(hub.url + "/host/ahead")  # and the host's page
            assert (
                browser.wait_for(
                    "(n => !n.hidden && n.textContent)(document.getElementById('clock-note'))"
                )
                == "clock 10 min ahead"
            )
            metrics = requests.get(hub.url + "/metrics", timeout=5).text
            ahead = re.search(r'dashboard_host_clock_offset_seconds{host="ahead"} (\S+)', metrics)
            assert ahead and abs(float(ahead.group(1)) - 600) < 2
            # The stepping clock: 5 min forward, then 3 min back, 8 s apart; every agent
            # reports all along (never stale or down).
            states: list[tuple[str, str]] = []

            def watch(seconds: float) -> None:
                until = time.monotonic() + seconds
                while time.monotonic() < until:
                    tiles = hosts()
                    states.extend((name, tiles[name]["state"]) for name in names)
                    time.sleep(0.5)

            (tmp_path / "stepping.clock").write_text("+5m\n")
            watch(8)
            (tmp_path / "stepping.clock").write_text("-3m\n")
            watch(3)
            wait_until(
                lambda: abs((hosts()["stepping"]["clock_offset"] or 0) + 180) < 2, timeout=45
            )  # measured every 30 s (jittered by a fifth)
            watch(3)
            bad = [(name, state) for name, state in states if state not in ("ok", "warn")]
            assert not bad, bad  # warn: this test's memory alert
            wait_until(lambda: caught_up(hub, names), timeout=20, what="caught up")
            now = time.time()
            for name in names:
                rows = stored_samples(hub.data_dir, name)
                assert sequence_problem(rows) is None, f"{name}: {sequence_problem(rows)}"
                assert abs(rows[-1][0] - now) < 10  # the hub's timeline, not the agent's clock
    finally:
        for page in pages.values():
            page.close()


def test_a_locked_database_is_found_and_the_writer_recovers(tmp_path: Path) -> None:
    """Another process holds the database's write lock for 15 s: /healthz is degraded with
    the reason, the agent's samples wait in its buffer, and all land once it is let go."""
    with hub_and_agents(tmp_path, ["agent-1"]) as (hub, _agents):
        wait_until(lambda: caught_up(hub, ["agent-1"]), timeout=30, what="agent reporting")
        locker = sqlite3.connect(str(hub.data_dir / "history.sqlite3"), timeout=10)
        try:
            locker.execute("BEGIN EXCLUSIVE")
            health = degraded_health(hub, timeout=30)
            assert "locked" in health["degraded"][0]
            time.sleep(5)
        finally:
            locker.rollback()
            locker.close()
        wait_until(
            lambda: requests.get(hub.url + "/healthz", timeout=5).json()["status"] == "ok",
            timeout=30,
            what="healthz ok again",
        )
        wait_until(lambda: caught_up(hub, ["agent-1"]), timeout=60, interval=1, what="landed")
        metrics = requests.get(hub.url + "/metrics", timeout=5).text
        failures = re.search(r"^dashboard_history_store_write_failures_total (\S+)$", metrics, re.M)
        assert failures and float(failures.group(1)) >= 1


def test_a_stopped_background_loop_makes_healthz_degraded(tmp_path: Path) -> None:
    """In process: a writer or judge loop that has not gone round in time is named."""
    from server.app import create_app
    from server.config import Config
    from server.state import current_state

    app, _ = create_app(
        Config(async_mode="threading", log_dir=str(tmp_path / "logs"),
               data_dir=str(tmp_path / "data"))
    )  # fmt: skip
    with app.app_context():
        state = current_state()
    state.sampler.tick()  # a sample, so /healthz is past "starting"
    client = app.test_client()
    assert client.get("/healthz").get_json()["status"] == "ok"
    state.started_at -= 1000  # neither loop has run since
    body = client.get("/healthz").get_json()
    assert body["status"] == "degraded"
    assert any("history-writer" in p for p in body["degraded"])
    assert any("fleet-judge" in p for p in body["degraded"])
    state.store.loop.ran_at = state.judged_at = time.monotonic()
    assert client.get("/healthz").get_json()["status"] == "ok"
    ages = client.get("/metrics").get_data(as_text=True)
    assert 'dashboard_loop_last_run_age_seconds{loop="history-writer"}' in ages
