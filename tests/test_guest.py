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
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def test_the_agent_class_reports_to_the_hub_and_a_second_apply_changes_nothing(
    demo: Demo,
) -> None:
    """dashboard::agent beside the hub on the guest: the same agent as the one-line install
    (its user, its hardened unit, its token in a 0600 file), live at the hub, healing alike."""
    wait_served(demo)
    guest = demo.guest
    # The hub class built this version's wheel: its Nginx serves the one-line install.
    script = demo.get("/agent/install.sh")
    assert script.status_code == 200 and "WHEEL_SHA256=" in script.text
    token = guest.run(
        "cd / && runuser -u dashboard -- /opt/dashboard/.venv/bin/python -m server"
        " add-agent puppet-1 --config /etc/dashboard/dashboard.toml"
    ).stdout.strip()
    (guest.rootfs / "root/agent.pp").write_text(
        f"class {{ 'dashboard::agent':\n  hub_url => 'http://localhost:{demo.port}/agents',\n"
        f"  token   => Sensitive('{token}'),\n}}\n"
    )

    def apply() -> subprocess.CompletedProcess[str]:
        return guest.run("puppet apply --detailed-exitcodes --color=false --modulepath"
                         " /vagrant/deploy/puppet/modules /root/agent.pp", check=False)  # fmt: skip

    try:
        first = apply()
        assert first.returncode == 2, first.stdout + first.stderr
        assert token not in first.stdout + first.stderr  # Sensitive: never in Puppet's output

        def live() -> dict[str, Any] | None:
            hosts = {h["id"]: h for h in demo.get("/api/hosts").json()["hosts"]}
            return hosts["puppet-1"] if hosts.get("puppet-1", {}).get("state") == "ok" else None

        host = wait_until(
            live, timeout=30, interval=0.5, what="the agent's tile at the guest's hub"
        )
        assert host["agent_version"] == demo.get("/api/static").json()["version"]
        pid = guest.run("systemctl show -p MainPID --value dashboard-agent").stdout.strip()
        assert guest.run(f"stat -c %U /proc/{pid}").stdout.strip() == "dashboard-agent"
        token_file = (guest.rootfs / "etc/dashboard-agent/token").stat()
        assert token_file.st_mode & 0o777 == 0o600 and token_file.st_uid == 0
        assert (
            "ProtectSystem=strict"
            in guest.run("systemctl show -p ProtectSystem dashboard-agent").stdout
        )
        second = apply()
        assert second.returncode == 0, second.stdout + second.stderr
        assert guest.run("systemctl show -p MainPID --value dashboard-agent").stdout.strip() == pid
    finally:  # a fleet of one again, for the tests after: the hub's own page at /
        guest.run("systemctl disable --now dashboard-agent; rm -f"
                  " /etc/systemd/system/dashboard-agent.service; systemctl daemon-reload",
                  check=False)  # fmt: skip
        guest.run("cd / && runuser -u dashboard -- /opt/dashboard/.venv/bin/python -m server"
                  " remove-agent puppet-1 --config /etc/dashboard/dashboard.toml",
                  check=False)  # fmt: skip
        wait_until(lambda: len(demo.get("/api/hosts").json()["hosts"]) == 1, timeout=30,
                   interval=0.5, what="the removed agent gone from the hub")  # fmt: skip


# Two units of the test's own in the guest (removed at its end).
UNITS = {
    # Fails at once (exit 3) and stays failed until it is reset.
    "dash-broken.service": "[Service]\nExecStart=/bin/sh -c 'exit 3'\n",
    # Up a second, down with an error, started again a second later: a restart loop
    # that looks active half the time (no start limit: systemd never gives up).
    "dash-loop.service": "[Unit]\nStartLimitIntervalSec=0\n[Service]\n"
    "ExecStart=/bin/sh -c 'sleep 1; exit 1'\nRestart=always\nRestartSec=1\n",
}
FAILED = "unit_failed:dash-broken.service"
LOOPING = "unit_restarts:dash-loop.service"


