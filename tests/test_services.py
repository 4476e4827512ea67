"""systemd's units (server/sampling/services.py): parsed from systemctl's answers captured
on a booted Debian (tests/fixtures/systemd/), read through a stand-in systemctl, checked
at the hub, judged by the alert rules, counted on a tile, exported to /metrics and shown
on the page. The real systemd, with units that fail and loop: tests/test_guest.py."""

from __future__ import annotations

import copy
import json
import logging
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.fleet import schema
from server.sampling import services
from server.sampling.services import (
    MAX_ASKED,
    MAX_UNITS,
    MAX_UNITS_BYTES,
    Services,
    SystemctlError,
    Unit,
    by_unit,
    parse_list,
    parse_show,
    part_of,
    read_units,
    run_systemctl,
    to_ask,
)
from server.state import DashboardState
from server.wire import compact_json
from testkit.wait import wait_until

FIXTURES = Path(__file__).parent / "fixtures" / "systemd"
BROKEN, LOOP, ONCE, SLOW = (f"dash-{n}.service" for n in ("broken", "loop", "once", "slow"))

# What the captured answers make: the sample's `services` on that guest.
CAPTURED: dict[str, Any] = {
    "failed": 1,
    "restarting": 1,
    "activating": 1,
    "ok": 133,  # 151 listed, 15 of them names without a unit file (not-found)
    "units": [
        {"name": BROKEN, "state": "failed", "sub": "failed", "result": "exit-code",
         "restarts": 0},
        {"name": LOOP, "state": "auto-restart", "sub": "auto-restart", "result": "exit-code",
         "restarts": 2},
        {"name": SLOW, "state": "activating", "sub": "start", "result": "success",
         "restarts": 0},
        {"name": ONCE, "state": "active", "sub": "running", "result": "success", "restarts": 1},
    ],
}  # fmt: skip


def _captured() -> tuple[dict[str, Unit], list[str], list[dict[str, str]]]:
    units = parse_list((FIXTURES / "list-units.json").read_bytes())
    asked = to_ask(units)
    return units, asked, parse_show((FIXTURES / "show.txt").read_bytes())


# ---------------------------------------------------------------- parsing


def test_the_captured_list_is_read_the_same_as_json_and_as_a_table() -> None:
    units = parse_list((FIXTURES / "list-units.json").read_bytes())
    assert len(units) == 151
    assert units[BROKEN] == Unit("loaded", "failed", "failed")
    assert units[LOOP] == Unit("loaded", "activating", "auto-restart")
    assert units[SLOW] == Unit("loaded", "activating", "start")
    assert units[ONCE] == Unit("loaded", "active", "running")
    assert units["home.mount"] == Unit("not-found", "inactive", "dead")
    # systemd's escapes stay as they are: the name is the unit's.
    assert units["run-credentials-systemd\\x2dsysusers.service.mount"].active == "active"
    # systemd before 246 prints the table for the same call (it ignores --output=json).
    assert parse_list((FIXTURES / "list-units.txt").read_bytes()) == units


def test_the_captured_answers_make_the_part() -> None:
    units, asked, shown = _captured()
    # Those not ok first (failed, restarting, starting), then every active service.
    assert asked[:3] == [BROKEN, LOOP, SLOW]
    assert ONCE in asked and "dbus.service" in asked and len(asked) == 15
    assert all(a.endswith(".service") for a in asked)
    assert [b["Id"] for b in shown] == asked
    assert part_of(units, by_unit(units, shown, asked)) == CAPTURED
    # Names and states only: none of the descriptions the list carries.
    text = compact_json(part_of(units, by_unit(units, shown, asked)))
    assert "Console Getty" not in text and "D-Bus" not in text


