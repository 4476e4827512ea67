"""Notification channels and routes (server/alerts/channels.py, routes.py, dispatch.py,
messages.py, delivery.py), against real receivers on loopback: an SMTP server
(aiosmtpd) and HTTP servers standing in for ntfy and Slack-style JSON services."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from server.alerts import rules
from server.alerts.channels import open_channels
from server.alerts.delivery import DeliveryError
from server.alerts.dispatch import Dispatcher
from server.alerts.messages import LINK, compose
from server.alerts.routes import NotifySettings, kind_of, parse_notify
from server.app import create_app
from server.config import Config, ConfigError, load
from server.fleet.tokens import AgentTokens
from testkit.config import write_toml
from testkit.fleet import stand_in_agent
from testkit.serverproc import ROOT, ServerProcess, run_server_command
from testkit.sioclient import RecordingClient
from testkit.wait import wait_until
from tests.receivers import RELAY_PASSWORD, MailReceiver, Receiver

PASSWORD = RELAY_PASSWORD  # the mail relay's: it must never reach a log


def alert(
    level: str = "critical", rule: str = "cpu", host: str = "db-1", **more: Any
) -> dict[str, Any]:
    previous = "ok" if level != "ok" else "critical"
    return {
        "rule": rule,
        "metric": "cpu.percent",
        "level": level,
        "previous": previous,
        "value": 97.5,
        "threshold": 90.0,
        "ts": time.time(),
        "host": host,
        **more,
    }


def json_url(receiver: Receiver, scheme: str = "json") -> str:
    """Apprise's URL for an HTTP receiver: json://127.0.0.1:PORT/hook."""
    return receiver.url.replace("http://", f"{scheme}://")


def mail_url(relay: MailReceiver | None, port: int = 0, password: str = PASSWORD) -> str:
    port = relay.port if relay is not None else port
    return f"mailto://dash:{password}@127.0.0.1:{port}?from=dash@example.net&to=ops@example.net"


@pytest.fixture
def receivers() -> Iterator[dict[str, Receiver]]:
    made = {
        name: Receiver(mode)
        for name, mode in [
            ("chat", "ok"),
            ("pager", "ok"),
            ("ntfy", "ok"),
            ("hang", "hang"),
            ("error", "error"),
        ]
    }
    made["ntfy"].answer = (200, b'{"id": "1"}')  # as ntfy answers: Apprise checks it
    try:
        yield made
    finally:
        for receiver in made.values():
            receiver.close()


def dispatcher(channels: dict[str, Any], routes: Any = None, default: Any = None) -> Dispatcher:
    settings = parse_notify(channels, routes, default)
    made = Dispatcher(settings, open_channels(dict(settings.channels)))
    made.start()
    return made


# ---------------------------------------------------------------- routes


ROUTES = [
    {"hosts": ["db-*"], "severity": ["critical"], "channels": ["pager"]},
    {"kinds": ["container", "unit"], "channels": ["chat"], "continue": True},
    {"rules": ["disk"], "channels": ["mail"]},
]


def routed(
    channels: tuple[str, ...] = ("pager", "chat", "mail"), default: Any = None
) -> NotifySettings:
    return parse_notify({c: {"url": "json://127.0.0.1:9/x"} for c in channels}, ROUTES, default)


def test_the_first_matching_route_wins_unless_it_continues() -> None:
    settings = routed()
    assert settings.channels_for(alert("critical", host="db-1")) == ["pager"]
    # A container's alert matches the second route, which goes on to the third: no match
    # there, so the second's channels alone.
    assert settings.channels_for(alert("warning", "container_exited:web-1", "web-3")) == ["chat"]
    # `continue` on, then a later match: both (a rule name matches its family: disk:/var).
    continued = parse_notify(
        {c: {"url": "json://127.0.0.1:9/x"} for c in ("pager", "chat", "mail")},
        [{"kinds": ["threshold"], "channels": ["chat"], "continue": True}, ROUTES[2]],
        None,
    )
    assert continued.channels_for(alert("warning", "disk:/var")) == ["chat", "mail"]
    # Globs on hosts; a warning on db-1 is not the first route's.
    assert settings.channels_for(alert("critical", host="db-12")) == ["pager"]
    assert settings.channels_for(alert("critical", host="web-3")) == ["pager", "chat", "mail"]


