"""Shared fixtures: an app built from a test config, its clients, a real server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from server.app import create_app
from server.config import Config
from server.state import DashboardState, current_state
from testkit.chromium import Chromium
from testkit.docker import Docker
from testkit.serverproc import ServerProcess
from testkit.system import require_binary, skip_or_fail_under_ci
from tests.receivers import RELAY_PASSWORD, RELAY_USER, MailReceiver, Receiver


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


@pytest.fixture(scope="module")
def docker() -> Iterator[Docker]:
    """A dockerd of the module's own (testkit/docker.py), stopped with all it made."""
    engine = Docker(require_binary("dockerd"), require_binary("docker"), require_binary("busybox"))
    try:
        yield engine.start()
    finally:
        engine.stop()


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
        skip_or_fail_under_ci("a FUSE mount needs root and /dev/fuse")
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


@pytest.fixture
def chat() -> Iterator[Receiver]:
    """A real HTTP receiver on loopback, standing in for a chat service's endpoint."""
    receiver = Receiver()
    try:
        yield receiver
    finally:
        receiver.close()


@pytest.fixture
def relay() -> Iterator[MailReceiver]:
    """A real SMTP server (aiosmtpd) on loopback that wants a login, standing in for a
    mail relay."""
    server = MailReceiver(RELAY_USER, RELAY_PASSWORD)
    try:
        yield server
    finally:
        server.close()
