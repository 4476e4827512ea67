"""How a setting is declared: once, as a dataclass field with its default, its
parser (type and range) and its help. Defaults, known keys, the settings table
and the error messages all come from these declarations (server/config.py, the
[alerts] table in server/alerts/settings.py).

A parser takes a raw value (a string from the environment or a flag, or a TOML
value) and returns the typed value, or raises ValueError saying what it accepts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

Parser = Callable[[Any], Any]


def setting(default: Any, parse: Parser, help: str) -> Any:
    """One setting's whole declaration: default, parser (type and range), help."""
    return dataclasses.field(default=default, metadata={"parse": parse, "help": help})


def declared(cls: type) -> dict[str, dataclasses.Field[Any]]:
    """The fields of `cls` declared with setting(), by name, in their order."""
    return {f.name: f for f in dataclasses.fields(cls) if "parse" in f.metadata}


def bounded(kind: type[int] | type[float], low: float, high: float, accepts: str) -> Parser:
    def parse(raw: Any) -> Any:
        if isinstance(raw, bool):
            raise ValueError(accepts)
        try:
            value = kind(raw) if isinstance(raw, int | float) else kind(str(raw).strip())
        except (TypeError, ValueError):
            raise ValueError(accepts) from None
        if not low <= value <= high:  # also rejects nan
            raise ValueError(accepts)
        return value

    return parse


def integer(low: int, high: int) -> Parser:
    return bounded(int, low, high, f"an integer from {low} to {high}")


def number(low: float, high: float, what: str = "a number") -> Parser:
    return bounded(float, low, high, f"{what} from {low:g} to {high:g}")


def choice(*choices: str) -> Parser:
    def parse(raw: Any) -> str:
        if raw not in choices:
            raise ValueError("one of " + ", ".join(choices))
        return str(raw)

    return parse


def boolean(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off"):
        return False
    raise ValueError("true or false")


def parse_table(
    cls: type,
    table: Mapping[str, Any],
    prefix: str,
    error: Callable[[str], Exception],
    also_known: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The values of a TOML table for the settings `cls` declares: the keys it has,
    parsed; an unknown key or a bad value raises `error` naming the setting."""
    fields = declared(cls)
    for key in table:
        if key not in fields:
            known = ", ".join([*also_known, *fields])
            raise error(f"setting '{prefix}.{key}' is unknown; known: {known}")
    values = {}
    for key, raw in table.items():
        try:
            values[key] = fields[key].metadata["parse"](raw)
        except ValueError as exc:
            raise error(f"setting '{prefix}.{key}' must be {exc}, got {raw!r}") from None
    return values