def test_the_default_route_is_every_channel_unless_set() -> None:
    unmatched = alert("warning", "memory", "web-3")
    assert routed().channels_for(unmatched) == ["pager", "chat", "mail"]
    assert routed(default=["chat"]).channels_for(unmatched) == ["chat"]
    assert routed(default=[]).channels_for(unmatched) == []


def test_kinds_of_rules() -> None:
    assert rules.HOST_DOWN == "host_down" and kind_of(rules.HOST_DOWN) == "host_down"
    assert kind_of("container_restarts:web-1") == "container"
    assert kind_of("unit_failed:backup.service") == "unit"
    assert kind_of("anomaly:cpu.percent") == "anomaly"
    assert kind_of("temperature:coretemp/Package id 0") == "temperature"
    assert kind_of("disk_health:/dev/sda") == "disk_health"
    assert [kind_of(r) for r in ("cpu", "memory", "disk:/var", "load")] == ["threshold"] * 4


def documented(tmp_path: Path, heading: str) -> Config:
    """The settings of the first TOML example after `heading` in docs/alerts.md, loaded."""
    section = (ROOT / "docs" / "alerts.md").read_text().split(heading, 1)[1]
    path = tmp_path / "dashboard.toml"
    path.write_text(section.split("```toml\n", 1)[1].split("```", 1)[0])
    return load(["--config", str(path)], environ={})


def test_the_documented_example_is_read_as_documented(tmp_path: Path) -> None:
    settings = documented(tmp_path, "## Channels and routes").notify
    assert list(settings.channels) == ["pager", "chat", "mail"]
    assert settings.channels["chat"].message == "short" and settings.default == ("chat",)
    assert settings.channels_for(alert("critical", host="db-1")) == ["pager", "mail"]
    assert settings.channels_for(alert("warning", "unit_failed:x", "web-3")) == ["chat"]
    assert settings.channels_for(alert("warning", "disk:/var", "web-3")) == ["mail"]
    assert settings.channels_for(alert("warning", "memory", "web-3")) == ["chat"]


# ---------------------------------------------------------------- bad settings


@pytest.mark.parametrize(
    ("settings", "named", "says"),
    [
        ({"notify_route": [{"channels": ["pagr"]}], "notify": {"pager": {"url": "json://h/x"}}},
         "notify_route[1].channels", "names channel 'pagr'"),
        ({"notify_default": ["chat"]}, "notify_default", "names channel 'chat'"),
        ({"notify": {"pager": {"url": f"no-scheme-{PASSWORD}"}}}, "notify.pager.url",
         "an Apprise URL"),
        ({"notify": {"pager": {"timeout": 5}}}, "notify.pager.url", "missing"),
        ({"notify": {"pager": {"url": "json://h/x", "retry": 1}}}, "notify.pager.retry",
         "unknown"),
        ({"notify": {"pa ger": {"url": "json://h/x"}}}, "notify.pa ger", "letters, digits"),
        ({"notify": {"p": {"url": "json://h/x"}},
          "notify_route": [{"channels": ["p"], "severity": ["resolved"]}]},
         "notify_route[1].severity", "a resolution goes where its firing went"),
        ({"notify": {"p": {"url": "json://h/x"}},
          "notify_route": [{"channels": ["p"], "kinds": ["containers"]}]},
         "notify_route[1].kinds", "host_down, threshold"),
        ({"notify": {"p": {"url": "json://h/x"}}, "notify_route": [{"hosts": ["db-1"]}]},
         "notify_route[1].channels", "missing"),
        ({"notify": {"p": {"url": "json://h/x"}},
          "notify_route": [{"channels": ["p"], "continue": "yes"}]},
         "notify_route[1].continue", "true or false"),
    ],
)  # fmt: skip
def test_bad_notify_settings_stop_the_start_naming_them(
    tmp_path: Path, settings: dict[str, Any], named: str, says: str
) -> None:
    message = refusal(tmp_path, settings)
    assert f"setting '{named}" in message and says in message
    assert "\n" not in message and PASSWORD not in message


