"""Grouping, inhibition by host_down, repeats and escalation (server/alerts/dispatch.py):
the pure logic on a clock of the test's, then end to end against the real server with
stand-in agents and HTTP receivers on loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from server.alerts.dispatch import Dispatcher
from server.alerts.messages import Message
from server.alerts.routes import parse_notify
from server.fleet.tokens import AgentTokens
from testkit.chromium import Chromium
from testkit.config import write_toml
from testkit.fleet import AgentProcess, stand_in_agent
from testkit.serverproc import ServerProcess
from testkit.wait import wait_until
from tests.receivers import Receiver
from tests.test_channels import alert, documented, families, json_url, refusal


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Fake:
    """A channel that only records (its loop is never started: the queue holds them)."""

    label = "fake (json://)"
    pace = 0.0
    send_resolved = True

    def deliver(self, message: Message) -> None:  # pragma: no cover - never started
        raise AssertionError


def flow(
    routes: Any = None, group_wait: float = 30.0, channels: tuple[str, ...] = ("chat", "pager")
) -> tuple[Dispatcher, Clock]:
    settings = parse_notify({c: {"url": "json://127.0.0.1:9/x"} for c in channels}, routes, None)
    clock = Clock()
    return Dispatcher(settings, {c: Fake() for c in channels}, group_wait, clock), clock


def taken(dispatcher: Dispatcher, channel: str) -> list[Message]:
    """The messages queued on a channel since the last call; the queue emptied."""
    items = dispatcher.deliveries[channel].queue._items
    found = [item["message"] for item in items if item is not None]
    items.clear()
    dispatcher.deliveries[channel].queue._held.clear()
    return found


def titles(dispatcher: Dispatcher, channel: str) -> list[str]:
    return [m.title for m in taken(dispatcher, channel)]


def due(dispatcher: Dispatcher, clock: Clock, seconds: float) -> None:
    clock.now += seconds
    out, _following = dispatcher._due(clock.now)
    dispatcher._queue(out)


# ---------------------------------------------------------------- the logic


def test_a_hosts_alerts_in_the_window_go_as_one_message() -> None:
    sent, clock = flow(group_wait=30)
    for rule in ("cpu", "memory", "load"):
        sent.send(alert("warning", rule=rule))
        clock.now += 5
    sent.send(alert("critical", rule="cpu"))  # a new level within the window: its latest
    sent.send(alert("warning", rule="cpu", host="web-3"))  # another host: its own group
    assert titles(sent, "chat") == []
    due(sent, clock, 14)  # db-1's window (30 s from its first) has not ended
    assert titles(sent, "chat") == []
    due(sent, clock, 1)
    (message,) = taken(sent, "chat")
    assert message.title == "CRITICAL 3 alerts on db-1" and message.level == "critical"
    lines = message.short.splitlines()
    assert [line.split(":")[0] for line in lines] == ["CRITICAL cpu", "WARNING memory",
                                                      "WARNING load"]  # fmt: skip
    assert "CRITICAL cpu on db-1." in message.full and "WARNING load on db-1." in message.full
    assert titles(sent, "pager") == ["CRITICAL 3 alerts on db-1"]
    due(sent, clock, 15)  # web-3's one alert reads as one alert always did
    assert titles(sent, "chat") == ["WARNING cpu on web-3"]
    # A resolution goes at once, where its firing went; one that resolves within its
    # window never went out, and neither does its resolution.
    sent.send(alert("ok", rule="memory"))
    assert titles(sent, "chat") == ["RESOLVED memory on db-1"]
    sent.send(alert("warning", rule="swap"))
    sent.send(alert("ok", rule="swap"))
    due(sent, clock, 31)
    assert titles(sent, "chat") == []


def test_each_channel_gets_the_alerts_its_routes_give_it() -> None:
    routes = [{"severity": ["critical"], "channels": ["pager"], "continue": True},
              {"channels": ["chat"]}]  # fmt: skip
    sent, clock = flow(routes, group_wait=10)
    sent.send(alert("critical", rule="cpu"))
    sent.send(alert("warning", rule="memory"))
    due(sent, clock, 10)
    assert titles(sent, "pager") == ["CRITICAL cpu on db-1"]
    assert titles(sent, "chat") == ["CRITICAL 2 alerts on db-1"]


def test_host_down_holds_back_the_hosts_other_alerts() -> None:
    routes = [{"channels": ["chat"], "repeat_minutes": 1}]
    sent, clock = flow(routes, group_wait=30, channels=("chat",))
    held: list[tuple[str, str]] = []
    sent.noted = lambda a, event, why: held.append((a["rule"], why)) if event == "held" else None
    sent.send(alert("warning", rule="disk:/"))
    due(sent, clock, 30)
    assert titles(sent, "chat") == ["WARNING disk:/ on db-1"]  # before the host went down
    sent.send(alert("critical", rule="cpu"))  # waits in the group...
    sent.send(alert("critical", rule="host_down"))  # ...and its cause goes at once
    assert titles(sent, "chat") == ["CRITICAL host_down on db-1"]
    sent.send(alert("warning", rule="memory"))  # while it is down: held back
    sent.send(alert("warning", rule="memory", host="web-3"))  # another host's: not
    due(sent, clock, 30)
    assert titles(sent, "chat") == ["WARNING memory on web-3"]
    assert held == [("cpu", "inhibited by host_down"), ("memory", "inhibited by host_down")]
    assert sent.inhibited == 2
    due(sent, clock, 31)  # disk:/'s repeat falls while the host is down: held too
    assert titles(sent, "chat") == ["CRITICAL host_down on db-1 (repeat 1, firing 61 s)"]
    # Back: those still firing are not sent as new; the held ones never went out, so
    # their resolution goes nowhere; the repeats go on from now.
    sent.send(alert("ok", rule="host_down"))
    assert titles(sent, "chat") == ["RESOLVED host_down on db-1"]
    sent.send(alert("ok", rule="cpu"))
    due(sent, clock, 30)
    assert [t for t in titles(sent, "chat") if "db-1" in t] == []
    due(sent, clock, 30)
    assert titles(sent, "chat") == ["WARNING disk:/ on db-1 (repeat 1, firing 2 min)"]
    # A change after the host is back goes out as new.
    sent.send(alert("critical", rule="memory"))
    due(sent, clock, 30)
    assert "CRITICAL memory on db-1" in titles(sent, "chat")


def test_repeats_and_escalation_follow_their_route() -> None:
    routes = [{"severity": ["warning"], "channels": ["chat"], "repeat_minutes": 0.5,
               "escalate_after_minutes": 2, "escalate_to": ["pager"]}]  # fmt: skip
    sent, clock = flow(routes, group_wait=0)
    acknowledged: set[tuple[str, str]] = set()
    sent.acknowledged = lambda host, rule: (host, rule) in acknowledged
    sent.send(alert("warning", rule="cpu"))
    sent.send(alert("warning", rule="memory"))
    assert titles(sent, "chat") == ["WARNING cpu on db-1", "WARNING memory on db-1"]
    due(sent, clock, 30)
    assert titles(sent, "chat") == ["WARNING cpu on db-1 (repeat 1, firing 30 s)",
                                    "WARNING memory on db-1 (repeat 1, firing 30 s)"]  # fmt: skip
    acknowledged.add(("db-1", "memory"))  # the later part's hook: no more of it
    due(sent, clock, 30)
    assert titles(sent, "chat") == ["WARNING cpu on db-1 (repeat 2, firing 60 s)"]
    due(sent, clock, 60)
    assert titles(sent, "pager") == ["WARNING cpu on db-1 (escalated, firing 2 min)"]
    assert len(titles(sent, "chat")) == 1  # its repeat; the escalation is once
    due(sent, clock, 60)
    assert titles(sent, "pager") == []
    # The resolution goes to the pager too: its escalation went there.
    sent.send(alert("ok", rule="cpu"))
    assert titles(sent, "pager") == ["RESOLVED cpu on db-1"]
    assert titles(sent, "chat")[-1] == "RESOLVED cpu on db-1"
    # A warning that becomes critical before its time does not escalate.
    sent.send(alert("warning", rule="load"))
    sent.send(alert("critical", rule="load"))  # the default route: every channel
    taken(sent, "chat")
    taken(sent, "pager")
    due(sent, clock, 300)
    assert titles(sent, "pager") == []


def test_the_timer_loop_sleeps_until_the_next_is_due() -> None:
    routes = [{"channels": ["chat"], "repeat_minutes": 2}]
    sent, clock = flow(routes, group_wait=20, channels=("chat",))
    assert sent._due(clock.now)[1] == clock.now + 60  # nothing: its longest sleep
    sent.send(alert("warning"))
    assert sent._due(clock.now)[1] == clock.now + 20  # the group's window
    clock.now += 20
    sent._due(clock.now)
    assert sent._due(clock.now)[1] == clock.now + 60  # the repeat at 120 s: a minute first
    clock.now += 60
    assert sent._due(clock.now)[1] == clock.now + 60


# ---------------------------------------------------------------- bad settings


@pytest.mark.parametrize(
    ("settings", "named", "says"),
    [
        ({"notify_group_wait": -1}, "notify_group_wait", "a number of seconds from 0 to 3600"),
        ({"notify_group_wait": "soon"}, "notify_group_wait", "a number of seconds"),
        ({"notify_route": [{"channels": ["p"], "repeat_minutes": -5}]},
         "notify_route[1].repeat_minutes", "minutes (0.5 is 30 s) from 0 to 10080"),
        ({"notify_route": [{"channels": ["p"], "repeat_minutes": "often"}]},
         "notify_route[1].repeat_minutes", "minutes"),
        ({"notify_route": [{"channels": ["p"], "escalate_after_minutes": 5,
                            "escalate_to": ["pagr"]}]},
         "notify_route[1].escalate_to", "names channel 'pagr'"),
        ({"notify_route": [{"channels": ["p"], "escalate_to": ["p"]}]},
         "notify_route[1].escalate_to", "go together"),
        ({"notify_route": [{"channels": ["p"], "escalate_after_minutes": 5}]},
         "notify_route[1].escalate_to", "go together"),
        ({"notify_route": [{"channels": ["p"], "escalate_after_minutes": 1e6,
                            "escalate_to": ["p"]}]},
         "notify_route[1].escalate_after_minutes", "from 0 to 10080"),
    ],
)  # fmt: skip
def test_bad_flow_settings_stop_the_start_with_one_line(
    tmp_path: Path, settings: dict[str, Any], named: str, says: str
) -> None:
    message = refusal(tmp_path, {"notify": {"p": {"url": "json://h/x"}}, **settings})
    assert f"setting '{named}" in message and says in message and "\n" not in message


def test_the_documented_flow_example_is_read_as_documented(tmp_path: Path) -> None:
    config = documented(tmp_path, "### Grouping, inhibition, repeat and escalation")
    assert config.notify_group_wait == 30
    chat, pager = config.notify.routes
    assert (chat.repeat_minutes, chat.escalate_after_minutes, chat.escalate_to) == (
        60, 30, ("pager",))  # fmt: skip
    assert pager.repeat_minutes == 15 and pager.severity == ("critical",)


# ---------------------------------------------------------------- the real server


@pytest.fixture
def chat_and_pager() -> Iterator[tuple[Receiver, Receiver]]:
    chat, pager = Receiver(), Receiver()
    try:
        yield chat, pager
    finally:
        chat.close()
        pager.close()


def hub(tmp_path: Path, chat: Receiver, pager: Receiver, **settings: Any) -> ServerProcess:
    config = write_toml(
        tmp_path / "dashboard.toml",
        notify={"chat": {"url": json_url(chat)}, "pager": {"url": json_url(pager)}},
        **settings,
    )
    return ServerProcess(tmp_path / "logs", "--config", str(config))


BUSY = {
    "cpu": {"percent": 97.0, "per_core": [97.0, 97.0]},
    "memory": {"total": 8 << 30, "available": 1 << 28, "percent": 97.0, "used": 7 << 30},
    "load": [400.0, 400.0, 400.0],
}
HOSTS = {"for_seconds": 0, "hosts": ["db-1"]}
RULES = {
    "cpu": {"warning": 50, "critical": 90, **HOSTS},
    "memory": {"warning": 50, "critical": 90, **HOSTS},
    "load": {"warning": 1, "critical": 2, **HOSTS},
}


@pytest.mark.e2e
def test_three_alerts_of_one_host_reach_the_chat_as_one_message(
    tmp_path: Path, chat_and_pager: tuple[Receiver, Receiver]
) -> None:
    """A stand-in db-1 over three rules at once: within the 3 s window, one message
    listing the three; then, with the route's repeat at 0.05 min (3 s), that one
    message's alerts again, each on its own."""
    chat, pager = chat_and_pager
    server = hub(tmp_path, chat, pager, alerts=RULES, notify_group_wait=3, notify_default=[],
                 notify_route=[{"hosts": ["db-1"], "channels": ["chat"],
                                "repeat_minutes": 0.05}])  # fmt: skip
    token = AgentTokens(str(server.data_dir)).add("db-1")
    try:
        server.start()
        with stand_in_agent(server.url, token, BUSY):
            wait_until(lambda: chat.bodies, timeout=30, what="the chat's message")
            wait_until(lambda: len(chat.bodies) >= 7, timeout=20, what="two rounds of repeats")
    finally:
        server.stop()
    first = chat.bodies[0]
    assert first["title"] == "CRITICAL 3 alerts on db-1", chat.bodies
    assert sorted(line.split(":")[0] for line in first["message"].splitlines()) == [
        "CRITICAL cpu", "CRITICAL load", "CRITICAL memory"]  # fmt: skip
    repeats = [b["title"] for b in chat.bodies[1:7]]
    for rule in ("cpu", "memory", "load"):
        assert any(t.startswith(f"CRITICAL {rule} on db-1 (repeat 1, firing ") for t in repeats)
    assert sum("(repeat 2," in t for t in repeats) == 3, repeats
    assert pager.bodies == []


