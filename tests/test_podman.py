"""Podman: a rootful podman of the test's own, its Docker-compatible API on a socket of
its own (testkit/podman.py), and real containers that burn CPU, hold memory, exit with
an error, restart in a loop and turn unhealthy; seen on the socket, in /metrics and as
alerts. Then the collector on Podman's answers as captured (tests/fixtures/podman/)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from server.sampling import cgroups
from server.sampling.containers import Containers, facts_of
from server.sampling.engine import Engine
from testkit.docker import IMAGE
from testkit.podman import Podman
from testkit.serverproc import ServerProcess
from testkit.sioclient import RecordingClient
from testkit.system import require_binary
from testkit.wait import wait_until

MiB = 1024 * 1024
HALF_A_CORE = 50 / (psutil.cpu_count() or 1)  # % of the machine that --cpus 0.5 allows
FIXTURES = Path(__file__).parent / "fixtures" / "podman"


@pytest.fixture(scope="module")
def podman() -> Iterator[Podman]:
    engine = Podman(require_binary("podman"), require_binary("busybox"))
    try:
        yield engine.start()
    finally:
        engine.stop()


def item(client: RecordingClient, name: str) -> dict[str, Any] | None:
    samples = client.received("metrics")
    part = samples[-1].get("containers") if samples else None
    found = [c for c in (part or {}).get("items", []) if c["name"] == name]
    return found[0] if found else None


@pytest.mark.e2e
def test_podmans_containers_are_seen_on_the_socket_in_metrics_and_as_alerts(
    podman: Podman, tmp_path: Path
) -> None:
    """Bounds: every case on the socket within 60 s of the server's start (CPU within
    0.5-1.2 of the half core it may use, from its cgroup); a health check that fails,
    once sick has been up a minute, on the socket within 5 s; the three alerts within
    30 s after it (unhealthy is held 10 s); a container removed gone within 10 s."""
    podman.run("burn", "--cpus", "0.5", IMAGE, "sh", "-c", "yes > /dev/null")  # half a core
    # 32 MiB held by the shell (`true` keeps it from exec'ing its last command).
    podman.run("fill", "--memory", "128m", IMAGE, "sh", "-c",
               "x=$(yes | head -c 33554432); sleep 1000; true")  # fmt: skip
    # Healthy while /tmp/ok is there. No systemd timer runs checks here
    # (`--health-interval disable`): the test runs each one with `podman healthcheck run`.
    podman.run("sick", "--health-cmd", "cat /tmp/ok", "--health-interval", "disable",
               "--health-retries", "1", IMAGE, "sh", "-c",
               "echo ok > /tmp/ok; sleep 1000; true")  # fmt: skip
    podman.run("crash", IMAGE, "sh", "-c", "sleep 1; exit 3")
    podman.run("loop", "--restart", "always", IMAGE, "sh", "-c", "sleep 1; exit 1")
    podman.run("quiet", IMAGE, "true")  # exits 0: counted, not listed
    wait_until(lambda: podman.cli("healthcheck", "run", "sick", check=False).returncode == 0,
               timeout=10, what="sick's first check passing")  # fmt: skip
    server = ServerProcess(tmp_path / "logs", "--containers", podman.socket).start()
    page = RecordingClient()
    try:
        page.connect(server.url)

        def settled() -> bool:
            burn, fill, sick = item(page, "burn"), item(page, "fill"), item(page, "sick")
            crash, loop = item(page, "crash"), item(page, "loop")
            return bool(
                burn and (burn["cpu_percent"] or 0) > 0.5 * HALF_A_CORE
                and fill and (fill["memory_used"] or 0) > 32 * MiB
                and sick and sick["health"] == "healthy"
                and crash and crash["state"] == "exited"
                and loop and (loop["restarts"] or 0) >= 2
            )  # fmt: skip

        try:
            wait_until(settled, timeout=60, interval=0.5)
        except TimeoutError:
            pytest.fail(f"not every case seen within 60 s: {page.received('metrics')[-1:]}")
        burn, fill, crash = item(page, "burn"), item(page, "fill"), item(page, "crash")
        assert burn and fill and crash
        names = [c["name"] for c in page.received("metrics")[-1]["containers"]["items"]]
        assert "quiet" not in names and names[0] == "burn"  # exited 0: a count; busiest first
        # Podman names an imported image under localhost/: the engine's name, shown as is.
        assert burn["image"] == f"localhost/{IMAGE}" and burn["health"] is None
        assert burn["pids"] >= 1 and burn["started_at"] > 1e9
        assert burn["cpu_percent"] <= 1.2 * HALF_A_CORE and burn["memory_limit"] is None
        assert fill["memory_limit"] == 128 * MiB and fill["memory_used"] <= 128 * MiB
        assert burn["rx_bps"] == 0 and burn["tx_bps"] == 0  # --network none: loopback only
        assert crash["exit_code"] == 3 and crash["cpu_percent"] is None
        metrics = requests.get(server.url + "/metrics", timeout=5).text
        cpu = re.search(r'dashboard_container_cpu_usage_ratio\{[^}]*container="burn"[^}]*\} (\S+)',
                        metrics)  # fmt: skip
        assert cpu and 0.5 * HALF_A_CORE < 100 * float(cpu.group(1)) <= 1.2 * HALF_A_CORE
        assert re.search(r'dashboard_container_exit_code\{[^}]*container="crash"[^}]*\} 3', metrics)
        assert re.search(r'dashboard_container_healthy\{[^}]*container="sick"[^}]*\} 1', metrics)
        assert re.search(r'dashboard_collector_success\{[^}]*collector="containers"[^}]*\} 1',
                         metrics)  # fmt: skip

        # sick turns unhealthy once it has been up over a minute: Podman's list then says
        # "Up About a minute" for a minute whatever its health (Docker's adds
        # "(unhealthy)"), so only the health_status event can tell the collector.
        sick = item(page, "sick")
        assert sick
        time.sleep(max(0.0, sick["started_at"] + 62 - time.time()))
        podman.cli("exec", "sick", "rm", "/tmp/ok")
        assert podman.cli("healthcheck", "run", "sick", check=False).returncode == 1
        # The event's way, within seconds (15 s at most on a busy machine: no poll would see it).
        wait_until(lambda: (item(page, "sick") or {}).get("health") == "unhealthy", timeout=15,
                   interval=0.2, what="sick unhealthy on the socket")  # fmt: skip

        # Alerts, each naming its container: exited with 3, unhealthy (held 10 s), and
        # restarting in a loop (3 restarts seen in 10 minutes).
        def alerts() -> dict[str, str] | None:
            body = requests.get(server.url + "/api/alerts", timeout=5).json()
            active = {a["rule"]: a["level"] for a in body["active"]}
            wanted = ("container_exited:crash", "container_unhealthy:sick",
                      "container_restarts:loop")  # fmt: skip
            return active if all(rule in active for rule in wanted) else None

        try:
            active = wait_until(alerts, timeout=30, interval=1)
        except TimeoutError:
            seen = requests.get(server.url + "/api/alerts", timeout=5).json()["active"]
            pytest.fail(f"not every alert within 30 s: {[a['rule'] for a in seen]}")
        assert active["container_exited:crash"] == "critical"
        assert active["container_unhealthy:sick"] == "critical"
        assert active["container_restarts:loop"] in ("warning", "critical")
        assert not any(rule.endswith((":burn", ":fill", ":quiet")) for rule in active)
        metrics = requests.get(server.url + "/metrics", timeout=5).text
        assert re.search(r'dashboard_containers\{[^}]*state="unhealthy"[^}]*\} 1', metrics)
        # The restart count is the engine's, as it is now (it goes on counting).
        loop = item(page, "loop")
        counted = int(podman.cli("inspect", "-f", "{{.RestartCount}}", "loop").stdout)
        assert loop and 2 <= loop["restarts"] <= counted

        # A container removed is gone from the next list (the events stream says so).
        podman.cli("rm", "-f", "-t", "0", "burn")
        wait_until(lambda: item(page, "burn") is None, timeout=10, what="burn gone")
    finally:
        page.close()
        server.stop()
        podman.cli("rm", "-f", "-t", "0", "burn", "fill", "sick", "crash", "loop", "quiet",
                   check=False)  # fmt: skip


# ---------------------------------------------------------------- captured answers


def captured(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


class CapturedEngine(Engine):
    """Podman's answers as captured: the list, each container's state as `states` has
    it now, and the events given; counts the inspect calls."""

    def __init__(self, listed: list[dict[str, Any]], states: dict[str, str]) -> None:
        super().__init__(str(FIXTURES / "no.sock"))
        self.listed = listed
        self.states = states  # container name -> its inspect file
        self.events_to_send: list[dict[str, Any]] = []
        self.inspected: list[str] = []

    def containers(self, filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        return self.listed

    def inspect(self, container_id: str) -> dict[str, Any]:
        name = next(c["Names"][0].lstrip("/") for c in self.listed if c["Id"] == container_id)
        self.inspected.append(name)
        found: dict[str, Any] = captured(self.states[name])
        return found

    def events(self, timeout: float) -> Iterator[dict[str, Any]]:
        yield from self.events_to_send


def test_podmans_answers_read_as_the_fields_shown() -> None:
    """`Names` as "/name", `Health.Status` "" where there is no check (Docker leaves
    Health out), `RestartCount` and `ExitCode` where Docker has them."""
    listed = {c["Names"][0]: c for c in captured("list-before.json")}
    sick = facts_of(listed["/sick"], captured("inspect-sick-unhealthy.json"))
    assert sick == {
        "name": "sick", "image": "localhost/dashtest/busybox:1", "state": "running",
        "health": "unhealthy", "restarts": 0, "exit_code": 0,
        "started_at": pytest.approx(1796627115.757, abs=0.001), "project": None,
        "service": None,
    }  # fmt: skip
    burn = facts_of(listed["/burn"], captured("inspect-burn.json"))
    assert burn["health"] is None and burn["state"] == "running"
    crash = facts_of(listed["/crash"], captured("inspect-crash.json"))
    assert (crash["state"], crash["exit_code"]) == ("exited", 3)
    loop = facts_of(listed["/loop"], captured("inspect-loop-after.json"))
    assert loop["restarts"] == 58


def test_an_event_has_a_container_inspected_again_where_its_line_reads_the_same(
    tmp_path: Path,
) -> None:
    """Podman's list reads the same before and after `sick` turned unhealthy and `loop`
    restarted 3 times (captured); each one's events have it inspected again. A list
    with no event between inspects nothing, and a healthcheck's exec events alone
    inspect nothing either."""
    before, after = captured("list-before.json"), captured("list-after.json")
    assert before == after
    states = {"burn": "inspect-burn.json", "crash": "inspect-crash.json",
              "sick": "inspect-sick-healthy.json", "loop": "inspect-loop-before.json"}  # fmt: skip
    engine = CapturedEngine(before, states)
    collector = Containers(engine, cores=2, proc=str(tmp_path), cgroup_root=str(tmp_path))

    def facts() -> dict[str, dict[str, Any]]:
        return {known.facts["name"]: known.facts for known in collector._known.values()}

    collector.refresh()
    assert sorted(engine.inspected) == ["burn", "crash", "loop", "sick"]
    assert facts()["sick"]["health"] == "healthy" and facts()["loop"]["restarts"] == 55

    events = [json.loads(line) for line in (FIXTURES / "events.jsonl").read_text().splitlines()]
    ids = {c["Names"][0].lstrip("/"): c["Id"] for c in before}
    execs = [e for e in events if e["Action"].startswith("exec")]
    assert execs and all(e["Actor"]["ID"] == ids["sick"] for e in execs)
    engine.states.update(sick="inspect-sick-unhealthy.json", loop="inspect-loop-after.json")
    engine.listed, engine.inspected, engine.events_to_send = after, [], execs
    collector._watch_round()
    collector.refresh()
    assert engine.inspected == []  # the same line, and only exec events: nothing changed

    engine.events_to_send = [e for e in events if e["Action"] in ("health_status", "restart")]
    collector._watch_round()
    collector.refresh()
    assert sorted(engine.inspected) == ["loop", "sick"]
    assert facts()["sick"]["health"] == "unhealthy" and facts()["loop"]["restarts"] == 58
    assert collector._known[ids["loop"]].pid == captured("inspect-loop-after.json")["State"]["Pid"]
    engine.inspected = []
    collector.refresh()
    assert engine.inspected == []
    # A container gone from the list takes its count with it.
    engine.listed = [c for c in after if c["Id"] != ids["loop"]]
    collector.refresh()
    assert ids["loop"] not in collector._events and ids["sick"] in collector._events


def test_podmans_cgroup_path_is_found_in_each_v1_hierarchy(tmp_path: Path) -> None:
    """cgroupfs: /libpod_parent/libpod-<id> in every hierarchy of a v1 (hybrid) host."""
    text = (FIXTURES / "burn.proc-cgroup").read_text()
    (tmp_path / "proc" / "42").mkdir(parents=True)
    (tmp_path / "proc" / "42" / "cgroup").write_text(text)
    path = text.splitlines()[-1].split(":", 2)[2]
    assert re.fullmatch(r"/libpod_parent/libpod-[0-9a-f]{64}", path)
    for controller in ("cpuacct", "memory", "pids", "blkio"):
        (tmp_path / "cgroup" / controller / path.lstrip("/")).mkdir(parents=True)
    found = cgroups.find_paths(42, str(tmp_path / "proc"), str(tmp_path / "cgroup"))
    at = {c: f"{tmp_path}/cgroup/{c}{path}" for c in ("cpuacct", "memory", "pids", "blkio")}
    assert found == cgroups.Paths(cpu=at["cpuacct"], memory=at["memory"], pids=at["pids"],
                                  blkio=at["blkio"])  # fmt: skip