def refusal(tmp_path: Path, settings: dict[str, Any]) -> str:
    """The one line that a settings file with `settings` stops the start with."""
    path = write_toml(tmp_path / "dashboard.toml", **settings)
    with pytest.raises(ConfigError) as caught:
        load(["--config", str(path)], environ={})
    return str(caught.value)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (f"nosuchservice://dash:{PASSWORD}@127.0.0.1/", "Apprise knows no such scheme"),
        (f"mailto://dash:{PASSWORD}@", "its form is wrong"),
    ],
)
def test_a_url_apprise_cannot_read_stops_the_app(tmp_path: Path, url: str, says: str) -> None:
    config = Config(
        async_mode="threading",
        log_dir=str(tmp_path / "logs"),
        data_dir=str(tmp_path / "data"),
        notify=parse_notify({"pager": {"url": url}}, None, None),
    )
    with pytest.raises(ConfigError) as caught:
        create_app(config)
    message = str(caught.value)
    assert message.startswith("setting 'notify.pager.url' (")
    assert says in message and PASSWORD not in message and "\n" not in message


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"notify": {"pager": {"url": f"nosuchservice://dash:{PASSWORD}@127.0.0.1/"}}},
         "notify.pager.url"),
        ({"notify": {"pager": {"url": "json://127.0.0.1:9/x"}},
          "notify_route": [{"severity": ["critical"], "channels": ["pagr"]}]},
         "notify_route[1].channels"),
    ],
)  # fmt: skip
def test_the_real_server_refuses_them_with_one_line(
    tmp_path: Path, settings: dict[str, Any], named: str
) -> None:
    path = write_toml(tmp_path / "dashboard.toml", **settings)
    done = run_server_command(
        "--config",
        str(path),
        "--port",
        "9",
        "--log-dir",
        str(tmp_path / "logs"),
        "--data-dir",
        str(tmp_path / "data"),
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"setting '{named}" in lines[0], done.stderr
    assert PASSWORD not in done.stderr + done.stdout


# ---------------------------------------------------------------- messages


def test_a_message_says_level_rule_host_value_threshold_and_since() -> None:
    fired = alert("critical", host="db-1", ts=1_800_000_000.0, previous="warning")
    message = compose(fired, since=1_800_000_000.0 - 300)
    assert message.title == "CRITICAL cpu on db-1"
    assert message.short.startswith("cpu.percent = 97.5 (threshold 90) since ")
    for text in (
        "Value:        97.5",
        "Threshold:    90 (critical)",
        "Was:          warning",
        "Firing since:",
        "(5 min)",
        "Host:         db-1\nRule:         cpu (threshold)",
    ):
        assert text in message.full
    resolved = compose(
        {
            **fired,
            "level": "ok",
            "previous": "critical",
            "value": 12.0,
            "threshold": 85.0,
            "ts": 1_800_000_600.0,
        },
        since=1_800_000_000.0,
    )
    assert resolved.title == "RESOLVED cpu on db-1"
    assert "below 85; it was critical for 10 min" in resolved.short
    down = {"rule": "host_down", "metric": "host.last_sample_age", "level": "critical",
            "previous": "ok", "value": None, "threshold": 30.0, "ts": 1_800_000_000.0,
            "host": "web-3"}  # fmt: skip
    assert compose(down).title == "CRITICAL host_down on web-3"
    assert compose(down).short.startswith("host.last_sample_age = unknown (threshold 30)")
    assert "Host:         web-3\nRule:         host_down\n" in compose(down).full
    evidence = compose(fired, evidence=[
        ("Top processes", ["postgres 91 %", "backup 5 %"]),
        ("Last lines of app", ["ERROR pool exhausted"]),
        (LINK, ["https://dash.example.net/host/db-1?at=1800000000"]),
    ])  # fmt: skip
    assert "Top processes\n  postgres 91 %\n  backup 5 %\n" in evidence.full
    assert "Last lines of app\n  ERROR pool exhausted" in evidence.full
    # A chat's: the first line of the first section, and the link; the rest is the email's.
    link = "https://dash.example.net/host/db-1?at=1800000000"
    assert evidence.short.splitlines()[1:] == ["Top processes: postgres 91 %", link]


# ---------------------------------------------------------------- delivery, in process


def test_the_email_reaches_a_real_smtp_server(relay: MailReceiver) -> None:
    sent = dispatcher({"mail": {"url": mail_url(relay)}})
    try:
        sent.send(alert("critical", host="db-1"))
        wait_until(lambda: relay.messages, timeout=10, what="the email")
    finally:
        sent.stop()
    assert relay.logins == ["dash"]  # it logged in with the URL's password
    text = relay.text(relay.messages[0])
    assert relay.messages[0]["Subject"] == "CRITICAL cpu on db-1"
    assert relay.messages[0]["To"] == "ops@example.net"
    for part in (
        "Metric:       cpu.percent",
        "Value:        97.5",
        "Threshold:    90 (critical)",
        "Since:        ",
        "Host:         db-1",
    ):
        assert part in text


def test_json_and_ntfy_receivers_get_the_short_text(receivers: dict[str, Receiver]) -> None:
    sent = dispatcher(
        {
            "chat": {"url": json_url(receivers["chat"])},
            "ntfy": {"url": json_url(receivers["ntfy"], "ntfy") + "-topic"},
        }
    )
    try:
        sent.send(alert("warning", host="web-3"))
        wait_until(lambda: receivers["chat"].bodies and receivers["ntfy"].bodies, timeout=10)
    finally:
        sent.stop()
    chat, ntfy = receivers["chat"].bodies[0], receivers["ntfy"].bodies[0]
    assert (chat["title"], chat["type"]) == ("WARNING cpu on web-3", "warning")
    assert chat["message"].startswith("cpu.percent = 97.5 (threshold 90) since ")
    assert (ntfy["topic"], ntfy["title"]) == ("hook-topic", "WARNING cpu on web-3")
    assert ntfy["message"] == chat["message"]


def test_resolutions_go_where_their_firing_went(receivers: dict[str, Receiver]) -> None:
    """A warning goes to the chat, its escalation to the pager: the resolution to both,
    though no route sends resolutions; a channel with send_resolved = false gets none."""
    routes = [
        {"severity": ["critical"], "channels": ["pager", "quiet"]},
        {"severity": ["warning"], "channels": ["chat"]},
    ]
    sent = dispatcher(
        {
            "chat": {"url": json_url(receivers["chat"])},
            "pager": {"url": json_url(receivers["pager"])},
            "quiet": {"url": json_url(receivers["ntfy"]), "send_resolved": False},
        },
        routes,
    )
    try:
        sent.send(alert("warning", previous="ok"))
        sent.send(alert("critical", previous="warning"))
        sent.send(alert("ok", previous="critical", value=3.0, threshold=85.0))
        sent.send(alert("ok", rule="memory"))  # never fired here: nowhere
        wait_until(
            lambda: len(receivers["chat"].bodies) == 2 and len(receivers["pager"].bodies) == 2,
            timeout=10,
        )
        time.sleep(0.3)
    finally:
        sent.stop()
    titles = {n: [b["title"] for b in receivers[n].bodies] for n in ("chat", "pager", "ntfy")}
    assert titles == {
        "chat": ["WARNING cpu on db-1", "RESOLVED cpu on db-1"],
        "pager": ["CRITICAL cpu on db-1", "RESOLVED cpu on db-1"],
        "ntfy": ["CRITICAL cpu on db-1"],
    }
    assert receivers["pager"].bodies[1]["type"] == "success"


def test_a_failing_channel_is_said_once_and_its_recovery_once(
    receivers: dict[str, Receiver], caplog: pytest.LogCaptureFixture
) -> None:
    flaky = receivers["error"]
    sent = dispatcher(
        {
            "flaky": {"url": json_url(flaky) + "?token=" + PASSWORD, "retries": 1},
            "chat": {"url": json_url(receivers["chat"])},
        }
    )
    sent.deliveries["flaky"].backoff = 0.05
    try:
        with caplog.at_level("WARNING", logger="dashboard.notify"):
            for rule in ("cpu", "memory", "load"):
                sent.send(alert("warning", rule=rule))
            wait_until(lambda: sent.stats()["flaky"]["failed"] == 3, timeout=10)
            assert flaky.attempts == 6  # each message: a try and a retry
            assert sent.stats()["flaky"]["up"] == 0 and sent.stats()["chat"]["up"] == 1
            (problem,) = sent.problems()
            assert problem.startswith("notification channel flaky (json://) failing since ")
            flaky.mode = "ok"
            sent.send(alert("warning", rule="swap"))
            wait_until(lambda: sent.stats()["flaky"]["delivered"] == 1, timeout=10)
    finally:
        sent.stop()
    lines = [r.getMessage() for r in caplog.records if r.name == "dashboard.notify"]
    assert lines == [
        lines[0],
        "notify channel flaky (json://) delivers again, after 3 failed messages",
    ]
    assert lines[0].startswith("notify channel flaky (json://) is failing: ")
    assert "500" in lines[0] and "said once" in lines[0]
    assert sent.problems() == [] and sent.stats()["flaky"]["up"] == 1
    assert len(receivers["chat"].bodies) == 4  # the other channel got each one
    assert all(PASSWORD not in line for line in lines)


def test_a_dripping_receiver_is_given_up_at_the_deadline() -> None:
    """A header line a second: no socket read ever waits its timeout, but the attempt
    as a whole is given up at the channel's; the next is refused while it still runs."""
    drip = Receiver("drip")
    settings = parse_notify({"drip": {"url": json_url(drip), "timeout": 1.5}}, None, None)
    channel = open_channels(dict(settings.channels))["drip"]
    try:
        started = time.monotonic()
        with pytest.raises(DeliveryError, match=r"no answer within 1\.5 s"):
            channel.deliver(compose(alert()))
        assert time.monotonic() - started < 2.5
        with pytest.raises(DeliveryError, match="still runs"):
            channel.deliver(compose(alert()))
    finally:
        drip.close()  # ends the receiver's drip: the given-up attempt ends with it
    wait_until(lambda: channel._idle.is_set(), timeout=10, what="the given-up attempt ended")


def test_the_agent_never_imports_apprise(tmp_path: Path) -> None:
    """An agent reads the same settings file (with channels declared): it checks their
    shape, and never loads Apprise, which only the hub's sending uses."""
    path = write_toml(
        tmp_path / "dashboard.toml", notify={"pager": {"url": "json://127.0.0.1:9/x"}}
    )
    code = (
        "import sys, server.__main__ as m, server.fleet.agent; "
        f"m.load(['--config', {str(path)!r}]); "
        "print(sorted(n for n in sys.modules if n.split('.')[0] == 'apprise'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# ---------------------------------------------------------------- the real server


def families(url: str) -> dict[str, Any]:
    text = requests.get(url + "/metrics", timeout=5).text
    return {f.name: f for f in text_string_to_metric_families(text)}


def channel_values(url: str, family: str, **labels: str) -> dict[str, float]:
    found = families(url).get(family)
    samples = found.samples if found is not None else []
    return {
        s.labels["channel"]: s.value
        for s in samples
        if all(s.labels.get(k) == v for k, v in labels.items())
    }


@pytest.mark.e2e
@pytest.mark.parametrize("mode", ["eventlet", "threading"])
def test_channels_deliver_while_others_hang_or_fail(
    mode: str, tmp_path: Path, receivers: dict[str, Receiver], relay: MailReceiver
) -> None:
    """The server's own alerts (levels at 0.1: a running machine passes them) go to an
    email relay, a JSON chat, an ntfy, a receiver that hangs, one that answers 500 and a
    relay that is not there. The good ones get theirs promptly, the 1 Hz keeps its
    pace, each failing channel is said once in the log and on /metrics, and the relay's
    password is never in a log."""
    low = {"warning": 0.1, "critical": 1000, "for_seconds": 0, "clear_seconds": 3600}
    config = write_toml(
        tmp_path / "dashboard.toml",
        alerts={"cpu": low, "memory": low, "disk": low},
        notify_group_wait=0,  # each at once: grouping is tests/test_notify_flow.py's
        notify={
            "mail": {"url": mail_url(relay)},
            "chat": {"url": json_url(receivers["chat"])},
            "ntfy": {"url": json_url(receivers["ntfy"], "ntfy")},
            "hang": {"url": json_url(receivers["hang"]), "timeout": 1, "retries": 0},
            "error": {"url": json_url(receivers["error"]), "retries": 1},
            "gone": {"url": mail_url(None, port=9), "timeout": 2, "retries": 0},
        },
    )
    server = ServerProcess(tmp_path / "logs", "--async-mode", mode, "--config", str(config))
    client = RecordingClient()
    try:
        server.start()
        client.connect(server.url)
        wait_until(
            lambda: receivers["chat"].bodies and receivers["ntfy"].bodies,
            timeout=8,
            what="the chat's and ntfy's first messages",
        )
        titles = [b["title"] for b in receivers["chat"].bodies]
        assert any(
            t.startswith("WARNING cpu on ")
            for t in titles + [b["title"] for b in receivers["ntfy"].bodies]
        )
        wait_until(lambda: relay.messages, timeout=10, what="the first email")
        mail = relay.text(relay.messages[0])
        assert mail.startswith("WARNING ") and "Threshold:    0.1 (warning)" in mail
        assert "Value:" in mail and "Since:" in mail
        # Every failing channel has failed more than once, said once.
        wait_until(
            lambda: all(
                channel_values(server.url, "dashboard_notify_messages", outcome="failed").get(c, 0)
                >= 2
                for c in ("hang", "error", "gone")
            ),
            timeout=30,
            what="two failed messages on each failing channel",
        )
        up = channel_values(server.url, "dashboard_notify_channel_up")
        assert up == {"mail": 1, "chat": 1, "ntfy": 1, "hang": 0, "error": 0, "gone": 0}
        health = requests.get(server.url + "/healthz", timeout=5).json()
        assert health["status"] == "degraded"
        assert sum("notification channel" in line for line in health["degraded"]) == 3
        # The 1 Hz kept its pace throughout.
        client.wait_for("metrics", count=len(client.received("metrics")) + 3, timeout=8)
        gaps = [b - a for a, b in itertools.pairwise(client.times("metrics"))]
        assert max(gaps) < 1.6, gaps
        seqs = [m["seq"] for m in client.received("metrics")]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    finally:
        client.close()
        server.stop()
    log = (tmp_path / "logs" / "dashboard.log").read_text()
    for name in ("hang (json://)", "error (json://)", "gone (mailto://)"):
        assert log.count(f"notify channel {name} is failing") == 1, log
    assert PASSWORD not in log + server.output()


@pytest.mark.e2e
def test_routes_send_a_critical_on_db1_to_the_pager_and_a_warning_on_web3_to_the_chat(
    tmp_path: Path, receivers: dict[str, Receiver]
) -> None:
    """Two stand-in agents, db-1 at 97 % CPU and web-3 at 60 %: the hub's routes send
    db-1's critical to the pager alone, web-3's warning to the chat alone."""
    cpu = {"warning": 50, "critical": 90, "for_seconds": 0, "hosts": ["db-1", "web-3"]}
    config = write_toml(
        tmp_path / "dashboard.toml",
        alerts={"cpu": cpu},
        notify={"pager": {"url": json_url(receivers["pager"])},
                "chat": {"url": json_url(receivers["chat"])}},
        notify_route=[{"hosts": ["db-*"], "severity": ["critical"], "channels": ["pager"]},
                      {"severity": ["warning"], "hosts": ["web-*"], "channels": ["chat"]}],
        notify_default=[],
        notify_group_wait=0,
    )  # fmt: skip
    hub = ServerProcess(tmp_path / "logs", "--config", str(config))
    tokens = AgentTokens(str(hub.data_dir))
    db, web = tokens.add("db-1"), tokens.add("web-3")
    busy = {"cpu": {"percent": 97.0, "per_core": [97.0, 97.0]}}
    warm = {"cpu": {"percent": 60.0, "per_core": [60.0, 60.0]}}
    try:
        hub.start()
        with stand_in_agent(hub.url, db, busy), stand_in_agent(hub.url, web, warm):
            wait_until(
                lambda: receivers["pager"].bodies and receivers["chat"].bodies,
                timeout=30,
                what="the pager's and the chat's messages",
            )
            time.sleep(2)  # what else might come
    finally:
        hub.stop()
    pager = [b["title"] for b in receivers["pager"].bodies]
    chat = [b["title"] for b in receivers["chat"].bodies]
    assert pager == ["CRITICAL cpu on db-1"]
    assert chat == ["WARNING cpu on web-3"]
    assert receivers["pager"].bodies[0]["message"].startswith("cpu.percent = 97 (threshold 90)")
