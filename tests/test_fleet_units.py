"""server/fleet/ in-process: tokens, a host's state on a fake clock, sample checks, the buffer."""

from __future__ import annotations

import dataclasses
import logging
import os
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

import server
from server.alerts.notify import AlertNotifier
from server.alerts.rules import AlertEngine
from server.alerts.settings import parse_settings
from server.alerts.webhooks import WebhookSender
from server.app import create_app
from server.config import Config
from server.fleet import hosts
from server.fleet.agent import Link
from server.fleet.hosts import Fleet, Host, is_older
from server.fleet.hub import protocol_refusal, sample_problem
from server.fleet.protocol import MAX_MESSAGE, OLDEST_PROTOCOL, PROTOCOL
from server.fleet.tokens import AgentTokens
from server.state import current_state
from server.wire import compact_json
from testkit.serverproc import run_server_command
from testkit.wait import wait_until


def test_tokens_are_shown_once_and_kept_as_hashes(tmp_path: Path) -> None:
    tokens = AgentTokens(str(tmp_path))
    token = tokens.add("web-1")
    assert tokens.host_of(token) == "web-1"
    text = (tmp_path / "agents.json").read_text()
    assert token not in text and "web-1" in text
    assert stat.S_IMODE(os.stat(tmp_path / "agents.json").st_mode) == 0o600
    assert tokens.host_of(token[:-1] + "x") is None and tokens.host_of(None) is None
    with pytest.raises(ValueError, match="exists"):
        tokens.add("web-1")
    with pytest.raises(ValueError, match="name"):
        tokens.add("../etc")
    other = AgentTokens(str(tmp_path))  # the hub's copy sees the removal after a reload
    tokens.remove("web-1")
    time.sleep(0.01)
    os.utime(tmp_path / "agents.json")
    assert other.reload() and other.host_of(token) is None


