"""Containers: a real dockerd of the test's own, real containers that burn CPU, fill
memory, turn unhealthy, exit with an error and restart in a loop; seen on the socket
and in /metrics. The cgroup v2 reader on files captured from a v2 host."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from server.sampling import cgroups
from server.sampling.containers import DETAILS_EVERY, Containers, _epoch, facts_of, signature_of
from server.sampling.engine import Engine, find_socket
from testkit.chromium import Chromium
from testkit.docker import IMAGE, Docker
from testkit.serverproc import ServerProcess
from testkit.sioclient import RecordingClient
from testkit.wait import wait_until

MiB = 1024 * 1024
HALF_A_CORE = 50 / (psutil.cpu_count() or 1)  # % of the machine that --cpus 0.5 allows


def containers_of(client: RecordingClient) -> dict[str, Any] | None:
    samples = client.received("metrics")
    return samples[-1].get("containers") if samples else None


def item(client: RecordingClient, name: str) -> dict[str, Any] | None:
    part = containers_of(client)
    found = [c for c in (part or {}).get("items", []) if c["name"] == name]
    return found[0] if found else None


@pytest.mark.e2e
@pytest.mark.browser
def test_containers_are_seen_on_the_socket_in_metrics_and_on_the_page(
    docker: Docker, tmp_path: Path, browser: Chromium
) -> None:
    docker.run("burn", "--cpus", "0.5", IMAGE, "sh", "-c", "yes > /dev/null")  # half a core
    # 32 MiB held by the shell (a last command would be exec'd: `true` keeps the shell),
    # under a limit of 128 MiB.
    docker.run("fill", "--memory", "128m", IMAGE, "sh", "-c",
               "x=$(yes | head -c 33554432); sleep 1000; true")  # fmt: skip
    docker.run("sick", "--health-cmd", "false", "--health-interval", "1s",
               "--health-retries", "1", IMAGE, "sleep", "1000")  # fmt: skip
    docker.run("crash", IMAGE, "sh", "-c", "sleep 1; exit 3")
    docker.run("loop", "--restart", "always", IMAGE, "sh", "-c", "sleep 1; exit 1")
    docker.run("quiet", IMAGE, "true")  # exits 0: counted, not listed
    server = ServerProcess(tmp_path / "logs", "--containers", docker.socket).start()
    page = RecordingClient()
    try:
        page.connect(server.url)

        def settled() -> bool:
            burn, fill, sick = item(page, "burn"), item(page, "fill"), item(page, "sick")
            crash, loop = item(page, "crash"), item(page, "loop")
            return bool(
                burn and (burn["cpu_percent"] or 0) > 0.5 * HALF_A_CORE
                and fill and (fill["memory_used"] or 0) > 32 * MiB
                and sick and sick["health"] == "unhealthy"
                and crash and crash["state"] == "exited"
                and loop and (loop["restarts"] or 0) >= 2
            )  # fmt: skip

        try:
            wait_until(settled, timeout=60, interval=0.5)
        except TimeoutError:
            pytest.fail(f"not every case seen within 60 s: {containers_of(page)}")
        part = containers_of(page)
        assert part is not None
        assert part["running"] >= 3 and part["unhealthy"] == 1 and part["stopped"] >= 2
        names = [c["name"] for c in part["items"]]
        assert "quiet" not in names  # exited 0: a count, not a row
        assert names[0] == "burn"  # busiest first
        burn, fill = item(page, "burn"), item(page, "fill")
        assert burn and fill
        assert burn["image"] == IMAGE and burn["pids"] >= 1 and burn["started_at"] > 1e9
        assert burn["cpu_percent"] <= 1.2 * HALF_A_CORE and burn["memory_limit"] is None
        assert fill["memory_limit"] == 128 * MiB and fill["memory_used"] <= 128 * MiB
        assert burn["rx_bps"] == 0 and burn["tx_bps"] == 0  # --network none: loopback only
        crash = item(page, "crash")
        assert crash and crash["exit_code"] == 3 and crash["cpu_percent"] is None
        metrics = requests.get(server.url + "/metrics", timeout=5).text
        cpu = re.search(r'dashboard_container_cpu_usage_ratio\{[^}]*container="burn"[^}]*\} (\S+)',
                        metrics)  # fmt: skip
        assert cpu and 0.5 * HALF_A_CORE < 100 * float(cpu.group(1)) <= 1.2 * HALF_A_CORE
        assert re.search(r'dashboard_container_healthy\{[^}]*container="sick"[^}]*\} 0', metrics)
        assert re.search(r'dashboard_container_exit_code\{[^}]*container="crash"[^}]*\} 3', metrics)
        assert re.search(r'dashboard_containers\{[^}]*state="unhealthy"[^}]*\} 1', metrics)
        assert re.search(r'dashboard_collector_success\{[^}]*collector="containers"[^}]*\} 1',
                         metrics)  # fmt: skip

        # Alerts, each naming its container: exited with 3, unhealthy (held 10 s), and
        # restarting in a loop (3 restarts seen in 10 minutes).
        def alerts() -> dict[str, str] | None:
            body = requests.get(server.url + "/api/alerts", timeout=5).json()
            active = {a["rule"]: a["level"] for a in body["active"]}
            wanted = ("container_exited:crash", "container_unhealthy:sick",
                      "container_restarts:loop")  # fmt: skip
            return active if all(rule in active for rule in wanted) else None

        try:
            active = wait_until(alerts, timeout=60, interval=1)
        except TimeoutError:
            seen = requests.get(server.url + "/api/alerts", timeout=5).json()["active"]
            pytest.fail(f"not every alert within 60 s: {[a['rule'] for a in seen]}")
        assert active["container_exited:crash"] == "critical"
        assert active["container_unhealthy:sick"] == "critical"
        assert active["container_restarts:loop"] in ("warning", "critical")
        assert not any(rule.endswith((":burn", ":fill", ":quiet")) for rule in active)
        # The page: a row each, busiest first, state in words (and colour), sortable.
        browser.navigate(server.url + "/")
        rows = browser.wait_for(
            "(r => r.length >= 5 && r)([...document.querySelectorAll('#containers tr[data-name]')]"
            ".map(r => [r.dataset.name, r.querySelector('.state').textContent,"
            " r.querySelector('.state').className]))"
        )
        shown = {name: (state, cls) for name, state, cls in rows}
        assert rows[0][0] == "burn"
        assert shown["sick"] == ("unhealthy", "state crit")
        assert shown["crash"] == ("exited (3)", "state crit")
        assert shown["burn"][1] == "state ok" and shown["fill"][1] == "state ok"
        summary = browser.evaluate("document.getElementById('containers-summary').textContent")
        assert re.fullmatch(r"\d+ running · 1 unhealthy · \d+ stopped", summary), summary
        browser.evaluate("document.querySelector('#containers-panel [data-sort=name]').click()")
        names = browser.wait_for(
            "(n => n[0] === 'burn' && n[1] === 'crash' && n)"
            "([...document.querySelectorAll('#containers tr[data-name]')].map(r => r.dataset.name))"
        )
        assert names == sorted(names)

        # History: each container's CPU and memory in the store's 10 s tier (a bucket
        # is written once the next has begun, within a 5 s commit).
        def kept(name: str) -> dict[str, Any] | None:
            url = f"{server.url}/api/containers/{name}/history?seconds=900"
            body: dict[str, Any] = requests.get(url, timeout=5).json()
            return body if body["ts"] else None

        def busiest(name: str, field: str) -> float | None:
            # A container's first sample has no CPU rate yet (it takes two), so the
            # first bucket written can hold only None: wait for one with a value.
            body = kept(name)
            values = [v for v in body[field] if v is not None] if body else []
            return max(values) if values else None

        burned = wait_until(lambda: kept("burn"), timeout=30, what="burn's history")
        assert burned["step"] == 10 and all(ts % 10 == 0 for ts in burned["ts"])
        burn_max = wait_until(
            lambda: busiest("burn", "cpu_percent_max"), timeout=30, what="burn's CPU", interval=1
        )
        assert burn_max > 0.5 * HALF_A_CORE
        fill_max = wait_until(
            lambda: busiest("fill", "memory_used_max"), timeout=30, what="fill's memory", interval=1
        )
        assert fill_max > 32 * MiB
        for name in ("sick", "crash", "loop"):  # every listed container has its series
            wait_until(functools.partial(kept, name), timeout=30, what=f"{name}'s history")
        crashed = kept("crash")
        assert crashed and all(cpu is None for cpu in crashed["cpu_percent"])  # not a 0
        # The page: a sparkline a row, and the name opens the container's chart.
        spark = browser.wait_for(
            "(p => p && p.split(' ').length >= 3 && p)(document.querySelector("
            "'#containers tr[data-name=burn] svg.spark polyline').getAttribute('points'))"
        )
        assert all(0 <= float(xy.split(",")[1]) <= 20 for xy in spark.split(" "))
        browser.evaluate(
            "document.querySelector('#containers tr[data-name=burn] button.open-chart').click()"
        )
        points = browser.wait_for(
            "(b => !b.hidden && Number(b.dataset.points) >= 1 && Number(b.dataset.points))"
            "(document.getElementById('container-chart'))"
        )
        assert points >= len(burned["ts"])
        title = browser.evaluate("document.getElementById('container-chart-title').textContent")
        assert title == "burn: CPU and memory, last 15 min"
        grown = browser.wait_for(  # the live samples carry it on
            f"(c => c && c.data[0].length > {points} && c.data[0].length)(window.__containerChart)"
        )
        assert grown > points
        assert browser.console_errors() == []
        # A container removed is gone from the next list (the events stream says so);
        # its history stays until it ages out.
        docker.cli("rm", "-f", "burn")
        wait_until(lambda: item(page, "burn") is None, timeout=10, what="burn gone")
        assert kept("burn") is not None
    finally:
        page.close()
        server.stop()
        docker.cli("rm", "-f", "burn", "fill", "sick", "crash", "loop", "quiet", check=False)


@pytest.mark.e2e
def test_an_engine_that_goes_away_is_null_and_said_once(docker: Docker, tmp_path: Path) -> None:
    """A socket path where no engine listens: `containers` is null, the collector's
    gauge 0, and the log says why once."""
    server = ServerProcess(tmp_path / "logs", "--containers", str(tmp_path / "none.sock")).start()
    page = RecordingClient()
    try:
        page.connect(server.url)
        wait_until(lambda: len(page.received("metrics")) >= 4, timeout=15, what="4 samples")
        assert all(s["containers"] is None for s in page.received("metrics")[1:])
        metrics = requests.get(server.url + "/metrics", timeout=5).text
        assert re.search(r'dashboard_collector_success\{[^}]*collector="containers"[^}]*\} 0',
                         metrics)  # fmt: skip
        log = (server.log_dir / "dashboard.log").read_text()
        assert log.count("cannot read containers") == 1, log
    finally:
        page.close()
        server.stop()


def test_no_engine_means_no_collector(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from server.data import DynamicData

    assert find_socket("off") is None
    assert find_socket("/run/x.sock") == "/run/x.sock"
    monkeypatch.setattr("server.sampling.engine.USUAL_SOCKETS", (str(tmp_path / "no.sock"),))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    assert find_socket("auto") is None
    assert "containers" not in DynamicData(top_processes=0, containers="auto").sample()
    (tmp_path / "no.sock").touch()
    assert find_socket("auto") == str(tmp_path / "no.sock")


# ---------------------------------------------------------------- captured files

# From a cgroup v2 host (Debian 12, systemd driver): /proc/<pid>/cgroup and the files
# under /sys/fs/cgroup/system.slice/docker-<id>.scope/ of a container running
# `yes` under --memory 256m, as read there.
V2_FILES = {
    "cpu.stat": "usage_usec 5123456\nuser_usec 5000000\nsystem_usec 123456\n"
    "nr_periods 0\nnr_throttled 0\nthrottled_usec 0\n",
    "memory.current": "8839168\n",
    "memory.max": "268435456\n",
    "memory.stat": "anon 569344\nfile 8192000\nkernel 77824\nactive_file 4096000\n"
    "inactive_file 4096000\n",
    "pids.current": "2\n",
    "io.stat": "8:0 rbytes=1048576 wbytes=4096 rios=16 wios=1 dbytes=0 dios=0\n"
    "254:0 rbytes=2048 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n",
}


def v2_container(tmp_path: Path) -> Path:
    """The captured v2 files under tmp_path/cgroup, and /proc/42 (its first process)
    under tmp_path/proc: its cgroup directory."""
    scope = "/system.slice/docker-0123abcd.scope"
    directory = tmp_path / "cgroup" / scope.lstrip("/")
    directory.mkdir(parents=True)
    for name, text in V2_FILES.items():
        (directory / name).write_text(text)
    proc = tmp_path / "proc" / "42"
    (proc / "net").mkdir(parents=True)
    (proc / "cgroup").write_text(f"0::{scope}\n")
    (proc / "net" / "dev").write_text(
        "Inter-|   Receive                                                |  Transmit\n"
        " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets\n"
        "    lo: 100 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n"
        "  eth0: 5000 10 0 0 0 0 0 0 7000 12 0 0 0 0 0 0\n"
    )
    return directory


def test_cgroup_v2_files_read_as_a_container_reading(tmp_path: Path) -> None:
    directory = v2_container(tmp_path)
    paths = cgroups.find_paths(42, str(tmp_path / "proc"), str(tmp_path / "cgroup"))
    assert paths.v2 == str(directory)
    reading = cgroups.read(paths, 42, str(tmp_path / "proc"))
    assert reading == cgroups.Reading(
        cpu_ns=5_123_456_000, memory=8839168 - 4096000, memory_limit=256 * MiB, pids=2,
        read_bytes=1048576 + 2048, write_bytes=4096, rx_bytes=5000, tx_bytes=7000,
    )  # fmt: skip
    (directory / "memory.max").write_text("max\n")
    assert cgroups.read(paths, 42, str(tmp_path / "proc")).memory_limit is None


class OneContainer(Engine):
    """An engine that lists one running container, `web`, whose first process is 42."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(str(tmp_path / "no.sock"))

    def containers(self, filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        return [{"Id": "0123abcd", "Names": ["/web"], "Image": "web:1", "State": "running",
                 "Status": "Up 2 minutes", "Labels": {}}]  # fmt: skip

    def inspect(self, container_id: str) -> dict[str, Any]:
        return {"State": {"Status": "running", "Pid": 42, "ExitCode": 0}, "RestartCount": 0}


def test_a_containers_memory_is_read_on_the_ticks_it_ran_and_every_few(tmp_path: Path) -> None:
    """A container that used no CPU since the last tick has charged next to no memory:
    its memory.current is read again on a tick it ran, and every DETAILS_EVERY ticks."""
    directory = v2_container(tmp_path)
    collector = Containers(OneContainer(tmp_path), cores=2, proc=str(tmp_path / "proc"),
                           cgroup_root=str(tmp_path / "cgroup"))  # fmt: skip
    collector.refresh()
    collector.listed.set()

    def tick() -> tuple[float | None, int | None]:
        (row,) = collector.collect()["containers"]["items"]
        return row["cpu_percent"], row["memory_used"]

    def charge(more: int) -> None:
        (directory / "memory.current").write_text(f"{8839168 + more}\n")

    cache = 4096000  # memory.stat's inactive_file: not counted as used
    try:
        assert tick() == (None, 8839168 - cache)  # tick 0: every file
        charge(1 * MiB)
        assert tick() == (0.0, 8839168 + MiB - cache)  # tick 1: every file (its rates)
        charge(2 * MiB)
        assert tick() == (0.0, 8839168 + MiB - cache)  # tick 2: no CPU since, not read
        (directory / "cpu.stat").write_text("usage_usec 5200000\n")
        cpu, memory = tick()  # tick 3: it ran
        assert cpu is not None and cpu > 0 and memory == 8839168 + 2 * MiB - cache
        charge(3 * MiB)
        assert tick() == (0.0, 8839168 + 2 * MiB - cache)  # tick 4: idle again
        assert DETAILS_EVERY == 5
        assert tick() == (0.0, 8839168 + 3 * MiB - cache)  # tick 5: read every 5 ticks
    finally:
        collector.stop()


def test_a_container_is_inspected_again_on_a_change_not_as_its_uptime_moves() -> None:
    """The list line's uptime moves each minute: only what it says in brackets (health,
    an exit code), the state and the events seen count as a change."""
    up = {"State": "running", "Status": "Up 2 minutes (healthy)"}
    assert signature_of(up, 0) == signature_of({**up, "Status": "Up 3 minutes (healthy)"}, 0)
    assert signature_of(up, 0) != signature_of({**up, "Status": "Up 3 minutes (unhealthy)"}, 0)
    assert signature_of(up, 0) != signature_of(up, 1)  # an event named it
    exited = {"State": "exited", "Status": "Exited (1) 5 seconds ago"}
    assert signature_of(exited, 0) == signature_of({**exited, "Status": "Exited (1) 1 hour ago"}, 0)
    assert signature_of(exited, 0) != signature_of({**exited, "Status": "Exited (0) 1 hour ago"}, 0)
    assert signature_of(up, 0) != signature_of({**up, "State": "paused"}, 0)


def test_only_the_fields_shown_are_kept() -> None:
    listed = {
        "Id": "0123abcd" * 8, "Names": ["/web-1\n"], "Image": "nginx:1", "State": "running",
        "Labels": {"com.docker.compose.project": "shop", "com.docker.compose.service": "web",
                   "secret.token": "hunter2"},
    }  # fmt: skip
    inspected = {
        "RestartCount": 4,
        "State": {"Status": "running", "ExitCode": 0, "Pid": 42,
                  "StartedAt": "2026-12-07T03:39:32.258161356Z", "Health": {"Status": "healthy"}},
        "Config": {"Env": ["PASSWORD=hunter2"], "Cmd": ["--token", "hunter2"]},
    }  # fmt: skip
    facts = facts_of(listed, inspected)
    assert facts == {
        "name": "web-1?", "image": "nginx:1", "state": "running", "health": "healthy",
        "restarts": 4, "exit_code": 0, "started_at": _epoch("2026-12-07T03:39:32.258161Z"),
        "project": "shop", "service": "web",
    }  # fmt: skip
    assert "hunter2" not in repr(facts)
    assert facts["started_at"] == pytest.approx(1796614772.258, abs=0.001)  # 03:39:32.258 UTC
    assert _epoch("0001-01-01T00:00:00Z") is None


def test_an_agent_sends_the_container_table_with_its_newest_sample_only() -> None:
    """A replay's batch stays small: the hub keeps no container table (nor units,
    sensors, GPUs or drives) in history."""
    from server.config import Config
    from server.fleet.agent import Link

    config = Config(hub_url="http://127.0.0.1:9", hub_token="t" * 43, interval=1.0)
    link = Link(config, {"hostname": "x"})
    table = {"running": 1, "unhealthy": 0, "stopped": 0, "items": []}
    moment: dict[str, Any] = {"containers": table, "services": None, "sensors": None, "gpus": [],
              "disk_health": None}  # fmt: skip
    for seq in (1, 2, 3):
        link.add("metrics", {"ts": 1000.0 + seq, "seq": seq, **moment})
    batch = link._next_batch()
    assert [sorted(set(s) & set(moment)) for s in batch] == [[], [], sorted(moment)]
    assert all("containers" in s for s in link.buffer)  # the buffer keeps them whole


def test_container_rules_fire_name_their_container_and_resolve() -> None:
    from server.alerts.rules import AlertEngine
    from server.alerts.settings import parse_settings

    engine = AlertEngine(parse_settings({"anomaly": False}), interval=1, cores=2, host="h")

    def sample(ts: float, *items: dict[str, Any]) -> dict[str, Any]:
        listed = [{"name": "x", "state": "running", "health": None, "restarts": 0,
                   "exit_code": 0, **i} for i in items]  # fmt: skip
        table = {"running": 1, "unhealthy": 0, "stopped": 0, "items": listed}
        return {"ts": ts, "cpu": {"percent": 1.0}, "disks": [], "containers": table}

    def fired(ts: float, *items: dict[str, Any]) -> list[tuple[str, str]]:
        return [(a["rule"], a["level"]) for a in engine.evaluate(sample(ts, *items))]

    assert fired(0, {"name": "web"}, {"name": "db"}) == []
    assert fired(1, {"name": "web", "state": "exited", "exit_code": 137}, {"name": "db"}) == [
        ("container_exited:web", "critical")
    ]
    assert fired(2, {"name": "db", "health": "unhealthy"}) == [("container_exited:web", "ok")]
    assert fired(11, {"name": "db", "health": "unhealthy"}) == []  # held for 10 s
    assert fired(12, {"name": "db", "health": "unhealthy"}) == [
        ("container_unhealthy:db", "critical")
    ]
    assert engine.active["container_unhealthy:db"]["metric"] == "container_unhealthy:db"
    assert fired(13, {"name": "db"}) == []
    assert fired(23, {"name": "db"}) == [("container_unhealthy:db", "ok")]  # clear held 10 s
    # Restarts counted in the last 10 minutes: 3 a warning, 5 critical.
    changes = [fired(30 + i, {"name": "db", "restarts": i}) for i in range(6)]
    assert changes[:4] == [[], [], [], [("container_restarts:db", "warning")]]
    assert changes[5] == [("container_restarts:db", "critical")]
    assert fired(30 + 700, {"name": "db", "restarts": 5}) == []  # clear held 60 s first
    assert fired(30 + 761, {"name": "db", "restarts": 5}) == [("container_restarts:db", "ok")]


def test_container_rules_stay_bounded_as_names_churn() -> None:
    from server.alerts.rules import MAX_CONTAINER_RULES, AlertEngine
    from server.alerts.settings import parse_settings

    engine = AlertEngine(parse_settings({"anomaly": False}), interval=1, cores=2, host="h")
    for i in range(2000):  # a container a second, each a new name
        item = {"name": f"job-{i}", "state": "running", "health": None, "restarts": 0,
                "exit_code": 0}  # fmt: skip
        engine.evaluate({"ts": float(i), "cpu": {"percent": 1.0}, "disks": [],
                         "containers": {"running": 1, "unhealthy": 0, "stopped": 0,
                                        "items": [item]}})  # fmt: skip
    assert len(engine._rules) <= MAX_CONTAINER_RULES + 10
    assert len(engine._restarts) <= 2


@pytest.mark.e2e
@pytest.mark.browser
def test_an_agents_containers_reach_the_hub_its_tile_and_its_alerts(
    docker: Docker, tmp_path: Path, browser: Chromium
) -> None:
    """The agent's path: its samples' container table passes the hub's checks; the
    tile counts them, and an unhealthy one is the host's alert and state."""
    from server.fleet.tokens import AgentTokens
    from testkit.fleet import AgentProcess

    docker.run("web", IMAGE, "sleep", "1000")
    docker.run("sick", "--health-cmd", "false", "--health-interval", "1s",
               "--health-retries", "1", IMAGE, "sleep", "1000")  # fmt: skip
    hub = ServerProcess(tmp_path / "hub" / "logs")
    token = AgentTokens(str(hub.data_dir)).add("box")
    agent = AgentProcess(tmp_path, "box", token, hub.url,
                         env={"DASHBOARD_CONTAINERS": docker.socket})  # fmt: skip
    try:
        hub.start()
        agent.start()

        def tile() -> dict[str, Any] | None:
            hosts = requests.get(hub.url + "/api/hosts", timeout=5).json()["hosts"]
            box = [h["summary"] for h in hosts if h["id"] == "box"]
            ready = box and box[0].get("containers") and box[0]["state"] == "crit"
            return box[0] if ready else None

        try:
            summary = wait_until(tile, timeout=60, interval=1)
        except TimeoutError:
            pytest.fail(f"no tile with containers: {requests.get(hub.url + '/api/hosts').text}")
        assert summary["containers"] == [2, 1, 0]
        alerts = requests.get(hub.url + "/api/hosts/box/alerts", timeout=5).json()["active"]
        assert [(a["rule"], a["level"], a["host"]) for a in alerts] == [
            ("container_unhealthy:sick", "critical", "box")
        ]
        metrics = requests.get(hub.url + "/metrics", timeout=5).text
        assert re.search(r'dashboard_containers\{[^}]*host="box"[^}]*state="unhealthy"[^}]*\} 1',
                         metrics)  # fmt: skip
        browser.navigate(hub.url + "/")  # the fleet: the hub knows two hosts
        text = browser.wait_for(
            "(t => t && !t.hidden && t.textContent)([...document.querySelectorAll('.tile')]"
            ".filter(e => e.textContent.includes('box'))"
            ".map(e => e.querySelector('.tile-containers'))[0])"
        )
        assert text == "containers: 2 running · 1 unhealthy"
        assert "refused" not in agent.log()
    finally:
        agent.stop()
        hub.stop()
        docker.cli("rm", "-f", "web", "sick", check=False)


def test_an_agents_container_table_is_trimmed_to_fit_one_message() -> None:
    """200 containers with long names: the busiest rows that fit, and every count."""
    from server.fleet.agent import fitted
    from server.fleet.protocol import MAX_CONTAINER_BYTES, MAX_MESSAGE
    from server.wire import compact_json

    row = {"name": "n" * 128, "image": "i" * 256, "state": "running", "health": None,
           "restarts": 0, "exit_code": 0, "started_at": 1.0, "project": "p" * 128,
           "service": "s" * 128, "cpu_percent": 1.0, "memory_used": 1, "memory_limit": None,
           "pids": 1, "rx_bps": 0, "tx_bps": 0, "read_bps": 0, "write_bps": 0}  # fmt: skip
    rows = [{**row, "name": f"{i:03d}" + "n" * 125} for i in range(200)]
    table = {"running": 200, "unhealthy": 0, "stopped": 0, "items": rows}
    assert len(compact_json(table)) > MAX_MESSAGE  # too big as it is
    fit = fitted(table)
    assert len(compact_json(fit)) <= MAX_CONTAINER_BYTES < MAX_MESSAGE
    assert fit["running"] == 200 and fit["items"] == rows[: len(fit["items"])]
    assert len(fit["items"]) >= 40
    small = {**table, "items": rows[:3]}
    assert fitted(small) == small
