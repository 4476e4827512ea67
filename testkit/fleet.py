"""Agents as real processes, and network namespaces for agents with addresses of their own."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import socketio

from testkit.serverproc import ROOT
from testkit.wait import wait_until


class AgentProcess:
    """`python -m server agent`, optionally inside a network namespace; stopped by its PID."""

    def __init__(
        self,
        workdir: Path,
        name: str,
        token: str,
        hub_url: str,
        netns: str | None = None,
        env: dict[str, str] | None = None,
        launcher: list[str] | None = None,
    ) -> None:
        self.name = name
        self.workdir = workdir / name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.args = [
            *(launcher or [sys.executable, "-m", "server"]), "agent",
            "--hub-url", hub_url,
            "--log-dir", str(self.workdir / "logs"),
            "--data-dir", str(self.workdir / "data"),
            "--top-processes", "0",
        ]  # fmt: skip
        if netns:
            self.args = ["ip", "netns", "exec", netns, *self.args]
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("DASHBOARD_")},
            "DASHBOARD_HUB_TOKEN": token,
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AgentProcess:
        with open(self.workdir / "console.txt", "ab") as out:
            self.proc = subprocess.Popen(
                self.args, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        path = self.workdir / "logs" / "dashboard.log"
        return path.read_text() if path.exists() else ""


def connect_as_agent(
    hub_url: str, token: str, ca_file: str | None = None, **auth: Any
) -> tuple[socketio.Client, list[str]]:
    """One connect to the hub's `/agent` namespace with `token`, as an agent makes it
    (https://hub/agents: the /agents/socket.io/ path): the client, connected or not,
    and the messages of the hub's refusals."""
    parsed = urllib.parse.urlsplit(hub_url)
    prefix = parsed.path.strip("/")
    errors: list[str] = []
    ssl = {"sslopt": {"ca_certs": ca_file}} if ca_file else {}
    client = socketio.Client(reconnection=False, websocket_extra_options=ssl)
    client.on("connect_error", lambda data: errors.append(str(data)), namespace="/agent")
    with contextlib.suppress(socketio.exceptions.ConnectionError):
        client.connect(
            f"{parsed.scheme}://{parsed.netloc}",
            auth={"token": token, **auth},  # `auth`: more of the connect's (its protocol)
            namespaces=["/agent"],
            transports=["websocket"],
            socketio_path=f"{prefix}/socket.io" if prefix else "socket.io",
            wait_timeout=5,
        )
    return client, errors


def wait_until_the_hub_takes(
    hub_url: str, token: str, ca_file: str | None = None, timeout: float = 15.0
) -> socketio.Client:
    """The hub reads its agents file again every 5 ticks: connect with a token just
    added (refused until then) until the hub takes it; the connected client."""

    def taken() -> socketio.Client | None:
        client, _refusals = connect_as_agent(hub_url, token, ca_file)
        return client if client.connected else None

    return wait_until(taken, timeout=timeout, interval=0.5, what="the hub taking a new token")


@contextlib.contextmanager
def stand_in_agent(hub_url: str, token: str, carried: dict[str, Any]) -> Iterator[None]:
    """A client speaking the agent protocol as host `box` would: the hub's own static,
    then a synthetic sample a second with `carried`'s keys over it (the test may change
    them while it runs). Its sending thread is joined before the link goes, so no call
    is left in flight."""
    import requests

    from testkit.synthetic import synthetic_sample

    agent = socketio.Client(reconnection=False)
    stop = threading.Event()

    def send() -> None:
        seq = 0
        while not stop.is_set():
            seq += 1
            sample = synthetic_sample(time.time(), seq, random.Random(seq))
            sample.update(carried)
            answer = agent.call("samples", [sample], namespace="/agent", timeout=10)
            assert "error" not in answer, answer
            stop.wait(1.0)

    sender = threading.Thread(target=send, daemon=True)
    try:
        agent.connect(hub_url, auth={"token": token}, namespaces=["/agent"],
                      transports=["websocket"], wait_timeout=10)  # fmt: skip
        static = requests.get(hub_url + "/api/static", timeout=5).json()
        static.update(hostname="box")
        static.pop("host", None)
        assert agent.call("static", static, namespace="/agent", timeout=10) is True
        sender.start()
        yield
    finally:
        stop.set()
        if sender.ident is not None:
            sender.join(timeout=15)
        agent.disconnect()


FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
# libfaketime 0.9.10 answers EINVAL to clock_nanosleep(CLOCK_MONOTONIC,
# TIMER_ABSTIME), Python's time.sleep, when the monotonic clock is left real;
# an agent under it sleeps on an Event instead (a condition wait, which works).
SLEEP_ON_EVENT = [
    sys.executable, "-c",
    "import runpy, threading, time; _e = threading.Event(); "
    "time.sleep = lambda s: _e.wait(s); runpy.run_module('server', run_name='__main__')",
]  # fmt: skip


def wrong_clock(timestamp_file: Path) -> dict[str, str]:
    """The environment of a process whose wall clock is off by what `timestamp_file`
    says ("+10m", "-7m"; read again each second, so a test can step it), and whose
    monotonic clock is real, as a kernel keeps it when the wall clock steps."""
    return {
        "LD_PRELOAD": FAKETIME_LIB,
        "FAKETIME_TIMESTAMP_FILE": str(timestamp_file),
        # Read again at most once a second: reading it at every clock call (NO_CACHE)
        # costs the agent a file read per time() and slows it on a loaded machine.
        "FAKETIME_CACHE_DURATION": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


class Netns:
    """A network namespace joined to this one by a veth pair: 10.231.N.1 here, .2 there.

    10.231.0.0/16 lives only on these veth pairs, inside this machine. Removed
    by remove(), pass or fail (removing the namespace removes both ends).
    """

    def __init__(self, index: int) -> None:
        self.name = f"dashtest{os.getpid()}-{index}"
        self.outer = f"10.231.{index}.1"
        self.inner = f"10.231.{index}.2"
        self._veth = f"dt{os.getpid() % 100000}v{index}"

    def create(self) -> Netns:
        peer = self._veth + "p"
        for command in (
            ["ip", "netns", "add", self.name],
            ["ip", "link", "add", self._veth, "type", "veth", "peer", "name", peer],
            ["ip", "link", "set", peer, "netns", self.name],
            ["ip", "addr", "add", f"{self.outer}/24", "dev", self._veth],
            ["ip", "link", "set", self._veth, "up"],
            [
                "ip",
                "netns",
                "exec",
                self.name,
                "ip",
                "addr",
                "add",
                f"{self.inner}/24",
                "dev",
                peer,
            ],
            ["ip", "netns", "exec", self.name, "ip", "link", "set", peer, "up"],
            ["ip", "netns", "exec", self.name, "ip", "link", "set", "lo", "up"],
        ):
            subprocess.run(command, check=True, capture_output=True, timeout=10)
        return self

    def remove(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=10)
        subprocess.run(["ip", "link", "del", self._veth], capture_output=True, timeout=10)