@pytest.mark.e2e
def test_a_warning_goes_to_the_chat_then_escalates_to_the_pager(
    tmp_path: Path, chat_and_pager: tuple[Receiver, Receiver]
) -> None:
    chat, pager = chat_and_pager
    warm = {"cpu": {"percent": 60.0, "per_core": [60.0, 60.0]}}
    server = hub(tmp_path, chat, pager, alerts={"cpu": RULES["cpu"]}, notify_group_wait=0,
                 notify_route=[{"severity": ["warning"], "channels": ["chat"],
                                "escalate_after_minutes": 0.05, "escalate_to": ["pager"]}],
                 notify_default=[])  # fmt: skip
    token = AgentTokens(str(server.data_dir)).add("db-1")
    try:
        server.start()
        with stand_in_agent(server.url, token, warm):
            wait_until(lambda: chat.bodies, timeout=30, what="the chat's message")
            seen = time.monotonic()
            wait_until(lambda: pager.bodies, timeout=10, what="the escalation")
            later = time.monotonic() - seen
            time.sleep(3.5)  # it escalates once
    finally:
        server.stop()
    assert [b["title"] for b in chat.bodies] == ["WARNING cpu on db-1"]
    (escalated,) = [b["title"] for b in pager.bodies]
    assert escalated.startswith("WARNING cpu on db-1 (escalated, firing "), escalated
    assert 1.5 < later < 5, later


