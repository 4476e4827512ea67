"""What a notification shows beside the value: the evidence (docs/alerts.md).

For an alert of a host, from what the hub holds at the moment it fires:
- the container, unit, drive or mount its rule names, as the host's latest
  sample has it;
- the host's top processes in that sample;
- the last lines of the host's log sources, when the firehose is on: what the
  hub holds of them (pages watching), and for the hub's own files their last
  lines, read in the pool;
- a link to the host's page at that moment, where `public_url` is set.

Called by the dispatcher for each firing and resolution, before it takes its
lock: it reads memory, and only the hub's own log files in the pool.
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from server.alerts.messages import LINK, Section
from server.alerts.rules import HOST_DOWN
from server.blocking import os_threading
from server.firehose.relay import Firehose
from server.fleet.hosts import Fleet

log = logging.getLogger("dashboard.notify")

TOP_PROCESSES = 5
LOG_LINES = 10  # the last lines of each log source
LOG_SOURCES = 5  # sources shown at most
LINE_CHARS = 300  # a log line cut there in a notification
TAIL_DEADLINE = 0.5  # seconds the hub's own log files may take to read


class Evidence:
    def __init__(self, fleet: Fleet, firehose: Firehose | None, public_url: str) -> None:
        self.fleet = fleet
        self.firehose = firehose
        self.public_url = public_url.rstrip("/")
        self._tails = _Deadlined(TAIL_DEADLINE)

    def __call__(self, alert: Mapping[str, Any]) -> Sequence[Section]:
        host = self.fleet.get(str(alert.get("host", "")))
        sample = (host.latest if host is not None else None) or {}
        sections: list[Section] = []
        rule = str(alert["rule"])
        named = _named_item(rule, sample)
        if named is not None:
            sections.append(named)
        if rule != HOST_DOWN:  # a host that stopped reporting has no processes now
            top = _top_processes(sample)
            if top is not None:
                sections.append(top)
        if self.firehose is not None and host is not None:
            sections += self._log_lines(host.id)
        if self.public_url and host is not None:
            sections.append((LINK, [self.link(host.id, float(alert["ts"]))]))
        return sections

    def link(self, host_id: str, ts: float) -> str:
        """The host's page with its charts around `ts` (app.js reads `at`). The hub's
        own host too by its id: `/` may show the fleet."""
        return f"{self.public_url}/host/{urllib.parse.quote(host_id, safe='')}?at={int(ts)}"

    def _log_lines(self, host_id: str) -> list[Section]:
        assert self.firehose is not None
        held = self.firehose.held_lines(host_id, LOG_LINES)
        if host_id == self.fleet.local.id:  # the hub's own files, whether watched or not
            held = {**self._tails.read(self.firehose.feed.file_tails, LOG_LINES), **held}
        return [
            (f"Last lines of {name}", [line[:LINE_CHARS] for line in lines])
            for name, lines in list(held.items())[:LOG_SOURCES]
            if lines
        ]


def _top_processes(sample: Mapping[str, Any]) -> Section | None:
    rows = sample.get("processes")
    if not isinstance(rows, list) or not rows:
        return None
    lines = [
        f"{row.get('pid', '?'):>7}  {row.get('name', '?')!s:<16}"
        f" cpu {row.get('cpu_percent')} %  mem {row.get('memory_percent')} %"
        for row in rows[:TOP_PROCESSES]
        if isinstance(row, Mapping)
    ]
    at = sample.get("ts")
    when = time.strftime("%H:%M:%S %Z", time.localtime(at)) if isinstance(at, int | float) else ""
    return (f"Top processes at {when}".rstrip(), lines) if lines else None


def _named_item(rule: str, sample: Mapping[str, Any]) -> Section | None:
    """The container, unit or drive an item rule names (`container_exited:web-1`)."""
    kind, _, item = rule.partition(":")
    if not item:
        return None
    family = kind.partition("_")[0]
    if kind == "disk":  # a mount's usage
        rows = [d for d in sample.get("disks") or [] if isinstance(d, Mapping)]
        return _row("Disk", item, rows, "mount", ("device", "fstype", "percent", "free"))
    if family == "container":
        part = sample.get("containers") or {}
        rows = [c for c in part.get("items") or [] if isinstance(c, Mapping)]
        fields = ("state", "health", "exit_code", "cpu_percent", "memory_used", "restarts")
        return _row("Container", item, rows, "name", fields)
    if family == "unit":
        part = sample.get("services") or {}
        rows = [u for u in part.get("units") or [] if isinstance(u, Mapping)]
        return _row("Unit", item, rows, "name", ("state", "sub", "result", "restarts"))
    if kind.startswith("disk_health"):
        rows = [d for d in sample.get("disk_health") or [] if isinstance(d, Mapping)]
        fields = ("model", "health", "temperature", "pending", "reallocated", "wear_percent")
        return _row("Drive", item, rows, "device", fields)
    return None


def _row(
    what: str, item: str, rows: list[Mapping[str, Any]], key: str, fields: Sequence[str]
) -> Section:
    found = next((r for r in rows if r.get(key) == item), None)
    if found is None:
        return (f"{what} {item}", ["not in the latest sample (gone, or not listed)"])
    return (f"{what} {item}", [f"{f}: {found[f]}" for f in fields if found.get(f) is not None])


class _Deadlined:
    """A read of files in an OS thread of its own, waited for at most `deadline` (a
    green sleep under eventlet: the loop goes on), as mounts.py reads a mount: a hung
    filesystem holds that thread, never the caller, and none is started while it
    does. The thread touches nothing green: it sets one plain attribute."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self._reading = False

    def read(self, function: Callable[[int], dict[str, list[str]]], count: int
             ) -> dict[str, list[str]]:  # fmt: skip
        if self._reading:
            log.warning("evidence: the last read of the log files has not returned: left out")
            return {}
        answer: list[Any] = []

        def run() -> None:
            try:
                answer.append(function(count))
            except Exception as exc:  # logged by the caller, not in this thread
                answer.append(exc)
            self._reading = False

        self._reading = True
        os_threading().Thread(target=run, name="evidence-tails", daemon=True).start()
        until = time.monotonic() + self.deadline
        while not answer and time.monotonic() < until:
            time.sleep(0.01)
        if not answer:
            log.warning("evidence: the log files took over %.1f s: left out", self.deadline)
            return {}
        if isinstance(answer[0], Exception):
            log.warning("evidence: cannot read the log files: %s", answer[0])
            return {}
        found: dict[str, list[str]] = answer[0]
        return found
