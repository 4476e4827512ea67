"""Maintenance windows and quiet hours (server/alerts/windows.py): the pure logic at
explicit times in explicit zones (a change of the clocks in Europe/Berlin included), the
settings that stop the start, then the real server with HTTP receivers on loopback."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from server.alerts.windows import (
    Holds,
    Hours,
    Window,
    parse_hours,
    parse_maintenance,
    server_zone,
)
from server.fleet.tokens import AgentTokens
from testkit.config import write_toml
from testkit.fleet import stand_in_agent
from testkit.serverproc import ServerProcess, run_server_command
from testkit.wait import wait_until
from tests.receivers import Receiver
from tests.test_channels import alert, documented, json_url, refusal
from tests.test_notify_flow import due, flow, titles

BERLIN = ZoneInfo("Europe/Berlin")
UTC = ZoneInfo("UTC")


def at(
    zone: ZoneInfo, y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, fold: int = 0
) -> dt.datetime:
    return dt.datetime(y, mo, d, h, mi, s, tzinfo=zone, fold=fold)


def held(holds: Holds, moment: dt.datetime, level: str = "warning", host: str = "db-1") -> Any:
    holds._clock = moment.timestamp
    return holds(alert(level, host=host))


def windows(zone: ZoneInfo, *tables: dict[str, Any]) -> Holds:
    return Holds(parse_maintenance(list(tables), zone), None, zone)


# ---------------------------------------------------------------- the logic


def test_a_cron_window_every_day_at_one_for_two_hours() -> None:
    holds = windows(BERLIN, {"hosts": ["db-*"], "cron": "0 1 * * *", "minutes": 120,
                             "reason": "nightly backup"})  # fmt: skip
    assert held(holds, at(BERLIN, 2026, 12, 7, 0, 59)) is None
    assert (
        held(holds, at(BERLIN, 2026, 12, 7, 1, 0)) == "maintenance: nightly backup until 03:00 CET"
    )
    assert held(holds, at(BERLIN, 2026, 12, 7, 2, 59, 59)) is not None
    assert held(holds, at(BERLIN, 2026, 12, 7, 3, 0)) is None
    # Every level, only its hosts.
    assert held(holds, at(BERLIN, 2026, 12, 7, 2), level="critical") is not None
    assert held(holds, at(BERLIN, 2026, 12, 7, 2), host="web-3") is None


def test_windows_across_a_change_of_the_clocks_in_europe() -> None:
    """On 29 March 2026 Berlin's clocks go from 02:00 CET to 03:00 CEST; on 25 October
    from 03:00 CEST back to 02:00 CET. A cron window's `minutes` are elapsed time; a
    weekday window's hours are the wall clock's."""
    cron = windows(BERLIN, {"hosts": ["*"], "cron": "0 1 * * *", "minutes": 120})
    assert held(cron, at(BERLIN, 2026, 3, 29, 3, 30)) == "maintenance until 04:00 CEST"
    assert held(cron, at(BERLIN, 2026, 3, 29, 4, 0)) is None
    # 01:00 CEST and two hours on: the second 02:00 of the night, in CET.
    assert held(cron, at(BERLIN, 2026, 10, 25, 2, 30)) == "maintenance until 02:00 CET"
    assert held(cron, at(BERLIN, 2026, 10, 25, 2, 30, fold=1)) is None
    sunday = windows(BERLIN, {"hosts": ["*"], "weekdays": ["sun"], "hours": "01:00-03:00"})
    assert held(sunday, at(BERLIN, 2026, 3, 29, 1, 59)) == "maintenance until 03:00 CEST"
    assert held(sunday, at(BERLIN, 2026, 3, 29, 3, 0)) is None  # an hour long, that night
    assert held(sunday, at(BERLIN, 2026, 10, 25, 2, 30, fold=1)) == "maintenance until 03:00 CET"
    assert held(sunday, at(BERLIN, 2026, 10, 25, 3, 0)) is None  # three hours long
    assert held(sunday, at(BERLIN, 2026, 10, 24, 2, 0)) is None  # a Saturday


def test_quiet_hours_across_midnight_hold_all_but_critical() -> None:
    quiet = Holds((), Hours(*parse_hours("22:00-07:00"), frozenset({4})), UTC)  # Fridays
    friday_night = at(UTC, 2026, 12, 11, 23, 0)
    assert held(quiet, friday_night) == "quiet hours until 07:00 UTC"
    assert held(quiet, friday_night, level="critical") is None
    assert held(quiet, at(UTC, 2026, 12, 12, 6, 59)) == "quiet hours until 07:00 UTC"  # Saturday
    assert held(quiet, at(UTC, 2026, 12, 12, 7, 0)) is None
    assert held(quiet, at(UTC, 2026, 12, 12, 23, 0)) is None  # Saturday's night: not a Friday
    assert held(quiet, at(UTC, 2026, 12, 11, 3, 0)) is None  # Friday morning: Thursday's night
    assert held(quiet, at(UTC, 2026, 12, 11, 21, 59)) is None
    every_day = Holds((), Hours(*parse_hours("22:00-07:00")), BERLIN)
    assert held(every_day, at(BERLIN, 2026, 12, 8, 3, 0)) == "quiet hours until 07:00 CET"


def test_a_one_off_window_in_its_own_offset_or_the_servers_zone() -> None:
    holds = windows(
        BERLIN,
        {"hosts": ["db-1"], "from": "2026-12-24T01:00:00+00:00",
         "to": dt.datetime(2026, 12, 27, 3, 0), "reason": "move"},  # TOML's local: Berlin's
    )  # fmt: skip
    assert held(holds, at(UTC, 2026, 12, 24, 0, 59)) is None
    assert (
        held(holds, at(UTC, 2026, 12, 24, 1, 0)) == "maintenance: move until 2026-12-27 03:00 CET"
    )
    assert held(holds, at(BERLIN, 2026, 12, 27, 2, 0)) == "maintenance: move until 03:00 CET"
    assert held(holds, at(BERLIN, 2026, 12, 27, 3, 0)) is None


def test_a_window_holds_a_firing_and_its_repeats_then_they_resume() -> None:
    """Through the dispatcher: held and recorded, not sent; its repeats wait for the end
    of the window, then go on; a firing held that still fires goes out at its end."""
    routes = [{"channels": ["chat"], "repeat_minutes": 1}]
    sent, clock = flow(routes, group_wait=0, channels=("chat",))
    recorded: list[tuple[str, str]] = []
    sent.noted = lambda a, event, why: (
        recorded.append((a["rule"], why)) if event == "held" else None
    )
    window = Window(
        ("db-1",), "reboot", start=at(UTC, 2026, 12, 7, 10), end=at(UTC, 2026, 12, 7, 11)
    )
    wall = {"now": at(UTC, 2026, 12, 7, 9, 59)}
    sent.holds.append(Holds((window,), None, UTC, clock=lambda: wall["now"].timestamp()))
    sent.send(alert("warning", rule="memory"))  # before the window: it goes
    assert titles(sent, "chat") == ["WARNING memory on db-1"]
    wall["now"] = at(UTC, 2026, 12, 7, 10, 30)
    sent.send(alert("critical", rule="cpu"))
    assert titles(sent, "chat") == []
    assert recorded == [("cpu", "maintenance: reboot until 11:00 UTC")]
    due(sent, clock, 61)
    assert titles(sent, "chat") == []  # memory's repeat waits
    wall["now"] = at(UTC, 2026, 12, 7, 11, 0)
    due(sent, clock, 60)
    assert sorted(titles(sent, "chat")) == [
        "CRITICAL cpu on db-1",  # held, and firing still: it goes now
        "WARNING memory on db-1 (repeat 1, firing 2 min)",
    ]
    sent.send(alert("warning", rule="load"))  # after the window: at once, as ever
    assert titles(sent, "chat") == ["WARNING load on db-1"]


def test_a_host_down_in_a_window_is_held_too() -> None:
    """A planned reboot: its host_down is held like the rest, and not sent after the
    window if the host came back within it."""
    sent, clock = flow([{"channels": ["chat"]}], group_wait=0, channels=("chat",))
    window = Window(
        ("db-1",), "reboot", start=at(UTC, 2026, 12, 7, 10), end=at(UTC, 2026, 12, 7, 11)
    )
    wall = {"now": at(UTC, 2026, 12, 7, 10, 5)}
    sent.holds.append(Holds((window,), None, UTC, clock=lambda: wall["now"].timestamp()))
    sent.send(alert("critical", rule="host_down"))
    sent.send(alert("ok", rule="host_down"))
    wall["now"] = at(UTC, 2026, 12, 7, 11, 0)
    due(sent, clock, 60)
    assert titles(sent, "chat") == []


def test_the_servers_zone_is_tz_else_etc_localtime() -> None:
    assert server_zone({"TZ": "Europe/Berlin"}) == (BERLIN, "Europe/Berlin")
    assert server_zone({"TZ": ":Asia/Tokyo"})[1] == "Asia/Tokyo"
    zone, name = server_zone({})  # /etc/localtime's, or the offset of now
    assert dt.datetime.now(zone).utcoffset() == dt.datetime.now().astimezone().utcoffset()
    assert name


# ---------------------------------------------------------------- bad settings


CRON = {"hosts": ["db-1"], "cron": "0 1 * * *", "minutes": 120}


@pytest.mark.parametrize(
    ("settings", "named", "says"),
    [
        ({"maintenance": [{**CRON, "cron": "0 25 * * *"}]}, "maintenance[1].cron",
         "a cron expression"),
        ({"maintenance": [{**CRON, "cron": "nightly"}]}, "maintenance[1].cron",
         "a cron expression"),
        ({"maintenance": [{**CRON, "cron": "0 0 30 2 *"}]}, "maintenance[1].cron",
         "a cron expression"),
        ({"maintenance": [{"hosts": ["a"], "cron": "0 1 * * *"}]}, "maintenance[1].minutes",
         "is missing"),
        ({"maintenance": [CRON, {"hosts": ["a"], "from": "2026-12-24T01:00:00+01:00"}]},
         "maintenance[2].to", "is missing"),
        ({"maintenance": [{"hosts": ["a"], "from": "2026-12-24T01:00:00+01:00",
                           "to": "2026-12-23T01:00:00+01:00"}]},
         "maintenance[1].to", "must come after"),
        ({"maintenance": [{"hosts": ["a"], "from": "tonight", "to": "2026-12-23T01:00:00"}]},
         "maintenance[1].from", "a date and time"),
        ({"maintenance": [{"hosts": ["a"], "weekdays": ["sat", "sundy"], "hours": "01:00-03:00"}]},
         "maintenance[1].weekdays", "'sundy' is not one"),
        ({"maintenance": [{"hosts": ["a"], "weekdays": ["sat"], "hours": "1-3"}]},
         "maintenance[1].hours", "HH:MM-HH:MM"),
        ({"maintenance": [{"hosts": ["a"], "hours": "25:00-03:00"}]},
         "maintenance[1].hours", "HH:MM-HH:MM"),
        ({"maintenance": [{"hosts": ["a"], "weekdays": ["sat"]}]},
         "maintenance[1].hours", "is missing"),
        ({"maintenance": [{"cron": "0 1 * * *", "minutes": 5}]}, "maintenance[1].hosts",
         "is missing"),
        ({"maintenance": [{**CRON, "hours": "01:00-03:00"}]}, "maintenance[1]", "needs one of"),
        ({"maintenance": [{**CRON, "minutes": 0}]}, "maintenance[1].minutes", "above 0"),
        ({"maintenance": [{**CRON, "until": "03:00"}]}, "maintenance[1].until", "is unknown"),
        ({"notify_quiet_hours": "22-07"}, "notify_quiet_hours", "HH:MM-HH:MM"),
        ({"notify_quiet_hours": "07:00-07:00"}, "notify_quiet_hours", "two different times"),
        ({"notify_quiet_hours": "22:00-07:00", "notify_quiet_weekdays": ["funday"]},
         "notify_quiet_weekdays", "'funday' is not one"),
        ({"notify_quiet_weekdays": ["sat"]}, "notify_quiet_weekdays", "needs notify_quiet_hours"),
    ],
)  # fmt: skip
def test_bad_window_settings_stop_the_start_with_one_line(
    tmp_path: Path, settings: dict[str, Any], named: str, says: str
) -> None:
    message = refusal(tmp_path, settings)
    assert f"setting '{named}" in message and says in message and "\n" not in message


def test_the_real_server_refuses_a_cron_that_does_not_parse(tmp_path: Path) -> None:
    path = write_toml(tmp_path / "dashboard.toml", maintenance=[{**CRON, "cron": "0 1 * *"}])
    logs, data = str(tmp_path / "logs"), str(tmp_path / "data")
    done = run_server_command(
        "--config", str(path), "--port", "9", "--log-dir", logs, "--data-dir", data
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "setting 'maintenance[1].cron'" in lines[0], done.stderr


def test_the_documented_example_is_read_as_documented(tmp_path: Path) -> None:
    config = documented(tmp_path, "### Maintenance windows and quiet hours")
    assert (config.notify_quiet_hours, config.notify_quiet_weekdays) == ("22:00-07:00", ())
    backup, weekend, move = config.maintenance
    assert (backup.cron, backup.minutes, backup.reason) == ("0 1 * * *", 120, "nightly backup")
    assert weekend.hours == Hours(60, 180, frozenset({5, 6}))
    assert move.start is not None and move.end is not None and move.start < move.end


# ---------------------------------------------------------------- the real server


BUSY = {"cpu": {"percent": 97.0, "per_core": [97.0, 97.0]}}
WARM = {"cpu": {"percent": 60.0, "per_core": [60.0, 60.0]}}
CPU = {"cpu": {"warning": 50, "critical": 90, "for_seconds": 0, "hosts": ["db-1", "web-3"]}}


def two_hosts(tmp_path: Path, chat: Receiver, zone: str, **settings: Any) -> ServerProcess:
    config = write_toml(tmp_path / "dashboard.toml", alerts=CPU,
                        notify={"chat": {"url": json_url(chat)}}, notify_group_wait=0,
                        **settings)  # fmt: skip
    return ServerProcess(tmp_path / "logs", "--config", str(config), env={"TZ": zone})


def run_both(server: ServerProcess, db: dict[str, Any], web: dict[str, Any], held: str,
             chat: Receiver) -> str:  # fmt: skip
    """db-1 and web-3 as stand-in agents until web-3's message has come and db-1's
    is said held back in the log; the log."""
    tokens = AgentTokens(str(server.data_dir))
    db_token, web_token = tokens.add("db-1"), tokens.add("web-3")
    log = server.log_dir / "dashboard.log"
    try:
        server.start()
        with stand_in_agent(server.url, db_token, db), stand_in_agent(server.url, web_token, web):
            wait_until(lambda: chat.bodies, timeout=30, what="web-3's message")
            wait_until(lambda: held in log.read_text(), timeout=20, what="db-1 held back")
    finally:
        server.stop()
    return log.read_text()


@pytest.mark.e2e
def test_a_maintenance_window_that_covers_now_holds_its_hosts_alerts(
    tmp_path: Path, chat: Receiver
) -> None:
    """In Europe/Berlin: db-1's window covers now, web-3's begins in an hour. db-1's
    critical is recorded and held back with its reason; web-3's goes to the chat."""
    now = dt.datetime.now(BERLIN).replace(microsecond=0)
    hour = dt.timedelta(hours=1)
    server = two_hosts(tmp_path, chat, "Europe/Berlin", maintenance=[
        {"hosts": ["db-*"], "from": (now - hour).isoformat(), "to": (now + hour).isoformat(),
         "reason": "disk swap"},
        {"hosts": ["web-3"], "from": (now + hour).isoformat(),
         "to": (now + 2 * hour).isoformat()},
    ])  # fmt: skip
    until = (now + hour).strftime("%H:%M %Z")
    text = run_both(server, BUSY, BUSY, "held back: maintenance: disk swap until " + until, chat)
    assert [b["title"] for b in chat.bodies] == ["CRITICAL cpu on web-3"]
    assert "alert cpu CRITICAL" in text and "on host db-1" in text  # recorded: logged
    assert "time zone, Europe/Berlin (CE" in text  # the zone, stated at start


@pytest.mark.e2e
def test_quiet_hours_that_cover_now_hold_a_warning_but_not_a_critical(
    tmp_path: Path, chat: Receiver
) -> None:
    now = dt.datetime.now(UTC)
    start, end = now - dt.timedelta(hours=1), now + dt.timedelta(hours=1)
    server = two_hosts(tmp_path, chat, "UTC",
                       notify_quiet_hours=f"{start:%H:%M}-{end:%H:%M}")  # fmt: skip
    text = run_both(server, WARM, BUSY, "held back: quiet hours until " + f"{end:%H:%M} UTC", chat)
    assert [b["title"] for b in chat.bodies] == ["CRITICAL cpu on web-3"]
    assert "notification of alert cpu warning on host db-1 held back: quiet hours" in text