@pytest.mark.e2e
@pytest.mark.browser
def test_a_killed_agent_sends_its_host_down_alone_and_the_page_folds_the_rest(
    tmp_path: Path, chat_and_pager: tuple[Receiver, Receiver], browser: Chromium
) -> None:
    """A real agent on db-1 over two rules that this machine exceeds, killed (SIGKILL)
    while its alerts wait in their group (a window longer than the hub takes to call it
    down): the pager gets the host_down alone, the others are held back and said so in
    the log, the repeats of what went out before stay quiet while it is down, and
    db-1's page folds the held-back alerts under their cause."""
    chat, pager = chat_and_pager
    tiny = {"warning": 0.1, "critical": 0.2, **HOSTS}  # any machine's memory and root fs
    server = hub(tmp_path, chat, pager, alerts={"memory": tiny, "disk": tiny},
                 notify_group_wait=20, notify_default=[],
                 notify_route=[{"hosts": ["db-1"], "channels": ["pager"],
                                "repeat_minutes": 0.05}])  # fmt: skip
    token = AgentTokens(str(server.data_dir)).add("db-1")
    agent = AgentProcess(tmp_path, "db-1", token, server.url)
    try:
        server.start()
        agent.start()
        wait_until(lambda: _firing(server, ("memory", "disk:/")) == 2, timeout=30,
                   what="db-1's memory and disk alerts")  # fmt: skip
        fired = time.monotonic()
        agent.kill()
        # The agent is gone: the hub calls db-1 down after 10 s.
        wait_until(lambda: pager.bodies, timeout=25, what="the host_down")
        active = requests.get(server.url + "/api/hosts/db-1/alerts", timeout=5).json()["active"]
        held = sorted(a["rule"] for a in active if a["rule"] != "host_down")
        assert "memory" in held and "disk:/" in held, active
        scraped = families(server.url)  # counted in /metrics: each held back, none dropped
        assert scraped["dashboard_notify_held"].samples[0].value >= len(held)
        assert scraped["dashboard_alert_history_dropped_events"].samples[0].value == 0
        browser.navigate(server.url + "/host/db-1")
        summary = "document.querySelector('#alerts-active > li > details.held > summary')"
        browser.wait_for(f"({summary} || {{}}).textContent === "
                         f"'{len(held)} held back by host_down'", timeout=15)  # fmt: skip
        shown = browser.evaluate(
            "[...document.querySelectorAll('#alerts-active > li')].map(li => "
            "[li.firstChild.textContent, [...li.querySelectorAll('details.held li')].length])"
        )
        assert len(shown) == 1 and "host_down critical" in shown[0][0], shown
        assert shown[0][1] == len(held), shown
        assert browser.console_errors() == []
        # Past the group's window (20 s from their firing): held, they do not go then.
        time.sleep(max(fired + 23 - time.monotonic(), 0))
    finally:
        agent.kill()
        server.stop()
    titles = [b["title"] for b in pager.bodies]
    assert titles[0] == "CRITICAL host_down on db-1", titles
    assert all("host_down" in t for t in titles), titles  # its own repeats only
    assert len(titles) >= 2
    assert chat.bodies == []
    log = (tmp_path / "logs" / "dashboard.log").read_text()
    for rule in ("memory", "disk:/"):
        assert f"notification of alert {rule} critical on host db-1 held back: " \
               "inhibited by host_down" in log, log  # fmt: skip


