"""Acknowledgements and silences (server/alerts/silences.py): the records on a clock of the
test's, their REST calls in the app, then end to end against the real server with a
stand-in agent and an HTTP receiver as the channel, across a restart, and on the page in
headless Chromium."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient

from server.alerts.silences import FILE_NAME, MAX_REASON, Refused, Silences
from server.fleet.tokens import AgentTokens
from server.state import DashboardState
from testkit.chromium import Chromium
from testkit.config import write_toml
from testkit.fleet import stand_in_agent
from testkit.serverproc import ServerProcess
from testkit.wait import wait_until
from tests.receivers import Receiver
from tests.test_channels import alert, json_url
from tests.test_notify_flow import due, flow, titles
from tests.test_page import AXE


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------- the records


def test_a_silence_matches_by_host_rule_family_and_kind_until_it_ends(tmp_path: Path) -> None:
    clock = Clock()
    silences = Silences(str(tmp_path), clock)
    made = silences.add({"hosts": ["db-*"], "rules": ["container_exited"], "minutes": 0.5,
                         "reason": "planned reboot"}, "ann")  # fmt: skip
    assert made["by"] == "ann" and made["ends_at"] == clock.now + 30
    why = silences.hold(alert(rule="container_exited:web-1", host="db-1"))
    assert why is not None and why.startswith("silenced by ann until ") and made["id"] in why
    assert silences.hold(alert(rule="container_exited:web-1", host="web-3")) is None
    assert silences.hold(alert(rule="cpu", host="db-1")) is None
    silences.add({"kinds": ["unit"], "ends_at": clock.now + 60}, "bob")
    assert silences.hold(alert(rule="unit_failed:nginx.service", host="any")) is not None
    clock.now += 30  # the first has ended by itself
    assert silences.hold(alert(rule="container_exited:web-1", host="db-1")) is None
    assert [s["by"] for s in silences.active()] == ["bob"]


@pytest.mark.parametrize(
    ("request_", "says"),
    [
        ({"hosts": ["db-1"], "reason": "no end"}, "needs an end"),
        ({"minutes": 5, "ends_at": 2e9}, "needs an end"),
        ({"minutes": 0}, "above 0"),
        ({"minutes": "ten"}, "must be numbers"),
        ({"minutes": True}, "must be numbers"),
        ({"ends_at": 1.0}, "in the future"),
        ({"minutes": 5, "reason": "x" * (MAX_REASON + 1)}, f"at most {MAX_REASON}"),
        ({"minutes": 5, "hosts": "db-1" * 100}, "1-200 characters"),
        ({"minutes": 5, "rules": [1]}, "name or glob"),
        ({"minutes": 5, "kinds": ["k"] * 51}, "at most 50"),
        ({"minutes": 5, "reason": "everything?"}, "needs hosts, rules or kinds"),
    ],
)
def test_a_bad_silence_is_refused_saying_why(
    tmp_path: Path, request_: dict[str, Any], says: str
) -> None:
    silences = Silences(str(tmp_path))
    with pytest.raises(Refused, match=says):
        silences.add(request_, "ann")
    assert silences.active() == []


def test_they_outlive_a_restart_and_ended_silences_are_dropped(tmp_path: Path) -> None:
    clock = Clock()
    silences = Silences(str(tmp_path), clock)
    silences.acknowledge("db-1", "cpu", "ann")
    silences.add({"rules": ["cpu"], "minutes": 1, "reason": "short"}, "ann")
    kept = silences.add({"rules": ["load"], "minutes": 60, "reason": "long"}, "bob")
    assert (tmp_path / FILE_NAME).stat().st_mode & 0o777 == 0o600
    clock.now += 120
    again = Silences(str(tmp_path), clock)
    assert again.acknowledged("db-1", "cpu")
    assert again.acknowledgements() == [{"host": "db-1", "rule": "cpu", "by": "ann",
                                         "at": 1_800_000_000.0}]  # fmt: skip
    assert again.active() == [kept]
    (tmp_path / FILE_NAME).write_text("{not json")
    assert Silences(str(tmp_path), clock).active() == []  # unreadable: logged, started empty


def test_a_resolution_clears_its_acknowledgement(tmp_path: Path) -> None:
    silences = Silences(str(tmp_path))
    told: list[int] = []
    silences.changed = lambda: told.append(1)
    silences.acknowledge("db-1", "cpu", "ann")
    silences.send(alert("critical", rule="cpu"))  # a new level: still acknowledged
    assert silences.acknowledged("db-1", "cpu")
    silences.send(alert("ok", rule="cpu", host="web-3"))  # another host's
    assert silences.acknowledged("db-1", "cpu")
    silences.send(alert("ok", rule="cpu"))
    assert not silences.acknowledged("db-1", "cpu") and len(told) == 2
    assert json.loads((tmp_path / FILE_NAME).read_text())["acknowledged"] == []


def test_the_dispatcher_asks_them_before_each_repeat_and_firing(tmp_path: Path) -> None:
    routes = [{"channels": ["chat"], "repeat_minutes": 0.5}]
    sent, clock = flow(routes, group_wait=0, channels=("chat",))
    silences = Silences(str(tmp_path))
    sent.acknowledged = silences.acknowledged
    sent.holds.append(silences.hold)
    sent.send(alert("critical", rule="cpu"))
    sent.send(alert("critical", rule="load"))
    assert titles(sent, "chat") == ["CRITICAL cpu on db-1", "CRITICAL load on db-1"]
    silences.acknowledge("db-1", "cpu", "ann")
    due(sent, clock, 30)
    assert titles(sent, "chat") == ["CRITICAL load on db-1 (repeat 1, firing 30 s)"]
    silences.add({"hosts": ["db-1"], "rules": ["memory"], "minutes": 5}, "ann")
    sent.send(alert("warning", rule="memory"))
    assert titles(sent, "chat") == []
    sent.send(alert("warning", rule="memory", host="web-3"))
    assert titles(sent, "chat") == ["WARNING memory on web-3"]


def test_a_web_process_forwards_its_changes_and_keeps_the_cores_view(tmp_path: Path) -> None:
    core, view = Silences(str(tmp_path)), Silences(None)
    sent: list[dict[str, Any]] = []
    view.forward = sent.append
    core.changed = lambda: view.replace(json.loads(json.dumps(core.snapshot())))
    made = view.add({"rules": ["cpu"], "minutes": 5, "reason": "r"}, "ann")
    entry = view.acknowledge("db-1", "cpu", "ann")
    assert view.active() == [] and not view.acknowledged("db-1", "cpu")  # not kept here
    for action in sent:
        core.apply(action)
    assert core.active() == view.active() == [made]
    assert [(a["rule"], a["by"]) for a in view.acknowledgements()] == [("cpu", "ann")]
    assert entry["by"] == "ann"
    assert view.delete("nosuch", "ann") is False
    assert view.delete(made["id"], "bob") is True
    core.apply(sent[-1])
    assert view.active() == []
    assert json.loads((tmp_path / "alert_silences.json").read_text())["silences"] == []
    core.apply({"op": "silence", "id": "x", "request": {"rules": ["cpu"]}, "by": "eve"})
    assert core.active() == []  # no end: refused on the core too, and logged


# ---------------------------------------------------------------- REST, in the app


def test_rest_acknowledges_a_firing_alert_and_refuses_what_is_not(
    client: FlaskClient, state: DashboardState
) -> None:
    local = state.fleet.local
    local.alerts.record(alert("critical", rule="cpu", host=local.id))
    answer = client.post("/api/alerts/ack", json={"rule": "cpu"})
    assert answer.status_code == 200, answer.json
    assert answer.json is not None and answer.get_json()["by"] == "anonymous"
    snapshot = client.get("/api/alerts").get_json()
    assert snapshot is not None
    assert [a["rule"] for a in snapshot["acknowledged"]] == ["cpu"]
    assert snapshot["silences"] == [] and snapshot["active"][0]["rule"] == "cpu"
    for body, status, says in [
        ({"rule": "memory"}, 404, "no alert 'memory' is firing"),
        ({"rule": "cpu", "host": "nowhere"}, 404, "no such host"),
        ({}, 400, "rule must be"),
        ([1], 400, "JSON object"),
    ]:
        answer = client.post("/api/alerts/ack", json=body)
        assert answer.status_code == status and says in answer.get_json()["error"], answer.json
    answer = client.post("/api/alerts/ack", data="rule=cpu")  # a form: not JSON
    assert answer.status_code == 400
    answer = client.post("/api/alerts/ack", json={"rule": "cpu"},
                         headers={"Origin": "http://evil.example"})  # fmt: skip
    assert answer.status_code == 403 and "cross-origin" in answer.get_json()["error"]


def test_rest_makes_lists_and_deletes_silences(client: FlaskClient) -> None:
    answer = client.post("/api/silences", json={"hosts": ["db-1"], "minutes": 10,
                                                "reason": "reboot"})  # fmt: skip
    assert answer.status_code == 201, answer.json
    made = answer.json
    assert made is not None and made["by"] == "anonymous" and made["reason"] == "reboot"
    assert client.get("/api/silences").json == {"silences": [made]}
    assert client.get("/api/alerts").get_json()["silences"] == [made]
    answer = client.post("/api/silences", json={"hosts": ["db-1"], "reason": "forever"})
    assert answer.status_code == 400 and "needs an end" in answer.get_json()["error"]
    answer = client.post("/api/silences", json={"minutes": 1, "reason": "x" * 501})
    assert answer.status_code == 400 and "at most 500" in answer.get_json()["error"]
    assert client.delete("/api/silences/nosuch").status_code == 404
    assert client.delete(f"/api/silences/{made['id']}").json == {"deleted": made["id"]}
    assert client.get("/api/silences").json == {"silences": []}


def test_a_process_without_them_answers_with_a_clear_error(
    client: FlaskClient, state: DashboardState
) -> None:
    state.silences = None  # as on a web process: the core keeps them
    answer = client.post("/api/silences", json={"minutes": 1})
    assert answer.status_code == 503 and "not kept" in answer.get_json()["error"]
    assert "silences" not in client.get("/api/alerts").get_json()


# ---------------------------------------------------------------- the real server

BUSY_CPU = {"cpu": {"percent": 97.0, "per_core": [97.0, 97.0]}}
MEMORY = {"total": 8 << 30, "available": 1 << 28, "used": 7 << 30}
RULES = {
    "cpu": {"warning": 50, "critical": 90, "for_seconds": 0, "hosts": ["db-1"]},
    "memory": {"warning": 50, "critical": 90, "for_seconds": 0, "clear_seconds": 0,
               "hosts": ["db-1"]},
}  # fmt: skip


def _titles(chat: Receiver, rule: str) -> list[str]:
    return [b["title"] for b in list(chat.bodies) if f" {rule} on db-1" in b["title"]]


def _post(server: ServerProcess, path: str, body: Any) -> requests.Response:
    return requests.post(server.url + path, json=body, timeout=5)


def _silences(server: ServerProcess) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = requests.get(server.url + "/api/silences", timeout=5).json()[
        "silences"
    ]
    return found


@pytest.mark.e2e
def test_acknowledge_and_silence_over_rest_end_to_end_and_across_a_restart(
    tmp_path: Path, chat: Receiver
) -> None:
    """db-1's cpu fires and repeats every 3 s (repeat_minutes 0.05) until acknowledged;
    a silence of 0.15 min (9 s) holds memory's new firing back, then ends by itself and
    memory's next firing goes out; bad requests get 400/404 JSON; after a restart the
    acknowledgement and a longer silence are still there."""
    config = write_toml(tmp_path / "dashboard.toml", alerts=RULES, notify_group_wait=0,
                        notify={"chat": {"url": json_url(chat)}}, notify_default=[],
                        notify_route=[{"channels": ["chat"], "repeat_minutes": 0.05}])  # fmt: skip
    server = ServerProcess(tmp_path / "logs", "--config", str(config))
    token = AgentTokens(str(server.data_dir)).add("db-1")
    carried: dict[str, Any] = {**BUSY_CPU, "memory": {**MEMORY, "percent": 10.0}}
    try:
        server.start()
        with stand_in_agent(server.url, token, carried):
            wait_until(lambda: len(_titles(chat, "cpu")) >= 2, timeout=30, what="a repeat")
            answer = _post(server, "/api/alerts/ack", {"host": "db-1", "rule": "cpu"})
            assert answer.status_code == 200, answer.text
            at_ack = len(_titles(chat, "cpu"))
            # Bad requests: a clear 4xx in JSON, and the server goes on.
            for path, body, status in [
                ("/api/alerts/ack", {"host": "db-1", "rule": "memory"}, 404),
                ("/api/silences", {"hosts": ["db-1"], "reason": "no end"}, 400),
                ("/api/silences", {"minutes": 1, "reason": "x" * 5000}, 400),
            ]:
                answer = _post(server, path, body)
                assert answer.status_code == status and answer.json()["error"], answer.text
            short = _post(
                server,
                "/api/silences",
                {"hosts": ["db-*"], "rules": ["memory"], "minutes": 0.15, "reason": "reboot\nx"},
            )
            assert short.status_code == 201, short.text  # fmt: skip
            long = _post(server, "/api/silences", {"kinds": ["container"], "minutes": 60,
                                                   "reason": "kept"}).json()  # fmt: skip
            carried["memory"] = {**MEMORY, "percent": 97.0}  # a new firing, silenced
            log = server.log_dir / "dashboard.log"
            wait_until(lambda: "memory critical on host db-1 held back: silenced by anonymous"
                       in log.read_text(), timeout=15, what="memory held back")  # fmt: skip
            assert _titles(chat, "memory") == []
            assert len(_titles(chat, "cpu")) <= at_ack + 1  # one may have been on its way
            alerts = requests.get(server.url + "/api/hosts/db-1/alerts", timeout=5).json()
            assert [(a["rule"], a["by"]) for a in alerts["acknowledged"]] == [("cpu", "anonymous")]
            assert {s["id"] for s in alerts["silences"]} == {short.json()["id"], long["id"]}
            # It ends by itself; memory's next firing goes out.
            wait_until(lambda: len(_silences(server)) == 1, timeout=15, what="its end")
            carried["memory"] = {**MEMORY, "percent": 10.0}
            time.sleep(2.5)
            carried["memory"] = {**MEMORY, "percent": 97.0}
            wait_until(lambda: _titles(chat, "memory"), timeout=15, what="memory's firing")
            assert len(_titles(chat, "cpu")) <= at_ack + 1
        text = log.read_text()
        assert "silence " in text and "reason 'reboot\\nx'" in text, text[-2000:]
        assert "alert cpu on host db-1 acknowledged by 'anonymous'" in text
        server.stop()
        server.start()
        alerts = requests.get(server.url + "/api/hosts/db-1/alerts", timeout=5).json()
        assert [a["rule"] for a in alerts["acknowledged"]] == ["cpu"]
        assert [s["id"] for s in alerts["silences"]] == [long["id"]]
        answer = requests.delete(server.url + f"/api/silences/{long['id']}", timeout=5)
        assert answer.status_code == 200
    finally:
        server.stop()


# ---------------------------------------------------------------- the page

MEMORY_FIRES = """
[alerts.memory]
warning = 0.5
critical = 99.9
for_seconds = 0
clear_seconds = 3600
"""


@pytest.mark.e2e
@pytest.mark.browser
def test_acknowledge_and_silence_on_the_page(tmp_path: Path, browser: Chromium) -> None:
    config = tmp_path / "alerts.toml"
    config.write_text(MEMORY_FIRES)
    server = ServerProcess(tmp_path / "logs", "--config", str(config))
    try:
        server.start()
        browser.navigate(server.url + "/")
        # In the HTML the alert's button is disabled; app.js's, once live, acknowledges.
        button = "document.querySelector('#alerts-active button.ack-button:not(:disabled)')"
        browser.wait_for(f"{button} !== null", timeout=20)
        label = browser.evaluate(f"{button}.getAttribute('aria-label')")
        assert label == "Acknowledge memory"
        browser.evaluate(f"{button}.click()")
        browser.wait_for("(document.querySelector('#alerts-active .ack') || {}).textContent"
                         "?.includes('acknowledged by anonymous')", timeout=10)  # fmt: skip
        alerts = requests.get(server.url + "/api/alerts", timeout=5).json()
        assert [a["rule"] for a in alerts["acknowledged"]] == ["memory"]
        browser.evaluate("document.querySelector('details.silence').open = true;"
                         "document.getElementById('silence-rule').value = 'cpu';"
                         "document.getElementById('silence-minutes').value = '30';"
                         "document.getElementById('silence-reason').value = 'tuning';"
                         "document.getElementById('silence-form').requestSubmit()")  # fmt: skip
        browser.wait_for("document.querySelectorAll('#silences li').length === 1", timeout=10)
        text = browser.evaluate("document.querySelector('#silences li').textContent")
        assert "cpu" in text and "tuning" in text and "by anonymous" in text, text
        (made,) = requests.get(server.url + "/api/silences", timeout=5).json()["silences"]
        assert made["rules"] == ["cpu"] and made["reason"] == "tuning"
        if AXE.exists():
            browser.call("Page.setBypassCSP", enabled=True)
            browser.evaluate(AXE.read_text())
            found = browser.evaluate_async(
                "axe.run(document, {resultTypes: ['violations']}).then(r => JSON.stringify("
                "r.violations.map(v => [v.id, v.nodes.map(n => n.target.join(' '))])))"
            )
            assert json.loads(found) == [], found
        browser.evaluate("document.querySelector('#silences li button').click()")
        browser.wait_for("document.querySelectorAll('#silences li').length === 0", timeout=10)
        assert browser.console_errors() == []
    finally:
        server.stop()


# ---------------------------------------------------------------- core and web processes


def _until(server: ServerProcess, check: Callable[[ServerProcess], bool], what: str) -> None:
    wait_until(lambda: check(server), timeout=10, what=f"the {what} on {server.url}")


@pytest.mark.e2e
def test_a_change_made_on_one_web_process_reaches_the_core_and_the_other(
    tmp_path: Path,
) -> None:
    """A core and two web processes on a Redis of the test's: an acknowledgement made on
    one web process (202: the core makes it) is seen on the core and the other; a silence
    too, and its deletion; a web process that starts later has them at once."""
    from testkit.redisproc import RedisProcess
    from testkit.system import require_binary

    config = tmp_path / "alerts.toml"
    config.write_text(MEMORY_FIRES)
    redis = RedisProcess(require_binary("redis-server"), tmp_path / "redis").start()
    common = ["--config", str(config), "--message-queue", redis.url,
              "--data-dir", str(tmp_path / "data"), "--allow-anonymous", "true"]  # fmt: skip
    core = ServerProcess(tmp_path / "core" / "logs", "--role", "core", *common)
    webs = [ServerProcess(tmp_path / f"web{i}" / "logs", "--role", "web", *common)
            for i in (1, 2)]  # fmt: skip
    started: list[ServerProcess] = []

    def acknowledged(server: ServerProcess) -> list[str]:
        alerts = requests.get(server.url + "/api/alerts", timeout=5).json()
        return [f"{a['rule']} by {a['by']}" for a in alerts.get("acknowledged", [])]

    def firing(server: ServerProcess) -> bool:
        alerts = requests.get(server.url + "/api/alerts", timeout=5).json()
        return any(a["rule"] == "memory" for a in alerts["active"])

    try:
        for server in (core, *webs):
            server.start()
            started.append(server)
        one, other = webs
        wait_until(lambda: firing(one), timeout=20, what="memory firing on a web process")
        answer = _post(one, "/api/alerts/ack", {"rule": "memory"})
        assert answer.status_code == 202 and answer.json()["by"] == "anonymous", answer.text
        for server in (core, other, one):
            _until(server, lambda s: acknowledged(s) == ["memory by anonymous"], "ack")
        answer = _post(other, "/api/silences", {"rules": ["cpu"], "minutes": 30, "reason": "r"})
        assert answer.status_code == 202, answer.text
        made = answer.json()
        for server in (core, one):
            _until(server, lambda s: [x["id"] for x in _silences(s)] == [made["id"]], "silence")
        answer = _post(one, "/api/silences", {"rules": ["cpu"], "reason": "no end"})
        assert answer.status_code == 400 and "needs an end" in answer.json()["error"]
        other.stop()
        other.start()
        assert acknowledged(other) == ["memory by anonymous"]
        assert [x["id"] for x in _silences(other)] == [made["id"]]
        answer = requests.delete(one.url + f"/api/silences/{made['id']}", timeout=5)
        assert answer.status_code == 202, answer.text
        for server in (core, other):
            _until(server, lambda s: _silences(s) == [], "deletion")
        log = (tmp_path / "core" / "logs" / "dashboard.log").read_text()
        assert "alert memory on host" in log and "acknowledged by 'anonymous'" in log
    finally:
        for server in reversed(started):
            server.stop()
        redis.kill()
