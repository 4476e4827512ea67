"""Settings files as the tests write them: TOML from keyword arguments."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

BARE_KEY = re.compile(r"\A[A-Za-z0-9_-]+\Z")


def write_toml(path: Path, **settings: object) -> Path:
    """Write `settings` to `path` as a TOML settings file and return the path.

    A dict is a table (`alerts={"cpu": {...}}` is `[alerts]` and `[alerts.cpu]`);
    a string, number, boolean or list of them is written as TOML reads it back; a
    list of dicts is an array of tables (`notify_route=[{...}, {...}]`).
    """
    path.write_text(toml_text(settings))
    return path


def toml_text(settings: Mapping[str, object], table: str = "") -> str:
    values: list[str] = []
    tables: list[str] = []
    for key, value in settings.items():
        name = _key(key)
        if isinstance(value, Mapping):
            inner = f"{table}.{name}" if table else name
            tables.append(f"[{inner}]\n" + toml_text(value, inner))
        else:
            values.append(f"{name} = {_value(value)}\n")
    return "".join(values + tables)


def _value(value: object) -> str:
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, bool | int | float):
        return json.dumps(value, allow_nan=False)  # true, 3, 0.5, 1e-05: TOML's forms too
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, Mapping):  # in a list: an inline table (an array of tables)
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML form here for {type(value).__name__}: {value!r}")


def _key(key: str) -> str:
    return key if BARE_KEY.match(key) else _string(key)


def _string(text: str) -> str:
    # JSON's escapes are TOML's (\", \\, \n, \uXXXX); TOML wants DEL escaped too.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")
