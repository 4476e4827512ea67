"""The shared test helpers themselves, where a mistake would pass silently."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from testkit.config import write_toml


def test_write_toml_writes_what_toml_reads_back(tmp_path: Path) -> None:
    settings: dict[str, object] = {
        "password_hash": 'scrypt:32768:8:1$a"b\\c$0f',
        "max_connections_per_ip": 6,
        "allow_anonymous": False,
        "interval": 0.5,
        "tiny": 1e-05,
        "allowed_hosts": ["localhost", "127.0.0.1"],
        "odd text": "tab\there, line\nbreak, del\x7f, é, 😀",
        "alerts": {
            "webhooks": ["http://127.0.0.1:9/hook"],
            "cpu": {"warning": 0.1, "critical": 1000},
            "disk:/var": {"warning": 50},
        },
        "log_sources": {"alpha": "/tmp/a b.log"},
        "empty": {},
        "notify_route": [{"channels": ["chat"], "continue": True, "odd key": {"a": 1}}, {}],
    }
    path = write_toml(tmp_path / "d.toml", **settings)
    assert tomllib.loads(path.read_text()) == settings


def test_write_toml_refuses_what_it_has_no_form_for(tmp_path: Path) -> None:
    for value in (None, [{"a": None}], float("nan")):
        with pytest.raises((TypeError, ValueError)):
            write_toml(tmp_path / "d.toml", key=value)
