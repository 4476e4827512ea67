"""systemd's units: those that failed, restart or are starting, and how many are fine.

Read with systemctl, every REFRESH_EVERY seconds, in a loop of its own; the
tick attaches the newest reading and never waits on systemd. Two calls:
- `systemctl list-units --all --output=json` lists every unit and its states
  (systemd before 246 ignores `--output=json` and prints its table: read too);
- `systemctl show -p Id,ActiveState,SubState,Result,NRestarts UNIT...` for the
  units that are not fine, and every RESTARTS_EVERY readings for the services
  that run too: NRestarts (the times systemd restarted a service since it was
  started by hand) is per unit, and it is how a service that crashes and comes
  back within a second is seen. systemctl asks PID 1 for every property of
  each unit it shows (about 2 ms a unit, measured in the guest of
  tests/test_guest.py): the running services' counts, which only rise while
  they run, are read every 30 s, not every 5.

Why systemctl and not D-Bus: systemctl is on every host systemd runs, speaks
to PID 1 as root or over the system bus as the service's user, and needs no
library in the dashboard (a D-Bus client would: jeepney, say) for two calls
every few seconds. Each call has a deadline (DEADLINE: killed after it, its
process group with it), its output a size (MAX_OUTPUT), and its environment
is a fixed one (the dashboard's own goes nowhere). Under eventlet the child's
pipes are green (the loop waits on them, not for them) and the parsing runs
in the pool.

Read-only, and names and states only: never a unit's description, command
line (ExecStart) or environment.

Bounded: a sample lists at most MAX_UNITS units within MAX_UNITS_BYTES
(failed first, then restarting, then starting or stopping, then the fine
services systemd restarted, most restarts first); the counts cover every
unit. At most MAX_ASKED units are asked for their restarts.

Where systemd is not PID 1 (/run/systemd/system is absent: sd_booted(3)'s
test), or systemctl is not installed, or `services = off`, find() finds
nothing: no collector, no thread, no key in the sample.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from server.blocking import run_blocking
from server.loops import BackgroundLoop
from server.sampling.collector import Collector
from server.wire import compact_json

log = logging.getLogger("dashboard.data")

REFRESH_EVERY = 5.0  # seconds between two readings
RESTARTS_EVERY = 6  # readings between two that ask the running services their restarts
DEADLINE = 10.0  # seconds a systemctl call may take before it is killed
MAX_OUTPUT = 8 * 2**20  # bytes of one call's output (about 60,000 units listed)
MAX_ERROR = 4096  # bytes of its error output: the first line is the reason logged
MAX_UNITS = 100  # units in one sample
MAX_UNITS_BYTES = 16 * 1024  # what they may take in one sample (an agent's message is 96 KiB)
MAX_ASKED = 512  # units asked for their restarts in one reading
# systemd's own alphabet and length of a unit's name (unit_name_is_valid()).
UNIT_NAME = re.compile(r"\A[A-Za-z0-9:_.\\@-]{1,256}\Z")
WORD = re.compile(r"\A[a-z0-9-]{1,32}\Z")  # a state, a sub-state, a result
NUMBER = re.compile(r"\A[0-9]{1,10}\Z")
SHOWN = ("Id", "ActiveState", "SubState", "Result", "NRestarts")
RUN_DIR = "/run/systemd/system"  # there while systemd is PID 1
ENVIRONMENT = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "SYSTEMD_COLORS": "0"}
# The counts, and the order units are listed in.
KINDS = ("failed", "restarting", "activating", "ok")


class Unit(NamedTuple):
    """A unit as systemctl gives it."""

    load: str  # loaded, not-found, masked, ...
    active: str  # active, inactive, failed, activating, deactivating, reloading, ...
    sub: str  # running, exited, dead, failed, auto-restart, start, ...


class SystemctlError(OSError):
    """systemctl did not answer, or not as expected: the collector's reading fails."""


def kind_of(active: str, sub: str) -> str:
    """Which count a unit is in: failed, restarting (waiting to be started again),
    activating (a job under way: starting, stopping, reloading), or ok."""
    if active == "failed":
        return "failed"
    if sub == "auto-restart":
        return "restarting"
    if active in ("active", "inactive"):
        return "ok"
    return "activating"


def _word(value: Any) -> str | None:
    return value if isinstance(value, str) and WORD.match(value) else None


# ---------------------------------------------------------------- parsing


