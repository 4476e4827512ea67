"""The demo VM's path, on a booted Debian: what `vagrant up` does, without a hypervisor.

A debootstrapped bookworm boots with `systemd-nspawn -b` (systemd as PID 1),
the checkout bound at /vagrant. Inside it run the Vagrantfile's shell step and
the puppet provisioner's command; from outside, the guest's Nginx (it shares
this machine's network, on a port a fact picks) must serve the page, REST and
the WebSocket. A second apply changes nothing. A run whose pip cannot reach an
index fails, and the next one repairs the install. Needs root; the guest is
powered off and removed, pass or fail.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import socketio

from testkit.guest import Guest
from testkit.serverproc import ROOT, free_port
from testkit.system import require_binary, skip_or_fail_under_ci
from testkit.wait import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.guest]

HOSTNAME = "dashboard-guest"


def shell_step() -> str:
    """The Vagrantfile's shell provisioner, as it is written there."""
    text = (ROOT / "Vagrantfile").read_text()
    found = re.search(r'provision "shell", inline: <<-SHELL\n(.*?)\n\s*SHELL', text, re.S)
    assert found, "the Vagrantfile's shell step"
    return found.group(1)


class Demo:
    def __init__(self, guest: Guest, port: int, app_port: int) -> None:
        self.guest = guest
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.facts = {
            "FACTER_dashboard_source": "/vagrant",
            "FACTER_dashboard_port": str(port),
            "FACTER_dashboard_app_port": str(app_port),
        }

    def apply(self) -> int:
        """The puppet provisioner's command; its detailed exit code (0 no change, 2 changes)."""
        result = self.guest.run(
            "puppet apply --detailed-exitcodes --color=false"
            " --modulepath /vagrant/deploy/puppet/modules /vagrant/deploy/puppet/manifests/site.pp",
            env=self.facts,
            check=False,
        )
        self.last = result.stdout + result.stderr
        return result.returncode

    def get(self, path: str, host: str = "localhost") -> requests.Response:
        return requests.get(self.url + path, headers={"Host": host}, timeout=10)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    if os.geteuid() != 0:
        skip_or_fail_under_ci("a booted guest needs root (systemd-nspawn)")
    guest = Guest(
        require_binary("debootstrap"),
        require_binary("systemd-nspawn"),
        require_binary("nsenter"),
        tmp_path_factory.mktemp("guest"),
    )
    try:
        guest.boot(HOSTNAME)
        guest.run(shell_step(), env={"DEBIAN_FRONTEND": "noninteractive"})
        yield Demo(guest, free_port(), free_port())
    finally:
        guest.stop()


def wait_served(demo: Demo) -> None:
    wait_until(lambda: demo.get("/healthz").status_code == 200, timeout=60, interval=0.5,
               what="the guest's dashboard, through its Nginx")  # fmt: skip


def test_the_demo_comes_up_as_vagrant_would_bring_it(demo: Demo) -> None:
    code = demo.apply()
    assert code in (0, 2), demo.last
    wait_served(demo)
    page = demo.get("/")
    assert page.status_code == 200 and "uPlot" in page.text
    assert demo.get("/api/static").json()["hostname"] == HOSTNAME
    assert demo.get("/healthz", host="localhost:8080").json()["status"] == "ok"
    assert demo.get("/", host="evil.example").status_code == 421
    got: list[dict[str, object]] = []
    client = socketio.Client()
    client.on("metrics", got.append)
    client.connect(f"http://localhost:{demo.port}", transports=["websocket"], wait_timeout=10)
    try:
        assert client.transport() == "websocket"
        wait_until(lambda: bool(got), timeout=10, what="metrics over the guest's WebSocket")
    finally:
        client.disconnect()
    log = demo.guest.rootfs / "var/log/dashboard/dashboard.log"
    assert log.exists() and "serving" in log.read_text()
    # Applied again: nothing to change.
    assert demo.apply() == 0, demo.last


def test_a_run_whose_pip_cannot_reach_an_index_fails_and_the_next_repairs_it(
    demo: Demo,
) -> None:
    wait_served(demo)
    # As on a first run with the network down: no venv yet, and no index.
    demo.guest.run("systemctl stop dashboard && rm -rf /opt/dashboard/.venv")
    demo.guest.run(
        "cp /etc/pip.conf /etc/pip.conf.good && "
        "printf '[global]\\nindex-url = http://127.0.0.1:9/simple/\\nretries = 0\\n"
        "timeout = 2\\n' > /etc/pip.conf"
    )
    try:
        failed = demo.apply()
        assert failed in (4, 6), demo.last  # the run says it failed
        assert demo.get("/").status_code == 502
    finally:
        demo.guest.run("mv /etc/pip.conf.good /etc/pip.conf")
    repaired = demo.apply()
    assert repaired == 2, demo.last
    wait_served(demo)
    assert demo.get("/api/static").json()["hostname"] == HOSTNAME
    time.sleep(1)
    assert demo.apply() == 0, demo.last


def test_a_core_web_processes_on_redis_and_an_agent_in_the_guest(
    demo: Demo, tmp_path: Path
) -> None:
    """The scale-out set-up (web_workers) and the fleet (an agent reporting to the hub)."""
    import secrets

    from testkit.fleet import AgentProcess, wait_until_the_hub_takes

    demo.facts.update(
        FACTER_dashboard_web_workers="2", FACTER_dashboard_queue_password=secrets.token_hex(16)
    )
    assert demo.apply() == 2, demo.last
    app_port = int(demo.facts["FACTER_dashboard_app_port"])
    units = f"dashboard dashboard-redis dashboard-web@{app_port + 1} dashboard-web@{app_port + 2}"
    wait_until(
        lambda: demo.guest.run(f"systemctl is-active {units}", check=False).returncode == 0,
        timeout=60,
        what="the core, Redis and two web processes active",
    )
    wait_served(demo)
    got: list[dict[str, object]] = []
    client = socketio.Client()
    client.on("metrics", got.append)
    client.connect(f"http://localhost:{demo.port}", transports=["websocket"], wait_timeout=10)
    try:
        wait_until(lambda: bool(got), timeout=15, what="the core's metrics through a web process")
    finally:
        client.disconnect()
    token = demo.guest.run(
        "cd / && runuser -u dashboard -- /opt/dashboard/.venv/bin/python -m server"
        " add-agent edge-1 --config /etc/dashboard/dashboard.toml --role core"
    ).stdout.strip()
    hub_url = f"http://localhost:{demo.port}/agents"
    wait_until_the_hub_takes(hub_url, token).disconnect()
    agent = AgentProcess(tmp_path, "edge-1", token, hub_url)
    agent.start()
    try:

        def reported() -> bool:
            hosts = demo.get("/api/hosts").json()["hosts"]
            return any(h["id"] == "edge-1" and h["state"] == "ok" for h in hosts)

        wait_until(reported, timeout=30, what="the agent's samples at the guest's hub")
    finally:
        agent.stop()
    assert demo.apply() == 0, demo.last
