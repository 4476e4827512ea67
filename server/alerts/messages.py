"""What a notification says: a title, a short text for chat, a fuller body for email.

Plain text in the server's time zone, which each time names. Evidence (the top
processes, a host's last log lines, a link to its page) comes as sections from
the dispatcher's `evidence` hook: whole in the full body; in the short, the first
line of the first section and the link.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Any

from server.alerts.routes import kind_of
from server.alerts.rules import OK

# A section of evidence: a heading and its lines.
Section = tuple[str, Sequence[str]]
LINK = "Page at that moment"  # the section whose one line is the link to the host's page


@dataclasses.dataclass(frozen=True)
class Message:
    level: str  # warning, critical, ok
    title: str
    short: str  # chat: a line or two under the title
    full: str  # email: every detail, then the evidence


def _at(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(ts))


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S %Z", time.localtime(ts))


def _lasted(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _number(value: Any) -> str:
    if value is None:  # a host_down's age before any sample
        return "unknown"
    return f"{value:g}" if isinstance(value, int | float) else str(value)


def compose(
    alert: Mapping[str, Any],
    since: float | None = None,
    evidence: Sequence[Section] = (),
    note: str = "",
) -> Message:
    """The message for one alert change; `since`: when the alert began firing (a
    resolution's, or an escalation's from warning); `note`: why it goes out again
    (a repeat, an escalation), after the title."""
    level, rule, host = alert["level"], alert["rule"], alert.get("host", "")
    ts = float(alert["ts"])
    began = ts if since is None else since
    metric, value, threshold = alert["metric"], _number(alert["value"]), _number(alert["threshold"])
    if level == OK:
        title = f"RESOLVED {rule} on {host}"
        short = (
            f"{metric} = {value}, below {threshold}; it was {alert['previous']} for "
            f"{_lasted(ts - began)}, since {_clock(began)}"
        )
        facts = [
            ("Metric", metric),
            ("Value", value),
            ("Clear level", f"{threshold} (the {alert['previous']} level clears below it)"),
            ("Fired", _at(began)),
            ("Resolved", f"{_at(ts)}, after {_lasted(ts - began)}"),
        ]
    else:
        title = f"{level.upper()} {rule} on {host}" + (f" ({note})" if note else "")
        short = f"{metric} = {value} (threshold {threshold}) since {_clock(ts)}"
        facts = [
            ("Metric", metric),
            ("Value", value),
            ("Threshold", f"{threshold} ({level})"),
            ("Since", _at(ts)),
            ("Was", str(alert["previous"])),
        ]
        if began < ts:
            facts.append(("Firing since", f"{_at(began)} ({_lasted(ts - began)})"))
    kind = kind_of(rule)
    facts += [
        ("Host", host),
        ("Rule", rule if kind == rule.partition(":")[0] else f"{rule} ({kind})"),
    ]
    lines = [f"{title}.", "", *(f"{name + ':':<13} {text}" for name, text in facts)]
    for heading, body in evidence:
        lines += ["", heading, *(f"  {line}" for line in body)]
    return Message(level, title, short + _in_short(evidence), "\n".join(lines) + "\n")


def _in_short(evidence: Sequence[Section]) -> str:
    """A chat's evidence: the first line of the first section (the container, unit or
    drive named, else the busiest process), and the link."""
    said = ""
    first = next(((h, b) for h, b in evidence if h != LINK and b), None)
    if first is not None:
        said += f"\n{first[0]}: {first[1][0].strip()}"
    link = next((b[0] for h, b in evidence if h == LINK and b), None)
    return said + (f"\n{link}" if link else "")


def compose_group(firings: Sequence[tuple[Mapping[str, Any], float, Sequence[Section]]]) -> Message:
    """One message for several alerts of one host that fired within the group window:
    each (alert, since, evidence). The title counts them at the worst level; the short
    text has a line for each, the full body each one's whole message."""
    if len(firings) == 1:
        return compose(*firings[0])
    levels = [str(alert["level"]) for alert, _since, _evidence in firings]
    level = "critical" if "critical" in levels else levels[0]
    host = firings[0][0].get("host", "")
    title = f"{level.upper()} {len(firings)} alerts on {host}"
    lines = []
    for alert, _since, _evidence in firings:
        lines.append(
            f"{str(alert['level']).upper()} {alert['rule']}: {alert['metric']} = "
            f"{_number(alert['value'])} (threshold {_number(alert['threshold'])}) since "
            f"{_clock(float(alert['ts']))}"
        )
    bodies = [compose(*firing).full for firing in firings]
    full = f"{title}.\n\n" + "".join(f"  {line}\n" for line in lines)
    full += "".join("\n" + "-" * 40 + "\n" + body for body in bodies)
    return Message(level, title, "\n".join(lines), full)