def parse_list(output: bytes) -> dict[str, Unit]:
    """`systemctl list-units --all --output=json`: each unit by name. systemd before
    246 prints its table instead (`--plain --no-legend`: a unit a line)."""
    text = output.decode("utf-8", "replace")
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except ValueError as exc:
            raise SystemctlError(f"systemctl list-units gave no JSON list: {exc}") from None
        if not isinstance(rows, list):
            raise SystemctlError("systemctl list-units gave no JSON list")
        fields = [(r.get("unit"), r.get("load"), r.get("active"), r.get("sub"))
                  for r in rows if isinstance(r, dict)]  # fmt: skip
    else:
        # The table: a failed unit's line starts with a mark (●, or * where the
        # locale has no such character); a name has no spaces.
        fields = []
        for line in text.splitlines():
            cells = line.lstrip(" ●*").split(None, 4)
            if len(cells) >= 4:
                fields.append((cells[0], cells[1], cells[2], cells[3]))
    units: dict[str, Unit] = {}
    for name, load, active, sub in fields:
        # A name outside systemd's alphabet is no unit (a line of something else).
        if isinstance(name, str) and UNIT_NAME.match(name):
            units[name] = Unit(_word(load) or "", _word(active) or "", _word(sub) or "")
    return units


def parse_show(output: bytes) -> list[dict[str, str]]:
    """`systemctl show -p ... UNIT...`: a block of KEY=value lines per unit, in the
    order they were asked, a blank line between two."""
    blocks: list[dict[str, str]] = [{}]
    for line in output.decode("utf-8", "replace").splitlines():
        key, equals, value = line.partition("=")
        if not equals:
            if blocks[-1]:
                blocks.append({})
            continue
        blocks[-1][key] = value
    return [b for b in blocks if b]


def to_ask(units: Mapping[str, Unit], running: bool = True) -> list[str]:
    """The units to ask for their states and restarts: those not ok (of every type),
    then (`running`) the active services, which systemd may have restarted, by name."""
    troubled = sorted((KINDS.index(kind_of(u.active, u.sub)), name)
                      for name, u in units.items() if kind_of(u.active, u.sub) != "ok")  # fmt: skip
    services = sorted(name for name, u in units.items()
                      if name.endswith(".service") and u.active == "active")  # fmt: skip
    troubled_names = [name for _, name in troubled][:MAX_ASKED]
    return troubled_names + (services[: MAX_ASKED - len(troubled_names)] if running else [])


def by_unit(units: Mapping[str, Unit], shown: Iterable[Mapping[str, str]],
            asked: list[str]) -> dict[str, Mapping[str, str]]:  # fmt: skip
    """`systemctl show`'s blocks by the unit each is of."""
    details: dict[str, Mapping[str, str]] = {}
    for index, block in enumerate(shown):
        name = block.get("Id")
        if name not in units and index < len(asked):
            name = asked[index]  # an alias's Id: the order says which unit it is
        if name is not None and name in units:
            details[name] = block
    return details


def part_of(units: Mapping[str, Unit], details: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    """The sample's `services`: the counts of every unit, and the units worth a line.
    `details` are `systemctl show`'s answers by unit: newer than the list where they
    have a state."""
    counts = dict.fromkeys(KINDS, 0)
    rows: list[tuple[int, int, str, dict[str, Any]]] = []
    for name, unit in units.items():
        more = details.get(name, {})
        active = _word(more.get("ActiveState")) or unit.active  # the newer of the two
        sub = _word(more.get("SubState")) or unit.sub or None
        kind = kind_of(active, sub or "")
        if kind == "ok" and unit.load == "not-found":
            continue  # a name other units refer to, with no unit file: no unit
        counts[kind] += 1
        text = more.get("NRestarts", "")
        restarts = int(text) if NUMBER.match(text) and int(text) < 2**31 else None
        if kind != "ok" or restarts:
            row = {
                "name": name,
                "state": "auto-restart" if kind == "restarting" else _word(active) or "unknown",
                "sub": sub,
                "result": _word(more.get("Result")),
                "restarts": restarts,
            }
            rows.append((KINDS.index(kind), -(restarts or 0), name, row))
    rows.sort(key=lambda r: r[:3])
    listed: list[dict[str, Any]] = []
    size = 2
    for *_, row in rows[:MAX_UNITS]:
        size += len(compact_json(row)) + 1
        if size > MAX_UNITS_BYTES:
            break
        listed.append(row)
    return {**counts, "units": listed}


# ---------------------------------------------------------------- systemctl


def run_systemctl(argv: list[str], deadline: float = DEADLINE) -> bytes:
    """The command's output; SystemctlError when it fails, says too much, or takes
    longer than `deadline` (it is killed then, with whatever it started)."""
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=ENVIRONMENT,
                                start_new_session=True)  # fmt: skip
    except OSError as exc:
        raise SystemctlError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    late = threading.Event()

    def kill() -> None:
        if proc.returncode is None:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)

    def expire() -> None:
        late.set()
        kill()

    killer = threading.Timer(deadline, expire)
    killer.start()
    assert proc.stdout is not None and proc.stderr is not None
    out = bytearray()
    try:
        while len(out) <= MAX_OUTPUT:
            chunk = proc.stdout.read(65536)
            if not chunk:
                break
            out += chunk
        if len(out) > MAX_OUTPUT:
            kill()  # and its pipes' other ends with it
        error = proc.stderr.read(MAX_ERROR)
        code = proc.wait()
    finally:
        killer.cancel()
        proc.stdout.close()
        proc.stderr.close()
    command = " ".join(argv[1:3])
    if len(out) > MAX_OUTPUT:
        raise SystemctlError(f"systemctl {command} said more than {MAX_OUTPUT} bytes")
    if late.is_set():
        raise SystemctlError(f"systemctl {command} did not answer within {deadline:g} s")
    if code != 0:
        reason = error.decode("utf-8", "replace").strip().splitlines()[:1] or [f"exit {code}"]
        raise SystemctlError(f"systemctl {command}: {reason[0][:200]}")
    return bytes(out)