def test_the_newer_state_wins_and_an_alias_is_taken_by_its_place() -> None:
    units = {"a.service": Unit("loaded", "failed", "failed"),
             "b.service": Unit("loaded", "activating", "auto-restart")}  # fmt: skip
    # a was reset between the two calls; b answers under another name (an alias's Id).
    shown = [{"Id": "a.service", "ActiveState": "inactive", "SubState": "dead",
              "Result": "success", "NRestarts": "0"},
             {"Id": "b-alias.service", "ActiveState": "activating", "SubState": "auto-restart",
              "Result": "signal", "NRestarts": "7"}]  # fmt: skip
    part = part_of(units, by_unit(units, shown, ["a.service", "b.service"]))
    assert part == {"failed": 0, "restarting": 1, "activating": 0, "ok": 1, "units": [
        {"name": "b.service", "state": "auto-restart", "sub": "auto-restart",
         "result": "signal", "restarts": 7}]}  # fmt: skip


def test_odd_output_is_no_unit() -> None:
    table = (b"good.service loaded failed failed Good\n"
             b"\xe2\x97\x8f marked.service loaded failed failed A mark before it\n"
             b"bad\x1bname.service loaded failed failed Forged\n"
             b"short line\n")  # fmt: skip
    assert set(parse_list(table)) == {"good.service", "marked.service"}
    rows = [
        {"unit": "x" * 257 + ".service", "load": "loaded", "active": "failed", "sub": "x"},
        {"unit": "ok.service", "load": "loaded", "active": "FAILED\n", "sub": 3},
        "junk",
    ]
    assert parse_list(json.dumps(rows).encode()) == {"ok.service": Unit("loaded", "", "")}
    with pytest.raises(SystemctlError, match="no JSON list"):
        parse_list(b"[{")
    # NRestarts that is no count is unknown, never 0.
    part = part_of({"x.service": Unit("loaded", "failed", "failed")},
                   {"x.service": {"Id": "x.service", "NRestarts": "\uff11\uff12"}})  # fmt: skip
    assert part["units"][0]["restarts"] is None


def test_the_list_is_bounded_worst_first_and_the_counts_cover_every_unit() -> None:
    units = {f"{'f' * 240}{i:04d}.service": Unit("loaded", "failed", "failed")
             for i in range(150)}  # fmt: skip
    units.update({f"s{i:04d}.service": Unit("loaded", "activating", "start") for i in range(300)})
    units.update({f"r{i:04d}.service": Unit("loaded", "active", "running") for i in range(400)})
    asked = to_ask(units)
    assert len(asked) == MAX_ASKED
    assert asked[:150] == sorted(n for n in units if n.startswith("f"))
    shown = [{"Id": n, "NRestarts": "4"} for n in asked]
    part = part_of(units, by_unit(units, shown, asked))
    assert (part["failed"], part["activating"], part["ok"]) == (150, 300, 400)
    listed = part["units"]
    assert 0 < len(listed) <= MAX_UNITS
    assert len(compact_json(listed)) <= MAX_UNITS_BYTES
    assert all(u["state"] == "failed" for u in listed)  # the failed ones first
    assert schema.sample_problem({"ts": time.time(), "services": part}) is None
    units.update({f"g{i:04d}.service": Unit("loaded", "failed", "failed") for i in range(600)})
    assert len(to_ask(units)) == MAX_ASKED  # more not ok than it asks: those alone
    assert not [n for n in to_ask(units) if n.startswith("r")]


# ---------------------------------------------------------------- through systemctl


def _stand_in(tmp_path: Path, body: str) -> Path:
    """A systemctl of our own: `body` as a shell script, each call's arguments recorded."""
    script = tmp_path / "systemctl"
    script.write_text(f'#!/bin/sh\necho "$*" >> {tmp_path}/calls\n{body}\n')
    script.chmod(0o755)
    return script


def test_the_collector_reads_through_systemctl_off_the_tick(tmp_path: Path) -> None:
    script = _stand_in(tmp_path, f'case "$1" in list-units) cat {FIXTURES}/list-units.json;; '
                                 f"show) cat {FIXTURES}/show.txt;; esac")  # fmt: skip
    collector = Services(str(script))
    try:
        assert collector.collect() == {"services": None}  # no reading yet, and none started
        assert not (tmp_path / "calls").exists()
        collector.begin()  # the first tick starts the loop
        assert collector.refreshed.wait(10)
        assert collector.collect() == {"services": CAPTURED}
        assert collector.success
        _, asked, _ = _captured()
        assert (tmp_path / "calls").read_text().splitlines() == [
            "list-units --all --output=json --plain --no-legend --no-pager",
            "show --no-pager -p Id,ActiveState,SubState,Result,NRestarts -- " + " ".join(asked),
        ]
    finally:
        collector.stop()