def test_the_agents_commands(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return run_server_command(*args, "--data-dir", str(tmp_path))

    added = run("add-agent", "db-1")
    assert added.returncode == 0 and len(added.stdout.strip()) >= 40
    assert "shown once" in added.stderr
    assert run("list-agents").stdout.split() == ["db-1"]
    assert run("add-agent", "db-1").returncode == 2
    assert run("remove-agent", "db-1").returncode == 0
    assert run("list-agents").stdout.strip() == ""
    assert run("remove-agent", "db-1").returncode == 2


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_host(clock: Clock, host_id: str = "web-1") -> Host:
    engine = AlertEngine(parse_settings(None), interval=1.0, cores=1, host=host_id)
    notifier = AlertNotifier(engine, lambda e, d: None, [WebhookSender([])], host=host_id)
    return Host(host_id, notifier, interval=1.0, history_seconds=60, clock=clock)


def test_a_host_goes_stale_then_down_and_back(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    host = make_host(clock)
    events: list[tuple[str, Any, str]] = []
    local = make_host(clock, "hub")
    fleet = Fleet(local, lambda i: make_host(clock, i), lambda e, d, r: events.append((e, d, r)))
    fleet.hosts["web-1"] = host
    host.link(True)
    host.take({"ts": 1.0, "cpu": {"percent": 5.0}}, lambda s: None)
    fleet.judge()
    assert host.state == "ok"
    clock.now += 3.5
    fleet.judge()
    assert host.state == "stale"
    host.link(False)  # the link closes: down 10 s later
    clock.now += 10
    with caplog.at_level(logging.ERROR, logger="dashboard.alerts"):
        fleet.judge()
    assert host.state == "down"
    assert "host_down" in host.alerts.active
    assert "alert host_down CRITICAL" in caplog.text and "on host web-1" in caplog.text
    states = [
        d["state"]
        for e, d, r in events
        if e == "host_state" and r == "fleet" and d["host"] == "web-1"
    ]
    assert states == ["ok", "stale", "down"]
    host.link(True)
    host.take({"ts": 20.0, "cpu": {"percent": 5.0}}, lambda s: None)
    fleet.judge()
    assert host.state == "ok" and "host_down" not in host.alerts.active
    summary = fleet.summary()
    assert [t["id"] for t in summary["hosts"]] == ["hub", "web-1"]  # the hub: no sample, down
    assert summary["counts"] == {"down": 1, "stale": 0, "crit": 0, "warn": 0, "ok": 1}


def test_a_replay_fills_the_ring_in_order_once() -> None:
    host = make_host(Clock())
    published: list[float] = []
    for ts in (1.0, 2.0, 5.0):
        assert host.take({"ts": ts}, lambda s: published.append(s["ts"]))
    for ts in (3.0, 4.0, 2.0):  # late ones, and one it has
        assert not host.take({"ts": ts}, lambda s: published.append(s["ts"]))
    assert [s["ts"] for s in host.history()] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert published == [1.0, 2.0, 5.0]  # only live samples go to the pages


@pytest.mark.parametrize(
    ("sample", "problem"),
    [
        ({"ts": "now"}, "ts"),
        ({"ts": 1.0}, "ts"),  # older than any buffer
        ({"ts": "T", "extra": 1}, "sample.extra is not a key the contract knows"),
        ({"seq": 1}, "sample.ts is missing"),
        ({"ts": "T", "seq": "one"}, "seq"),
        ({"ts": "T", "cpu": {"percent": "high"}, "seq": 1}, "cpu.percent"),
        ({"ts": "T", "disks": [{"mount": "/", "percent": "x"}]}, "disks.0.percent"),
        ({"ts": "T", "processes": [{"pid": 1}] * 101}, "processes"),
        ({"ts": "T", "load": [1, 2, 3, 4]}, "load"),
    ],
)
def test_sample_problems(sample: dict[str, Any], problem: str) -> None:
    now = time.time()
    sample = {k: (now if v == "T" else v) for k, v in sample.items()}
    found = sample_problem(sample, now)
    assert found is not None
    assert problem in found


def test_a_good_sample_has_no_problem() -> None:
    import random

    from testkit.synthetic import synthetic_sample

    sample = synthetic_sample(time.time(), 7, random.Random(1))
    sample["processes"] = [{"pid": 1, "name": "x", "cpu_percent": 1.0, "memory_percent": 0.1}]
    assert sample_problem(sample, time.time()) is None


def test_the_agent_buffer_is_bounded_and_says_what_it_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = Config(
        hub_url="http://127.0.0.1:9", hub_token="t" * 43, agent_buffer_seconds=10, interval=1.0
    )
    link = Link(config, {"hostname": "x"})
    with caplog.at_level(logging.WARNING, logger="dashboard.agent"):
        for i in range(15):
            link.add("metrics", {"ts": float(i), "seq": i + 1, "server": {"cpu": 1}})
    assert [s["ts"] for s in link.buffer] == [float(i) for i in range(5, 15)]
    assert all("server" not in s for s in link.buffer)  # the hub's own cost is not sent
    assert all(isinstance(s["mono"], float) for s in link.buffer)  # the hub places it by this
    assert link.dropped == 5
    assert "5 oldest samples dropped" in caplog.text or "1 oldest samples dropped" in caplog.text
    assert link._answered(list(link.buffer)[:4], {"ts": 8.0, "seq": 9}) == 0
    assert [s["ts"] for s in link.buffer] == [float(i) for i in range(9, 15)]


def test_a_stopping_agent_keeps_its_buffer_for_the_next_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the hub has not acknowledged goes to data_dir at stop and first at the next
    start, with its numbers (the hub's store keeps a sample once by its number), and
    the next numbers go on from them. After a reboot `mono` means nothing: left out."""
    from server.fleet import agent

    config = Config(hub_url="http://127.0.0.1:9", hub_token="t" * 43, interval=1.0)
    path = str(tmp_path / agent.BUFFER_FILE)
    old = Link(config, {"hostname": "x"})
    for i in range(6):
        old.add("metrics", {"ts": 1000.0 + i, "seq": 99, "containers": {"items": []}})
    assert [s["seq"] for s in old.buffer] == [1, 2, 3, 4, 5, 6]  # the link's own numbers
    assert old._answered(list(old.buffer)[:2], {"ts": 1001.0, "seq": 2}) == 0
    old.save(path)
    assert os.stat(path).st_mode & 0o777 == 0o600

    new = Link(config, {"hostname": "x"})
    new.restore(path)
    new.add("metrics", {"ts": 1006.0, "seq": 1})
    assert [(s["ts"], s["seq"]) for s in new.buffer] == [(1002.0 + i, 3 + i) for i in range(5)]
    assert all("mono" in s and "containers" not in s for s in new.buffer)  # of the moment
    assert not os.path.exists(path)  # sent once, not again at the start after

    new.save(path)
    monkeypatch.setattr(agent, "boot_id", lambda: "another boot")
    rebooted = Link(config, {"hostname": "x"})
    rebooted.restore(path)
    assert [s["seq"] for s in rebooted.buffer] == [3, 4, 5, 6, 7]
    assert not any("mono" in s for s in rebooted.buffer)  # placed by `ts` instead
    path_of_garbage = tmp_path / "bad.json"
    path_of_garbage.write_text("[1, {")
    Link(config, {"hostname": "x"}).restore(str(path_of_garbage))  # logged, not raised


def test_a_refused_batch_is_kept_and_sent_again_or_dropped_by_its_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A passing reason (a full disk at the hub): kept, backed off, logged once a
    minute with a count. A permanent one (shape): dropped and counted. The buffer
    goes by seq: a clock that stepped back (ts smaller) changes nothing."""
    config = Config(hub_url="http://127.0.0.1:9", hub_token="t" * 43, interval=1.0)
    link = Link(config, {"hostname": "x"})
    for i in range(6):
        link.add("metrics", {"ts": 1000.0 - 100 * (i >= 3) + i, "seq": i + 1})
    batch = list(link.buffer)[:3]
    full = {"error": "the hub cannot store samples now: disk full", "reason": "store",
            "retry": True}  # fmt: skip
    with caplog.at_level(logging.ERROR, logger="dashboard.agent"):
        waits = [link._answered(batch, full) for _ in range(5)]
    assert len(link.buffer) == 6 and link.sent == 0  # nothing forgotten, the same go again
    assert 0.5 <= waits[0] <= 1.5 and waits[-1] >= 0.5 * 15  # backed off, to at most 15 s
    assert link.refused == {"store": 5}
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(lines) == 1 and "1 batch(es)" in lines[0] and "sending them again" in lines[0]
    assert link._answered(batch, {"ts": 1002.0, "seq": 3}) == 0  # the reason passed
    assert [s["seq"] for s in link.buffer] == [4, 5, 6] and link._retry_delay == 1.0
    rest = list(link.buffer)
    shaped = {"ts": 905.0, "seq": 6, "refused": 1, "reason": "shape", "error": "x", "retry": False}
    assert link._answered(rest, shaped) == 0
    assert not link.buffer and link.refused == {"store": 5, "shape": 1}


def test_a_fleet_of_one_is_judged_after_each_tick_and_when_the_sampler_stalls(
    config: Config,
) -> None:
    app, _ = create_app(dataclasses.replace(config, interval=0.2))
    with app.app_context():
        state = current_state()
    local = state.fleet.local
    judged: list[float] = []
    real_judge = state.fleet.judge

    def counting_judge() -> None:
        judged.append(time.monotonic())
        real_judge()

    state.fleet.judge = counting_judge  # type: ignore[method-assign]
    state.start()
    try:
        wait_until(lambda: len(judged) >= 5, timeout=5, what="five judgements")
        ticks, count = state.sampler.ticks, len(judged)
        assert abs(count - ticks) <= 2  # once a tick, not on a clock of its own
        assert local.state == "ok"
        state.sampler.stop()  # the sampler stalls: the judge goes on, and says so
        stalled_at = len(judged)
        wait_until(lambda: local.state == "stale", timeout=5, what="the local host stale")
        assert len(judged) - stalled_at >= 2  # judged with no tick to wait for
    finally:
        state.stop()


def test_samples_carry_mono_only_to_a_hub_that_asked_for_the_clocks() -> None:
    """An older hub refuses keys it does not know: `mono` goes once the hub has asked."""
    config = Config(hub_url="http://127.0.0.1:9", hub_token="t" * 43, interval=1.0)
    link = Link(config, {"hostname": "x"})
    for i in range(3):
        link.add("metrics", {"ts": 1000.0 + i, "seq": i + 1})
    assert all("mono" in s for s in link.buffer)  # kept with it
    assert [s.get("mono") for s in link._next_batch()] == [None] * 3
    clocks = link._on_clock({"ts": 1.0})
    assert isinstance(clocks["ts"], float) and isinstance(clocks["mono"], float)
    assert all(isinstance(s["mono"], float) for s in link._next_batch())


def test_a_suspended_agents_monotonic_clock_is_placed_again_at_once() -> None:
    from server.fleet.clock import LinkClock

    clock = LinkClock()
    for i in range(8):  # steady: the agent's monotonic clock 1,000 s behind the hub's
        hub = 2000.0 + 30 * i
        clock.add(hub, hub + 0.002, {"ts": hub + 0.001, "mono": hub - 1000 + 0.001})
    assert clock.mono_offset is not None and abs(clock.mono_offset - 1000) < 0.01
    # Suspended 120 s: its monotonic clock did not move meanwhile, the hub's did.
    hub = 2400.0
    clock.add(hub, hub + 0.05, {"ts": hub + 0.025, "mono": hub - 1120 + 0.025})
    assert abs(clock.mono_offset - 1120) < 0.05  # not the older, shorter round trips
    assert clock.to_hub({"ts": 0, "mono": 1300.0}) == round(1300.0 + clock.mono_offset, 3)


def test_a_resolution_goes_out_past_the_alert_budget() -> None:
    from server.alerts.notify import CHANGES_PER_MINUTE, AlertNotifier
    from server.alerts.rules import AlertEngine
    from server.alerts.settings import parse_settings

    sent: list[dict[str, Any]] = []

    class Hooks:
        def send(self, alert: dict[str, Any]) -> None:
            sent.append(alert)

    engine = AlertEngine(parse_settings({}), interval=1.0, cores=1, host="h")
    notifier = AlertNotifier(engine, lambda e, d: None, [Hooks()], "h")
    fired = {"rule": "cpu", "metric": "cpu.percent", "level": "critical", "previous": "ok",
             "value": 99, "threshold": 90, "ts": 1.0}  # fmt: skip
    notifier.tell(dict(fired))
    for i in range(CHANGES_PER_MINUTE + 5):  # another rule flapping past the budget
        notifier.tell({**fired, "rule": f"disk:/m{i}", "level": "warning"})
    notifier.tell({**fired, "level": "ok", "previous": "critical"})
    assert sent[-1]["rule"] == "cpu" and sent[-1]["level"] == "ok"  # closed where it opened
    assert notifier.held > 0


def test_the_hubs_clock_ask_before_the_connect_handler_still_counts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The hub asks for the clocks as the link opens; that ask may be handled before the
    agent's own connect handler. Its samples carry `mono` from then on (they went
    without it until the next ask, 30 s later, and a clock stepped 5 min ahead in
    between was refused); a lost link forgets it (the next hub may be an older one)."""
    config = Config(hub_url="http://127.0.0.1:9", hub_token="t" * 43, interval=1.0)
    link = Link(config, {"hostname": "x"})
    monkeypatch.setattr(link.sio, "emit", lambda *args, **kwargs: None)
    link.add("metrics", {"ts": 1.0, "seq": 1})
    assert "mono" not in link._next_batch()[0]  # not asked yet: an older hub
    link._on_clock({"ts": 1.0})
    link._on_connect()
    assert "mono" in link._next_batch()[0]
    link._on_disconnect("transport close")
    assert "mono" not in link._next_batch()[0]


def test_a_replay_of_big_samples_comes_in_batches_that_fit_one_message() -> None:
    """Samples with sensors (~3 KB each here) after an outage: fewer than MAX_BATCH a
    batch, each within one message; the newest's container table in a batch of its own
    size, never past the cap."""
    config = Config(hub_url="http://127.0.0.1:9", hub_token="t" * 43, interval=1.0)
    link = Link(config, {"hostname": "x"})
    sensors = {"temperatures": [{"sensor": "coretemp", "label": f"Core {k}", "current": 50.0,
                                 "high": 80.0, "critical": 100.0} for k in range(32)]}  # fmt: skip
    for i in range(60):
        link.add("metrics", {"ts": 1000.0 + i, "seq": i + 1, "sensors": sensors})
    rows = [{"name": f"c{k:03d}", "state": "running", "image": "x" * 200} for k in range(200)]
    link.buffer[-1]["containers"] = {"running": 200, "unhealthy": 0, "stopped": 0, "items": rows}
    sent: list[int] = []
    while link.buffer:
        batch = link._next_batch()
        assert len(compact_json(batch)) <= MAX_MESSAGE - 1024
        sent += [s["seq"] for s in batch]
        link._answered(batch, {"ts": batch[-1]["ts"], "seq": batch[-1]["seq"]})
    assert sent == list(range(1, 61))  # all of them, in order, each once


# ---------------------------------------------------------------- versions and protocol


def test_an_agent_older_than_its_hub_says_so_on_its_tile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hosts, "__version__", "0.3.0")
    assert is_older("0.2.0", "0.3.0") and is_older("0.2.9", "0.10.0")
    assert not is_older("0.3.0", "0.3.0") and not is_older("0.4.0.dev1+g1a2b", "0.3.0")
    assert not is_older("0+unknown", "0.3.0") and not is_older("nightly", "0.3.0")
    host = make_host(Clock())
    assert host.agent_version is None and "agent_note" not in host.tile()
    host.static = {"version": "0.2.0"}
    assert host.tile()["agent_note"] == "agent 0.2.0, older than the hub (0.3.0)"
    host.static = {"version": "0.3.0"}
    assert host.agent_version == "0.3.0" and "agent_note" not in host.tile()


@pytest.mark.parametrize(
    ("auth", "refusal"),
    [
        ({"token": "t"}, None),  # 0.2.0 and before: no protocol, speaks 1
        ({"token": "t", "protocol": PROTOCOL, "version": "0.3.0"}, None),
        ({"token": "t", "protocol": PROTOCOL + 1, "version": "9.0.0"},
         f"this agent (9.0.0) speaks link protocol {PROTOCOL + 1} and this hub "
         f"({server.__version__}) at most {PROTOCOL}: upgrade the hub, or install the "
         "hub's version of the agent"),
        ({"token": "t", "protocol": OLDEST_PROTOCOL - 1},
         f"this agent (version unknown) speaks link protocol {OLDEST_PROTOCOL - 1} and this "
         f"hub ({server.__version__}) {OLDEST_PROTOCOL} or later: upgrade the agent to the "
         "hub's version"),
        ({"token": "t", "protocol": "1"}, "the agent's link protocol must be a whole number"),
        ({"token": "t", "protocol": True}, "the agent's link protocol must be a whole number"),
    ],
)  # fmt: skip
def test_the_hub_speaks_the_link_protocols_it_knows(
    auth: dict[str, Any], refusal: str | None
) -> None:
    assert protocol_refusal(auth) == refusal