def list_command(systemctl: str) -> list[str]:
    return [systemctl, "list-units", "--all", "--output=json", "--plain", "--no-legend",
            "--no-pager"]  # fmt: skip


def show_command(systemctl: str, units: list[str]) -> list[str]:
    return [systemctl, "show", "--no-pager", "-p", ",".join(SHOWN), "--", *units]


Kept = dict[str, Mapping[str, str]]  # unit -> its NRestarts and Result, as last asked


def combine(units: Mapping[str, Unit], shown: list[dict[str, str]], asked: list[str],
            kept: Kept, running: bool) -> tuple[dict[str, Any], Kept]:  # fmt: skip
    """The part, from this reading's answers and, for the services that run and were not
    asked this time (`running` False), their restarts as last asked; and what to keep."""
    fresh = by_unit(units, shown, asked)
    if running:
        kept = {}
    else:  # a service that stopped since: its count is no longer news
        kept = {n: k for n, k in kept.items() if n in units and units[n].active == "active"}
    kept.update({n: {k: b[k] for k in ("NRestarts", "Result") if k in b}
                 for n, b in fresh.items()})  # fmt: skip
    return part_of(units, {**kept, **fresh}), kept


def read_units(systemctl: str, kept: Kept, running: bool) -> tuple[dict[str, Any], Kept]:
    """One reading: the two calls (their output waited on without holding the loop),
    parsed in the pool. The running services are asked only where `running`."""
    units = run_blocking(parse_list, run_systemctl(list_command(systemctl)))
    asked = to_ask(units, running)
    shown = run_blocking(parse_show, run_systemctl(show_command(systemctl, asked))) if asked else []
    return run_blocking(combine, units, shown, asked, kept, running)


# ---------------------------------------------------------------- the collector


class Services(Collector):
    """{"services": {failed, restarting, activating, ok, units}}, or null while systemctl
    cannot be asked."""

    name = "services"

    def __init__(self, systemctl: str) -> None:
        super().__init__()
        self.systemctl = systemctl
        self._latest: dict[str, Any] | None = None
        self._kept: Kept = {}
        self._readings = 0
        self.error: str | None = None
        self.refreshed = threading.Event()  # set after each reading (tests wait on it)
        self._reader = BackgroundLoop("services", self._round, log, error_wait=REFRESH_EVERY)

    def begin(self) -> None:
        if not self._reader.running:  # the first tick starts it: nothing runs before
            self._reader.start()

    def stop(self) -> None:
        self._reader.stop(timeout=2)

    def _round(self) -> float:
        running = self._readings % RESTARTS_EVERY == 0
        try:
            self._latest, self._kept = read_units(self.systemctl, self._kept, running)
            self._readings += 1
        except OSError as exc:  # SystemctlError, or its pipes
            self.error = str(exc)
        except Exception:
            # A bug (the loop logs it): null, never the last reading shown as the newest.
            self.error = "the reading failed (the log says why)"
            raise
        else:
            self.error = None
        finally:
            self.refreshed.set()
        return REFRESH_EVERY

    def collect(self) -> dict[str, Any]:
        if not self.refreshed.is_set():
            return self.null()  # the first reading is on its way: not a failure
        return super().collect()

    def read(self) -> dict[str, Any]:
        if self.error is not None or self._latest is None:
            raise SystemctlError(self.error or "no reading yet")
        return {"services": dict(self._latest)}

    def null(self) -> dict[str, Any]:
        return {"services": None}


def find(setting: str = "auto", run_dir: str = RUN_DIR) -> Services | None:
    """The collector, where systemd runs and the setting is not `off`; None elsewhere."""
    if setting == "off" or not os.path.isdir(run_dir):
        return None
    systemctl = shutil.which("systemctl", path=ENVIRONMENT["PATH"])
    return None if systemctl is None else Services(systemctl)