def test_the_running_services_are_asked_every_few_readings_and_kept_between(
    tmp_path: Path,
) -> None:
    script = _stand_in(tmp_path, f'case "$1" in list-units) cat {FIXTURES}/list-units.json;; '
                                 f"show) cat {FIXTURES}/show.txt;; esac")  # fmt: skip
    part, kept = read_units(str(script), {}, running=True)
    assert part == CAPTURED and kept[ONCE] == {"NRestarts": "1", "Result": "success"}
    # The next readings ask the three units not ok alone (the stand-in answers all 15: the
    # blocks of those not asked are taken by their Id all the same, as newer).
    (tmp_path / "show.txt").write_text(
        "\n\n".join(b for b in (FIXTURES / "show.txt").read_text().split("\n\n")
                    if "Id=dash-" in b and "Id=dash-once" not in b)
    )  # fmt: skip
    script = _stand_in(tmp_path, f'case "$1" in list-units) cat {FIXTURES}/list-units.json;; '
                                 f"show) cat {tmp_path}/show.txt;; esac")  # fmt: skip
    again, kept = read_units(str(script), kept, running=False)
    assert again == CAPTURED  # dash-once's restart, as last asked
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls[-1].endswith(f"-- {BROKEN} {LOOP} {SLOW}")
    # dash-once stopped since: its count is not kept, and it is no longer listed.
    running = '"unit":"dash-once.service","load":"loaded","active":"active","sub":"running"'
    stopped_there = running.replace('"active","sub":"running"', '"inactive","sub":"dead"')
    listed = (FIXTURES / "list-units.json").read_text().replace(running, stopped_there)
    (tmp_path / "list-units.json").write_text(listed)
    script = _stand_in(tmp_path, f'case "$1" in list-units) cat {tmp_path}/list-units.json;; '
                                 f"show) cat {tmp_path}/show.txt;; esac")  # fmt: skip
    stopped, kept = read_units(str(script), kept, running=False)
    assert ONCE not in kept and ONCE not in {u["name"] for u in stopped["units"]}
    assert stopped["ok"] == CAPTURED["ok"]


def test_a_systemctl_that_fails_is_null_and_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    script = _stand_in(tmp_path, "echo 'Failed to connect to bus: No such file or directory' >&2"
                                 "\nexit 1")  # fmt: skip
    collector = Services(str(script))
    try:
        with caplog.at_level(logging.INFO, "dashboard.data"):
            collector.begin()
            assert collector.refreshed.wait(10)
            for _ in range(3):
                assert collector.collect() == {"services": None}
        assert not collector.success
        lines = [r.getMessage() for r in caplog.records if "systemctl" in r.getMessage()]
        assert lines == [
            "cannot read services: SystemctlError: systemctl list-units --all: "
            "Failed to connect to bus: No such file or directory; it is null until "
            "it can be read"
        ]
    finally:
        collector.stop()


def test_a_systemctl_that_hangs_is_killed_with_what_it_started(tmp_path: Path) -> None:
    script = _stand_in(tmp_path, f"sleep 60 & echo $! > {tmp_path}/child\nwait")
    started = time.monotonic()
    with pytest.raises(SystemctlError, match=r"did not answer within 0\.5 s"):
        run_systemctl([str(script), "list-units"], deadline=0.5)
    assert time.monotonic() - started < 5
    child = int((tmp_path / "child").read_text())

    def gone() -> bool:
        try:
            return psutil.Process(child).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    wait_until(gone, timeout=5, interval=0.05, what="the call's child killed with it")


def test_a_systemctl_that_says_too_much_is_cut_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services, "MAX_OUTPUT", 1000)
    script = _stand_in(tmp_path, "head -c 100000 /dev/zero")
    with pytest.raises(SystemctlError, match="said more than 1000 bytes"):
        run_systemctl([str(script), "list-units"])
    with pytest.raises(SystemctlError, match="cannot run"):
        run_systemctl([str(tmp_path / "nowhere"), "list-units"])


