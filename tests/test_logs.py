"""Logging: files in log_dir that rotate, and client noise kept down."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import requests

from server.config import PACKAGE_DIR, Config, ConfigError
from server.logs import RateLimitFilter, setup_logging
from testkit.serverproc import ServerProcess


def test_rate_limit_filter_drops_repeats_and_tracebacks() -> None:
    now = [0.0]
    limiter = RateLimitFilter(burst=3, period=60, clock=lambda: now[0])

    def record(msg: str) -> logging.LogRecord:
        try:
            raise ValueError("bad packet")
        except ValueError:
            import sys

            exc_info = sys.exc_info()
        return logging.LogRecord("engineio.server", logging.ERROR, __file__, 1, msg, (), exc_info)

    records = [record(f"bad {i}") for i in range(100)]
    passed = [r for r in records if limiter.filter(r)]
    assert len(passed) == 3
    assert passed[0].exc_info is not None
    assert all(r.exc_info is None for r in passed[1:])
    info = logging.LogRecord("engineio.server", logging.INFO, __file__, 1, "fine", (), None)
    assert limiter.filter(info)  # below WARNING is never limited
    now[0] += 61  # a minute later
    later = record("bad again")
    assert limiter.filter(later)
    assert "97 similar messages dropped before this" in str(later.msg)


def test_bad_log_settings_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="setting 'log_config'"):
        setup_logging(Config(log_dir=str(tmp_path), log_config=str(tmp_path / "none.conf")))
    bad = tmp_path / "bad.conf"
    bad.write_text("[loggers]\nkeys=root\n")
    with pytest.raises(ConfigError, match="setting 'log_config'"):
        setup_logging(Config(log_dir=str(tmp_path), log_config=str(bad)))
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="setting 'log_dir'"):
        setup_logging(Config(log_dir=str(blocker / "logs")))


@pytest.mark.e2e
def test_log_files_appear_and_rotate(tmp_path: Path) -> None:
    # The real logging.conf, with a tiny maximum size so that rotation shows.
    conf = (PACKAGE_DIR / "logging.conf").read_text()
    tiny, count = re.subn(r"'a', 10485760, 5", "'a', 2000, 3", conf)
    assert count == 2
    conf_path = tmp_path / "logging.conf"
    conf_path.write_text(tiny)
    log_dir = tmp_path / "logs"
    server = ServerProcess(
        log_dir, "--async-mode", "threading", "--log-config", str(conf_path)
    ).start()
    try:
        for _ in range(150):
            requests.get(server.url + "/api/static", timeout=5)
    finally:
        server.stop()
    names = sorted(p.name for p in log_dir.iterdir())
    assert "dashboard.log" in names and "access.log" in names
    assert {"access.log.1", "access.log.2", "access.log.3"} <= set(names)
    assert "access.log.4" not in names  # three backups kept, no more
    assert all((log_dir / n).stat().st_size <= 2400 for n in names if n.startswith("access"))
    assert "GET /api/static" in (log_dir / "access.log").read_text()
    app_log = (log_dir / "dashboard.log").read_text()
    assert "sampler started" in app_log and "shutting down" in app_log
    assert "GET /api/static" not in app_log  # access lines stay in the access log
