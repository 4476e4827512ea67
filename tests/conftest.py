"""Shared fixtures: an app built from a test config, its clients, a real server."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from server.app import create_app
from server.config import Config
from server.state import DashboardState, current_state
from testkit.chromium import Chromium
from testkit.serverproc import ServerProcess


def require_binary(*names: str) -> str:
    """The first of `names` on PATH; skip if none (fail under CI, where it must exist)."""
    for name in names:
        path = shutil.which(name) or (
            f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None
        )
        if path:
            return path
    reason = f"{' or '.join(names)} is not installed (make system-deps installs it)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"under CI: {reason}")
    pytest.skip(reason)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config(
        async_mode="threading",
        log_dir=str(tmp_path / "logs"),
        history_seconds=60,
        data_dir=str(tmp_path / "data"),
    )


@pytest.fixture
def app(config: Config) -> Flask:
    flask_app, _ = create_app(config)
    flask_app.config["TESTING"] = True
    return flask_app


@pytest.fixture
def state(app: Flask) -> DashboardState:
    with app.app_context():
        return current_state()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture(params=["eventlet", "threading"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    """The real server as a subprocess, under each async mode."""
    proc = ServerProcess(tmp_path / "logs", "--async-mode", request.param).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def browser() -> Iterator[Chromium]:
    """Headless Chromium with a fresh profile; closed after the test."""
    chromium = Chromium(require_binary("chromium", "chromium-browser"))
    try:
        yield chromium
    finally:
        chromium.close()


@pytest.fixture
def hung_mount(tmp_path: Path) -> Iterator[str]:
    """A real FUSE mount whose server never answers: any stat on it blocks.

    Its source is named /dev/hung, so it looks like a real disk. Closing the
    /dev/fuse descriptor at the end aborts the connection (blocked calls get
    ENOTCONN), and the mount is then detached.
    """
    import ctypes

    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        reason = "a FUSE mount needs root and /dev/fuse"
        if os.environ.get("CI") == "true":
            pytest.fail(f"under CI: {reason}")
        pytest.skip(reason)
    libc = ctypes.CDLL(None, use_errno=True)
    target = tmp_path / "hung"
    target.mkdir()
    descriptor = os.open("/dev/fuse", os.O_RDWR)
    options = f"fd={descriptor},rootmode=40000,user_id=0,group_id=0".encode()
    if libc.mount(b"/dev/hung", str(target).encode(), b"fuse", 0, options) != 0:
        os.close(descriptor)
        pytest.fail(f"mount: {os.strerror(ctypes.get_errno())}")
    try:
        yield str(target)
    finally:
        os.close(descriptor)
        libc.umount2(str(target).encode(), 2)  # MNT_DETACH