def _firing(server: ServerProcess, rules: tuple[str, ...]) -> int:
    log = Path(server.log_dir / "dashboard.log")
    text = log.read_text() if log.exists() else ""
    return sum(f"alert {r} CRITICAL" in text and "db-1" in text for r in rules)


def test_a_hold_keeps_a_firing_and_its_repeats_back_until_it_ends() -> None:
    """A hold (a silence, a maintenance window, quiet hours: later parts) keeps a new
    firing from the channels and says why; a repeat waits while a hold lasts."""
    routes = [{"channels": ["chat"], "repeat_minutes": 1}]
    sent, clock = flow(routes, group_wait=0, channels=("chat",))
    holding: dict[str, str | None] = {"why": "silenced by test"}
    sent.holds.append(lambda a: holding["why"] if a["rule"] == "cpu" else None)
    held: list[tuple[str, str]] = []
    sent.noted = lambda a, event, why: held.append((a["rule"], why)) if event == "held" else None
    sent.send(alert("critical", rule="cpu"))
    sent.send(alert("critical", rule="load"))
    assert titles(sent, "chat") == ["CRITICAL load on db-1"]
    assert held == [("cpu", "silenced by test")]
    holding["why"] = "in maintenance"
    sent.send(alert("warning", rule="memory"))
    sent.send(alert("critical", rule="cpu"))  # still held: a change of it too
    assert titles(sent, "chat") == ["WARNING memory on db-1"]
    sent.holds.append(lambda a: "quiet hours")  # now every alert is held
    due(sent, clock, 61)
    assert titles(sent, "chat") == []  # load's and memory's repeats wait
    sent.holds.pop()
    due(sent, clock, 60)  # cpu is still "in maintenance": held yet
    assert sorted(titles(sent, "chat")) == [
        "CRITICAL load on db-1 (repeat 1, firing 2 min)",
        "WARNING memory on db-1 (repeat 1, firing 2 min)",
    ]
    holding["why"] = None  # its hold ends: cpu, firing still, goes out once
    due(sent, clock, 1)
    assert titles(sent, "chat") == ["CRITICAL cpu on db-1"]
    due(sent, clock, 1)
    assert titles(sent, "chat") == []