def test_the_guests_failed_and_looping_units_are_reported_alerted_and_resolved(
    demo: Demo,
) -> None:
    """systemd is PID 1 and the dashboard one of its services, running as its own user
    (systemctl asks PID 1 over the system bus): a unit that fails and one in a restart
    loop are in its samples, its alerts, /metrics and its page; reset, the alerts
    resolve and the page's rows go."""
    from testkit.chromium import Chromium

    wait_served(demo)
    guest = demo.guest
    assert guest.run("systemctl show -p User --value dashboard").stdout.strip() == "dashboard"
    unit_dir = guest.rootfs / "etc/systemd/system"
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    browser = Chromium(chromium) if chromium else None  # the page's live part, where it can
    try:
        try:
            for name, text in UNITS.items():
                (unit_dir / name).write_text(text)
            guest.run("systemctl daemon-reload")
            guest.run("systemctl start dash-broken.service", check=False)  # it fails: exit 3
            guest.run("systemctl start dash-loop.service")
            _reported_alerted_exported_shown(demo, browser)
        finally:
            guest.run("systemctl stop dash-loop.service; "
                      "systemctl reset-failed dash-broken.service dash-loop.service",
                      check=False)  # fmt: skip
            for name in UNITS:
                (unit_dir / name).unlink(missing_ok=True)
            guest.run("systemctl daemon-reload", check=False)
        # Reset: the page's rows go at the next reading; the failed unit's alert resolves
        # at once, the loop's after its 60 s clear hold.
        if browser is not None:
            browser.wait_for("!document.querySelector('#services').textContent.includes('dash-')",
                             timeout=30)  # fmt: skip

        def resolved() -> dict[str, Any] | None:
            alerts: dict[str, Any] = demo.get("/api/alerts").json()
            return None if {a["rule"] for a in alerts["active"]} & {FAILED, LOOPING} else alerts

        alerts = wait_until(resolved, timeout=120, interval=2, what="the units' alerts resolved")
    finally:
        if browser is not None:
            browser.close()
    recent = [(a["rule"], a["level"]) for a in alerts["recent"]]
    assert (FAILED, "ok") in recent and (LOOPING, "ok") in recent
    names = {u["name"] for u in demo.get("/api/metrics").json()["services"]["units"]}
    assert not names & set(UNITS)


def _reported_alerted_exported_shown(demo: Demo, browser: Any) -> None:
    def reported() -> dict[str, Any] | None:
        part = demo.get("/api/metrics").json().get("services") or {}
        units = {u["name"]: u for u in part.get("units", [])}
        loop = units.get("dash-loop.service") or {}
        return part if "dash-broken.service" in units and (loop.get("restarts") or 0) >= 3 else None

    part = wait_until(reported, timeout=60, interval=1, what="both units in the samples")
    units = {u["name"]: u for u in part["units"]}
    assert units["dash-broken.service"] == {"name": "dash-broken.service", "state": "failed",
                                            "sub": "failed", "result": "exit-code",
                                            "restarts": 0}  # fmt: skip
    assert units["dash-loop.service"]["state"] in ("auto-restart", "activating", "active")
    assert part["failed"] >= 1 and part["ok"] > 20  # the guest's own units are counted

    def alerted() -> dict[str, str] | None:
        active = {a["rule"]: a["level"] for a in demo.get("/api/alerts").json()["active"]}
        return active if FAILED in active and LOOPING in active else None

    active = wait_until(alerted, timeout=60, interval=1, what="the two units' alerts")
    assert active[FAILED] == "critical" and active[LOOPING] in ("warning", "critical")

    metrics = demo.get("/metrics").text
    assert re.search(r'dashboard_systemd_unit_failed\{[^}]*unit="dash-broken\.service"'
                     r"[^}]*\} 1\.0", metrics), metrics  # fmt: skip
    restarts = re.search(r'dashboard_systemd_unit_restarts_total\{[^}]*'
                         r'unit="dash-loop\.service"[^}]*\} ([0-9.]+)', metrics)  # fmt: skip
    assert restarts and float(restarts.group(1)) >= 3, metrics
    assert re.search(r'dashboard_systemd_units\{[^}]*state="failed"[^}]*\} [1-9]', metrics)
    page = demo.get("/").text  # rendered with the latest sample: the rows are there
    assert ('title="dash-broken.service">dash-broken.service</td>'
            '<td class="crit">failed</td><td class="wide">exit-code</td>') in page  # fmt: skip
    if browser is not None:
        browser.navigate(f"http://localhost:{demo.port}/")
        browser.wait_for("document.body.dataset.seq > 0")  # live: services.js has drawn
        rows = browser.evaluate(
            "[...document.querySelectorAll('#services tr')].map(r => r.textContent).join('|')"
        )
        assert "dash-broken.servicefailedexit-code0" in rows, rows


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
