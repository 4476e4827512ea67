"""The firehose's settings: its log sources and redaction patterns."""

from __future__ import annotations

import re
from typing import Any

from server.firehose.sources import LogSource, container_engine, parse_log_sources

__all__ = ["LogSource", "container_engine", "parse_log_sources", "parse_patterns"]


def parse_patterns(raw: Any) -> tuple[str, ...]:
    """Regexes: a TOML list of strings, or in the environment ;-separated."""
    items = raw.split(";") if isinstance(raw, str) else raw
    accepts = "a list of regular expressions (in the environment: ;-separated)"
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise ValueError(accepts)
    patterns = tuple(i for i in items if i.strip())
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"{accepts}: {pattern!r} does not compile ({exc})") from None
    return patterns