def test_where_systemd_does_not_run_nothing_loads_and_nothing_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from server.data import DynamicData

    assert services.find("off", run_dir=str(tmp_path)) is None
    assert services.find("auto", run_dir=str(tmp_path / "absent")) is None
    if os.path.isdir(services.RUN_DIR):
        pytest.skip("systemd runs here: tests/test_guest.py covers a real one")
    # This machine: systemd is not PID 1 (systemctl may be installed all the same).
    ran: list[Any] = []
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: ran.append(a))
    threads_before = {t.name for t in threading.enumerate()}
    data = DynamicData(top_processes=0, services="auto")
    assert "services" not in {c.name for c in data.collectors}
    for _ in range(3):
        assert "services" not in data.sample()
    assert "services" not in data.collector_success()
    assert ran == []
    assert "services" not in {t.name for t in threading.enumerate()} - threads_before


def test_where_systemd_runs_the_setting_finds_systemctl(tmp_path: Path) -> None:
    found = services.find("auto", run_dir=str(tmp_path))  # a run dir that is there
    if found is None:
        pytest.skip("systemctl is not installed here")
    assert found.systemctl.endswith("/systemctl") and found.name == "services"


# ---------------------------------------------------------------- at the hub


def test_the_hub_takes_the_part_and_refuses_what_is_out_of_bounds() -> None:
    good: dict[str, Any] = {"ts": time.time(), "services": copy.deepcopy(CAPTURED)}
    assert schema.sample_problem(good) is None
    assert schema.sample_problem({**good, "services": None}) is None
    unit = CAPTURED["units"][0]
    cases = [
        ("units.0.name", "evil\n2026 INFO forged.service", "name has characters it may not have"),
        ("units.0.name", 'a"} 1\nx{.service', "name has characters it may not have"),
        ("units.0.name", "x" * 257, "name is longer than 256 characters"),
        ("units.0.state", "<b>failed</b>", "state has characters it may not have"),
        ("units.0.state", None, "state is missing"),
        ("units.0.restarts", -1, "restarts must be within 0 and 2.14748e+09"),
        ("units.0.restarts", 1.5, "restarts must be a whole number"),
        ("units.0.exec_start", "/bin/sh -c secret", "exec_start is not a key the contract knows"),
        ("units", [unit] * (MAX_UNITS + 1), f"units must have at most {MAX_UNITS} items"),
        ("failed", None, "failed is missing"),
        ("ok", 2**40, "ok must be within 0 and 2.14748e+09"),
    ]  # fmt: skip
    for path, value, message in cases:
        sample = copy.deepcopy(good)
        *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        node: Any = sample["services"]
        for p in parents:
            node = node[p]
        node[last] = value
        parent = path.rsplit(".", 1)[0] if "." in path else ""
        where = "sample.services." + (parent + "." if parent else "")
        assert schema.sample_problem(sample) == where + message, path


def _engine(host: str = "box", **table: Any) -> Any:
    from server.alerts.rules import AlertEngine
    from server.alerts.settings import parse_settings

    return AlertEngine(parse_settings({"anomaly": False, **table}), interval=1, cores=2,
                       host=host)  # fmt: skip


def _sample(ts: float, *units: dict[str, Any]) -> dict[str, Any]:
    listed = [{"name": "x.service", "state": "active", "sub": "running", "result": "success",
               "restarts": 0, **u} for u in units]  # fmt: skip
    part = {"failed": sum(u["state"] == "failed" for u in listed), "restarting": 0,
            "activating": 0, "ok": 10, "units": listed}  # fmt: skip
    return {"ts": ts, "cpu": {"percent": 1.0}, "disks": [], "services": part}


def _fired(engine: Any, ts: float, *units: dict[str, Any]) -> list[tuple[str, str]]:
    return [(a["rule"], a["level"]) for a in engine.evaluate(_sample(ts, *units))]


