"""One agent can harm only its own tile: a real hub, two real agents, and a hostile
client with a valid token that sends every kind of bad message we know of, then
cases generated from the declaration of what an agent may send.

During and after the attack, for each good host: its history is written (read back
after a hub restart), its alerts reach a real webhook receiver, /metrics answers 200
with its families, /healthz answers within 100 ms, a page watching it keeps 1 Hz,
and the hub's memory stays under a bound. The hostile host's tile says why.
"""

from __future__ import annotations

import copy
import itertools
import json
import random
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
import socketio
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from server.fleet import schema
from server.fleet.hub import sample_problem
from server.fleet.tokens import AgentTokens
from testkit.config import write_toml
from testkit.fleet import AgentProcess
from testkit.history import sequence_problem, stored_samples
from testkit.serverproc import ServerProcess
from testkit.sioclient import RecordingClient, open_socket
from testkit.synthetic import synthetic_sample
from testkit.system import require_binary
from testkit.wait import wait_until
from tests.receivers import Receiver

GOOD = ["good-1", "good-2"]
RSS_BOUND = 100 * 2**20  # the hub's growth over the attack, at most (bytes)
HEALTHZ_SECONDS = 0.1


# ---------------------------------------------------------------- generated cases


def _values() -> st.SearchStrategy[Any]:
    """Any JSON value an agent could send: wrong types, extremes, long and odd text."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**80), max_value=2**80),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from([2**63, -(2**63) - 1, 1e308, -1e308, 0, -1]),
        st.text(max_size=40),
        st.sampled_from(["x" * 60_000, "a\n", "b\u2028c", "d\u0085", "\x1b[31m"]),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=8), inner, max_size=6)
        ),
        max_leaves=12,
    )


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value[:3]):
            found += _paths(item, (*prefix, i))
    return found


@st.composite
def mutated_samples(draw: st.DrawFn) -> dict[str, Any]:
    """A good sample with a few of its values (or keys) replaced by anything; or many
    entities (cores, disks, processes) past or at their bounds."""
    sample = synthetic_sample(time.time(), 1, draw(st.randoms(use_true_random=False)))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(sample)
        path = draw(st.sampled_from(paths))
        parent: Any = sample
        for step in path[:-1]:
            parent = parent[step]
        choice = draw(st.integers(0, 3))
        if choice == 0 and isinstance(parent, dict):
            del parent[path[-1]]
        elif choice == 1 and isinstance(parent, dict):
            parent[draw(st.text(max_size=12))] = draw(_values())
        else:
            parent[path[-1]] = draw(_values())
    if draw(st.booleans()):
        many = draw(st.sampled_from([schema.MAX_DISKS, schema.MAX_DISKS + 1, 1000]))
        disks = sample.get("disks")
        first = disks[0] if isinstance(disks, list) and disks else None
        disk = first if isinstance(first, dict) else {"mount": "/"}
        sample["disks"] = [{**disk, "mount": f"/m{i}"} for i in range(many)]
    return sample


def _read_as_the_hub_does(sample: dict[str, Any]) -> None:
    """Everything the hub reads of an accepted sample: the store's row, /metrics, the
    alert rules, the tile (server/history, server/web/metrics_export, server/alerts)."""
    from server.alerts.notify import AlertNotifier
    from server.alerts.rules import AlertEngine
    from server.alerts.settings import parse_settings
    from server.alerts.webhooks import WebhookSender
    from server.fleet.hosts import Host
    from server.history.ring import history_view
    from server.history.tiers import COLUMNS
    from server.series import STORED
    from server.web.metrics_export import _Families, _sample_families
    from server.wire import compact_json

    compact_json(history_view(sample))
    values = [series.value(sample) for series in STORED]
    assert len(values) == len(COLUMNS)
    for value in values:
        assert value is None or -(2**63) <= value < 2**63
    _sample_families(_Families(), sample)
    engine = AlertEngine(parse_settings({}), interval=1.0, cores=2, host="h")
    host = Host("h", AlertNotifier(engine, lambda e, d: None, [WebhookSender([])], "h"), 1.0, 60)
    host.take(sample, host.notifier)
    host.tile()
    host.columns()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_samples())
def test_whatever_the_declaration_accepts_the_hub_can_read(sample: dict[str, Any]) -> None:
    """Generated from the declaration's own shape: a sample is refused with a reason,
    or everything that reads it later reads it without an error."""
    problem = sample_problem(copy.deepcopy(sample), time.time())
    if problem is None:
        _read_as_the_hub_does(sample)
    else:
        assert isinstance(problem, str) and problem


def test_every_series_and_sample_key_is_declared() -> None:
    from server.series import SERIES

    good = synthetic_sample(time.time(), 1, random.Random(1))
    assert schema.sample_problem(good) is None
    for series in SERIES:  # a series' path is in the declaration, with its unit's range
        if series.path is not None and series.path[0] != "disks":
            schema.of_series(*series.path)
    assert schema.sample_problem({**good, "containers": []}) is not None  # undeclared: refused


# ---------------------------------------------------------------- the attack


class Watch:
    """Polls the hub once a second while the attack runs: what the good hosts see."""

    def __init__(self, hub: ServerProcess) -> None:
        self.hub = hub
        self.healthz: list[float] = []
        self.metrics_bad: list[str] = []
        self.rss: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.process = psutil.Process(hub.proc.pid)  # type: ignore[union-attr]

    def _run(self) -> None:
        curl = require_binary("curl")
        while not self._stop.wait(1.0):
            # Timed by curl, a process of its own: not by a thread of this one, which the
            # attack's own Python (the generated cases, the connect loop) keeps busy.
            answer = subprocess.run(
                [curl, "-s", "-o", "/dev/null", "-m", "5", "-w", "%{http_code} %{time_total}",
                 self.hub.url + "/healthz"],
                capture_output=True, text=True, timeout=10, check=False,
            )  # fmt: skip
            status, _, took = answer.stdout.partition(" ")
            assert status == "200", answer.stdout + answer.stderr
            self.healthz.append(float(took))
            text = requests.get(self.hub.url + "/metrics", timeout=10)
            for name in GOOD:
                family = f'dashboard_cpu_usage_ratio{{host="{name}"}}'
                if text.status_code != 200 or family not in text.text:
                    self.metrics_bad.append(f"{text.status_code} {name}")
            self.rss.append(self.process.memory_info().rss)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


class Hostile:
    """A python-socketio client on /agent with a valid token, sending what it likes."""

    def __init__(self, url: str, token: str) -> None:
        self.client = socketio.Client(reconnection=False)
        self.watched: list[Any] = []
        self.client.on("firehose_watch", self.watched.append, namespace="/agent")
        self.client.connect(
            url, auth={"token": token}, namespaces=["/agent"], transports=["websocket"],
            wait_timeout=10,
        )  # fmt: skip

    def call(self, event: str, data: Any) -> Any:
        return self.client.call(event, data, namespace="/agent", timeout=15)

    def samples(self, *batch: dict[str, Any]) -> Any:
        return self.call("samples", list(batch))


def good_sample(**changes: Any) -> dict[str, Any]:
    sample = synthetic_sample(time.time(), 1, random.Random())
    sample.update(changes)
    return sample


@pytest.fixture
def attacked(tmp_path: Path) -> Iterator[tuple[ServerProcess, dict[str, Any], Receiver]]:
    receiver = Receiver("ok")
    # Disks fire at once (the mount flood below); memory above 0.1 % fires for every host.
    alerts = {
        "webhooks": [receiver.url],
        "webhook_retries": 0,
        "disk": {"warning": 50, "critical": 1000, "for_seconds": 0, "clear_seconds": 0},
        "memory": {"warning": 0.1, "critical": 1000, "for_seconds": 0},
    }
    config = write_toml(tmp_path / "hub.toml", alerts=alerts)
    hub = ServerProcess(tmp_path / "hub" / "logs", "--config", str(config))
    tokens = AgentTokens(str(hub.data_dir))
    agents = {n: AgentProcess(tmp_path, n, tokens.add(n), hub.url) for n in GOOD}
    hostile_token = tokens.add("hostile")
    try:
        hub.start()
        for agent in agents.values():
            agent.start()
        yield hub, {"agents": agents, "token": hostile_token, "work": tmp_path}, receiver
    finally:
        for agent in agents.values():
            agent.stop()
        if hub.proc is not None:
            hub.stop()
        receiver.close()


def test_a_hostile_agent_harms_only_its_own_tile(
    attacked: tuple[ServerProcess, dict[str, Any], Receiver],
) -> None:
    hub, parts, receiver = attacked
    agents: dict[str, AgentProcess] = parts["agents"]
    wait_until(
        lambda: all(len(stored_samples(hub.data_dir, n)) >= 3 for n in GOOD),
        timeout=30,
        interval=0.5,
    )
    with pytest.raises(ValueError):  # a name ending in a newline is no name
        AgentTokens(str(hub.data_dir)).add("evil\n")
    page = RecordingClient()
    page.connect(hub.url, auth={"host": "good-1"})
    base_rss = psutil.Process(hub.proc.pid).memory_info().rss  # type: ignore[union-attr]
    attack_from = time.time()
    hostile = Hostile(hub.url, parts["token"])
    try:
        with Watch(hub) as watch:
            # Each kind of bad message once: refused with a reason, nothing else moves.
            wide = good_sample()
            wide["memory"]["used"] = 2**70  # an integer past 64 bits, in a stored field
            no_device = good_sample()
            del no_device["disks"][0]["device"]
            long_device = good_sample()
            long_device["disks"][0]["device"] = "d" * 58_000
            for bad in (
                wide,
                no_device,
                long_device,
                good_sample(load=[1.0]),
                good_sample(load="high"),
                good_sample(uptime="long"),
                good_sample(processes=[{"pid": 1, "name": "x", "cpu_percent": "lots"}]),
            ):
                answer = hostile.samples(bad)
                assert answer.get("refused") == 1 and answer["retry"] is False, answer
            # A batch of a good sample and a bad one: the good one kept, the bad one named.
            mixed = hostile.samples(good_sample(seq=5), good_sample(seq=6, load="x"))
            assert mixed["refused"] == 1 and mixed["seq"] == 6, mixed
            assert mixed["error"] == "sample.load must be a list", mixed
            statics = [
                {"hostname": "h", "cpu": {"logical": 5_000_000}},
                {"hostname": "evil\n2026-12-07 INFO dashboard: forged"},
                {"hostname": "line\u2028break\u0085"},
                {"hostname": "h", "log_sources": ["ok\n"]},
            ]
            for static in statics:
                assert hostile.call("static", static) is False
            assert hostile.call("static", {"hostname": "hostile", "log_sources": ["x"]})

            # Mount names that flip across thresholds and change every sample: 5 a second.
            answers = []
            for i in range(60):
                flood = good_sample()
                flood["disks"] = [
                    {"mount": f"/flood/{i}/{m}", "device": "/dev/x", "fstype": "ext4",
                     "percent": 100.0 * ((i + m) % 2), "total": 1, "used": 1, "free": 0}
                    for m in range(schema.MAX_DISKS)
                ]  # fmt: skip
                answers.append(hostile.samples(flood))
                time.sleep(0.2)
            assert all("error" not in a for a in answers[:20]), answers[:3]

            # 2,000 log lines a message, watched by a page: held to the per-source cap.
            lines: list[int] = []
            viewer = socketio.Client()
            viewer.on("firehose", lambda b: lines.append(len(b["lines"])))
            viewer.connect(hub.url, transports=["websocket"], wait_timeout=10)
            assert viewer.call("firehose_subscribe", {"host": "hostile"}, timeout=10)["ok"]
            wait_until(lambda: hostile.watched, timeout=10, what="the hub asking for lines")
            sent_from = time.monotonic()
            for _ in range(10):
                now = round(time.time())  # short lines: 2,000 of them fit one frame
                batch = [{"ts": now, "text": str(n % 10)} for n in range(2000)]
                hostile.client.emit("firehose", {"source": "x", "lines": batch},
                                    namespace="/agent")  # fmt: skip
                time.sleep(0.3)
            time.sleep(1.5)
            seconds = time.monotonic() - sent_from
            viewer.disconnect()
            assert 0 < sum(lines) <= 200 * (seconds + 1) + 20, (sum(lines), seconds)

            # Generated cases, sent as they are (a batch answered, never a dead link).
            @settings(max_examples=60, deadline=None, database=None)
            @given(mutated_samples())
            def send(sample: dict[str, Any]) -> None:
                # Past 96 KiB a frame closes the link (Engine.IO's cap, tested elsewhere).
                assume(len(json.dumps([sample])) < 60_000)
                answer = hostile.samples(sample)
                assert isinstance(answer, dict) and ("ts" in answer or "error" in answer)

            send()
            # 3,000 namespace connects and disconnects on one session (its first ones
            # take the host's link from the client above: the newest link is the host's).
            ws = open_socket(hub.url)
            started = time.monotonic()
            refused = 0
            for _ in range(3000):
                ws.send("40/agent," + json.dumps({"token": parts["token"]}))
                reply = ws.recv()
                while reply == "2":  # a ping
                    ws.send("3")
                    reply = ws.recv()
                refused += str(reply).startswith("44/agent")
                ws.send("41/agent,")
            ws.close()
            assert refused >= 2900 and time.monotonic() - started < 60

            # A good host goes down during the attack: its host_down reaches the receiver.
            agents["good-2"].kill()
            wait_until(
                lambda: any(b.get("rule") == "host_down" and b.get("host") == "good-2"
                            for b in receiver.bodies),
                timeout=30, interval=0.5, what="good-2's host_down at the webhook",
            )  # fmt: skip
            agents["good-2"].start()
            wait_until(lambda: len(stored_samples(hub.data_dir, "good-2")) > 0, timeout=30)
            time.sleep(6)
    finally:
        hostile.client.disconnect()
        page.close()

    attack_to = time.time()
    # What the good hosts saw, all along.
    assert not watch.metrics_bad, watch.metrics_bad[:5]
    assert watch.healthz and max(watch.healthz) < HEALTHZ_SECONDS, sorted(watch.healthz)[-5:]
    assert max(watch.rss) - base_rss < RSS_BOUND, (max(watch.rss) - base_rss) / 2**20
    times = [t for t in page.times("metrics")]
    assert max(b - a for a, b in itertools.pairwise(times)) < 2.5
    for name in GOOD:
        assert any(b.get("host") == name and b.get("rule") == "memory" for b in receiver.bodies)
    # The hostile host's tile says why; its alert flood stayed within its budget.
    answer = requests.get(hub.url + "/api/hosts", timeout=5).json()
    tiles = {h["id"]: h["summary"] for h in answer["hosts"]}
    trouble = " ".join(tiles["hostile"].get("trouble", []))
    assert "refused" in trouble and "alerts" in trouble, tiles["hostile"]
    assert not any("trouble" in tiles[n] for n in GOOD)
    log = (hub.log_dir / "dashboard.log").read_text()
    hostile_alerts = [line for line in log.splitlines() if "on host hostile" in line]
    assert len(hostile_alerts) <= 2 * 30, len(hostile_alerts)  # at most two minutes' budget
    assert "\u2028" not in log and "\u0085" not in log and "forged" not in log
    assert len(log.splitlines()) < 400, len(log.splitlines())

    # The good hosts' history, read back after a restart of the hub.
    hub.stop()
    hub.start()
    for name in GOOD:
        rows = [r for r in stored_samples(hub.data_dir, name) if r[0] >= attack_from]
        # good-2 was killed and started again: each of its runs counts seq from 1.
        runs = [[rows[0]]]
        for row in rows[1:]:
            if row[1] < runs[-1][-1][1]:
                runs.append([])
            runs[-1].append(row)
        for run in runs:
            assert sequence_problem(run) is None, f"{name}: {sequence_problem(run)}"
        assert len(runs) == (2 if name == "good-2" else 1)
        assert rows[0][0] < attack_from + 2 and rows[-1][0] > attack_to - 2  # all along