def test_a_failed_unit_is_an_alert_naming_it_until_it_runs_or_is_reset() -> None:
    engine = _engine()
    assert _fired(engine, 0, {"name": "db.service"}) == []
    failed = {"name": "db.service", "state": "failed", "sub": "failed", "result": "exit-code"}
    assert _fired(engine, 1, failed) == [("unit_failed:db.service", "critical")]
    alert = engine.active["unit_failed:db.service"]
    assert alert["metric"] == "unit_failed:db.service" and alert["value"] == 1
    assert engine.worst() == "critical"
    assert _fired(engine, 2, failed) == []
    assert _fired(engine, 3) == [("unit_failed:db.service", "ok")]  # reset: no longer listed
    assert not [r for r in engine._rules if r.startswith("unit_")]  # its rules freed
    assert _fired(engine, 4, failed) == [("unit_failed:db.service", "critical")]
    assert _fired(engine, 5, {"name": "db.service"}) == [("unit_failed:db.service", "ok")]
    # systemctl cannot be asked: judge nothing, keep the state.
    assert _fired(engine, 6, failed) == [("unit_failed:db.service", "critical")]
    assert engine.evaluate({"ts": 7.0, "cpu": {"percent": 1.0}, "disks": [],
                            "services": None}) == []  # fmt: skip
    assert "unit_failed:db.service" in engine.active


def test_a_restart_loop_warns_though_the_unit_looks_active_between_two() -> None:
    engine = _engine()
    rule = "unit_restarts:web.service"
    # Restarted 12 times before the dashboard started: that is history, not a loop.
    assert _fired(engine, 0, {"name": "web.service", "restarts": 12}) == []
    changes = [_fired(engine, 5 * i, {"name": "web.service", "restarts": 12 + i})
               for i in range(1, 6)]  # fmt: skip
    assert changes == [[], [], [(rule, "warning")], [], [(rule, "critical")]]
    assert engine.active[rule]["value"] == 5
    # It stays up: the count stays. Ten minutes after the last restart it clears (60 s held).
    assert _fired(engine, 25 + 600, {"name": "web.service", "restarts": 17}) == []
    assert _fired(engine, 25 + 660, {"name": "web.service", "restarts": 17}) == [(rule, "ok")]
    # Started by hand (the count from 0 again): no rise, and a loop after is seen afresh.
    assert _fired(engine, 700, {"name": "web.service", "restarts": 0}) == []
    assert [_fired(engine, 701 + i, {"name": "web.service", "restarts": 1 + i})
            for i in range(3)][-1] == [(rule, "warning")]  # fmt: skip
    assert len(engine._unit_restarts["web.service"]) <= 64  # changes kept, not ticks


def test_unit_rules_stay_bounded_as_names_churn_and_follow_hosts() -> None:
    from server.alerts.rules import MAX_UNIT_RULES

    engine = _engine()
    for i in range(1000):  # a new failed unit each second, as transient units can be
        engine.evaluate(_sample(float(i), {"name": f"run-u{i}.service", "state": "failed",
                                           "restarts": i}))  # fmt: skip
    assert len([r for r in engine._rules if r.startswith("unit_")]) <= MAX_UNIT_RULES
    assert len(engine._unit_restarts) <= 1
    elsewhere = _engine(unit_failed={"hosts": ["other"]})
    assert _fired(elsewhere, 0, {"name": "db.service", "state": "failed"}) == []
    held = _engine(unit_failed={"for_seconds": 30})
    assert _fired(held, 0, {"name": "db.service", "state": "failed"}) == []
    assert _fired(held, 30, {"name": "db.service", "state": "failed"}) == [
        ("unit_failed:db.service", "critical")
    ]


def _host(engine: Any) -> Any:
    from server.alerts.notify import AlertNotifier
    from server.alerts.webhooks import WebhookSender
    from server.fleet.hosts import Host

    notifier = AlertNotifier(engine, lambda e, d: None, [WebhookSender([])], "box")
    return Host("box", notifier, 1.0, 60)


def test_a_tile_counts_the_units_and_a_failed_one_makes_its_host_crit() -> None:
    host = _host(_engine())
    sample = {**_sample(time.time()), "services": copy.deepcopy(CAPTURED)}
    host.take(sample, host.notifier)
    assert host.tile()["services"] == [1, 1, 1, 133]
    assert host.judge() == "crit"
    assert [a["rule"] for a in host.alerts.active.values()] == [f"unit_failed:{BROKEN}"]
    calm = _host(_engine())
    calm.take({**_sample(time.time()), "services": {**CAPTURED, "failed": 0, "units": []}},
              calm.notifier)  # fmt: skip
    assert calm.tile()["services"] == [0, 1, 1, 133] and calm.judge() == "ok"
    assert "services" not in _host(_engine()).tile()  # no systemd read there: no count


def test_metrics_carry_the_units_with_bounded_labels(
    client: FlaskClient, state: DashboardState
) -> None:
    from tests.test_metrics_export import scrape

    sample = state.sampler.tick()
    part = copy.deepcopy(CAPTURED)
    part["units"].append(dict(part["units"][0]))  # an agent's duplicate: one series
    sample["services"] = part
    found = scrape(client)
    counts = {got["state"]: v for got, v in found["dashboard_systemd_units"]}
    assert counts == {"failed": 1, "restarting": 1, "activating": 1, "ok": 133}
    failed = {got["unit"]: v for got, v in found["dashboard_systemd_unit_failed"]}
    assert failed == {BROKEN: 1, LOOP: 0, SLOW: 0, ONCE: 0}
    restarts = {got["unit"]: v for got, v in found["dashboard_systemd_unit_restarts_total"]}
    assert restarts == {BROKEN: 0, LOOP: 2, SLOW: 0, ONCE: 1}
    labels = {tuple(sorted(got)) for name, samples in found.items() if "_systemd_" in name
              for got, _ in samples}  # fmt: skip
    assert labels == {("host", "state"), ("host", "unit")}
    promtool = _promtool()
    if promtool:
        text = client.get("/metrics").get_data(as_text=True)
        check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                               text=True, timeout=30)  # fmt: skip
        assert "systemd" not in check.stdout + check.stderr


def _promtool() -> str | None:
    import shutil

    return shutil.which("promtool")


def test_the_page_has_the_panel_only_where_systemd_is_read_and_quiet_while_all_is_well(
    client: FlaskClient, state: DashboardState
) -> None:
    sample = state.sampler.tick()
    sample.pop("services", None)
    assert "services-panel" not in client.get("/").get_data(as_text=True)
    sample["services"] = copy.deepcopy(CAPTURED)
    page = client.get("/").get_data(as_text=True)
    assert ('<span id="services-summary">1 failed · 1 restarting · 1 starting · 133 ok</span>'
            in page)  # fmt: skip
    assert 'id="services-table" hidden' not in page
    assert f'<td class="name" title="{BROKEN}">{BROKEN}</td><td class="crit">failed</td>' in page
    assert '<td class="warn">restarting</td><td class="wide">exit-code</td>' in page
    assert '<td class="warn">starting (start)</td>' in page
    assert f'title="{ONCE}"' not in page  # fine: listed for its restart only
    sample["services"] = {**CAPTURED, "failed": 0, "restarting": 0, "activating": 0,
                          "units": [CAPTURED["units"][3]]}  # fmt: skip
    page = client.get("/").get_data(as_text=True)
    assert '<span id="services-summary">all 133 units ok</span>' in page
    assert 'id="services-table" hidden' in page
    sample["services"] = None
    assert "systemd not answering" in client.get("/").get_data(as_text=True)


# ---------------------------------------------------------------- whatever an agent sends

_NAMES = st.one_of(st.sampled_from([BROKEN, "a.service", "b@1.service", "x\\x2dy.mount"]),
                   st.text(max_size=20))  # fmt: skip
_UNITS = st.lists(
    st.fixed_dictionaries(
        {"name": _NAMES, "state": st.sampled_from(["failed", "auto-restart", "active", "x-y"]),
         "sub": st.one_of(st.none(), st.sampled_from(["dead", "start"])),
         "result": st.one_of(st.none(), st.just("exit-code")),
         "restarts": st.one_of(st.none(), st.integers(-2, 2**32))}
    ),
    max_size=8,
)  # fmt: skip
_PARTS = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {k: st.integers(-1, 2**32) for k in ("failed", "restarting", "activating", "ok")}
        | {"units": _UNITS}
    ),
)


@settings(
    max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(parts=st.lists(_PARTS, min_size=1, max_size=4))
def test_whatever_the_declaration_accepts_the_hub_reads(parts: list[Any]) -> None:
    from server.web.metrics_export import _Families, _sample_families

    engine = _engine()
    host = _host(engine)
    for i, part in enumerate(parts):
        if schema.sample_problem({"ts": time.time(), "services": part}) is not None:
            continue
        sample = {**_sample(1000.0 + i), "services": part}
        engine.evaluate(sample)
        _sample_families(_Families(), sample)
        host.take(sample, lambda s: None)
        tile = host.tile()
        assert part is None or tile["services"] == [
            part[k] for k in ("failed", "restarting", "activating", "ok")
        ]


# ---------------------------------------------------------------- an agent's units at a hub


@pytest.mark.e2e
@pytest.mark.browser
def test_an_agents_units_reach_the_hubs_tile_alerts_and_page(tmp_path: Path) -> None:
    """A stand-in agent sends the captured units with each sample: the hub takes them, its
    tile counts them and turns crit, the failed unit is the host's alert, and the host's
    page (rendered, then live) and the fleet page say so in words."""
    import requests

    from server.fleet.tokens import AgentTokens
    from testkit.chromium import Chromium
    from testkit.fleet import stand_in_agent
    from testkit.serverproc import ServerProcess
    from testkit.system import require_binary

    browser = Chromium(require_binary("chromium", "chromium-browser"))
    hub = ServerProcess(tmp_path / "hub" / "logs")
    token = AgentTokens(str(hub.data_dir)).add("box")
    carried: dict[str, Any] = {"services": copy.deepcopy(CAPTURED)}
    try:
        hub.start()
        with stand_in_agent(hub.url, token, carried):

            def summary() -> dict[str, Any] | None:
                hosts = requests.get(hub.url + "/api/hosts", timeout=5).json()["hosts"]
                box = [h["summary"] for h in hosts if h["id"] == "box"]
                return box[0] if box and box[0].get("state") == "crit" else None

            assert wait_until(summary, timeout=30, interval=0.5)["services"] == [1, 1, 1, 133]
            active = requests.get(hub.url + "/api/hosts/box/alerts", timeout=5).json()["active"]
            assert [(a["rule"], a["level"], a["host"]) for a in active] == [
                (f"unit_failed:{BROKEN}", "critical", "box")
            ]
            browser.navigate(hub.url + "/")
            tile = browser.wait_for(
                "(t => t && !t.hidden && [t.textContent, t.className])("
                "[...document.querySelectorAll('.tile')].filter(e => e.textContent.includes('box'))"
                ".map(e => e.querySelector('.tile-services'))[0])"
            )
            assert tile == [
                "units: 1 failed · 1 restarting · 1 starting · 133 ok",
                "tile-services bad",
            ]
            browser.navigate(hub.url + "/host/box")
            rows = (
                "[...document.querySelectorAll('#services tr')].map(r => r.textContent).join('|')"
            )
            assert browser.wait_for(rows) == (
                f"{BROKEN}failedexit-code0|{LOOP}restartingexit-code2|{SLOW}starting (start)\u20130"
            )
            # The unit is reset: the page goes quiet live, and the alert resolves.
            carried["services"] = {**CAPTURED, "failed": 0, "restarting": 0, "activating": 0,
                                   "ok": 136, "units": [CAPTURED["units"][3]]}  # fmt: skip
            assert browser.wait_for(
                "(s => s.textContent === 'all 136 units ok' && document.getElementById("
                "'services-table').hidden && s.textContent)(document.getElementById("
                "'services-summary'))"
            )
            assert browser.console_errors() == []
            alerts = hub.url + "/api/hosts/box/alerts"
            wait_until(lambda: not requests.get(alerts, timeout=5).json()["active"], timeout=15)
    finally:
        hub.stop()
        browser.close()
