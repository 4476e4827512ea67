"""The one-line agent install, on a booted Debian guest against a hub on this machine.

The hub runs here behind a real Nginx with a certificate from the test's CA; the
guest (debootstrap + `systemd-nspawn -b`, sharing this machine's network) runs
the line that `add-agent --print-install` prints, as an operator would paste it.
Needs root; the guest is powered off and removed, pass or fail.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from testkit.deploytools import (
    SITE_TEMPLATE,
    NginxProcess,
    build_agent_wheel,
    checkout_site,
    make_ca_and_cert,
    render_epp,
)
from testkit.fleet import wait_until_the_hub_takes
from testkit.guest import Guest
from testkit.history import numbering_problem, samples_between
from testkit.serverproc import ROOT, ServerProcess, free_port
from testkit.system import require_binary, skip_or_fail_under_ci
from testkit.wait import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.guest]

NAME = "guest-1"
GUEST_HOSTNAME = "agent-guest"
GUEST_CA = "/root/hub-ca.pem"
# What the agent leaves on its machine: --uninstall removes every one.
AGENT_PATHS = ("/etc/systemd/system/dashboard-agent.service", "/opt/dashboard-agent",
               "/etc/dashboard-agent", "/var/lib/dashboard-agent",
               "/var/log/dashboard-agent")  # fmt: skip


class Site:
    """The hub (behind Nginx, over HTTPS) and the guest the agent goes on."""

    def __init__(self, hub: ServerProcess, public_url: str, wheels: Path, guest: Guest) -> None:
        self.hub = hub
        self.public_url = public_url
        self.wheels = wheels
        self.guest = guest
        self.nginx: NginxProcess | None = None
        self.nginx_args: tuple[str, Path, str, int] | None = None
        self.line = ""  # the one line the operator was shown

    def serve(self, site_text: str | None = None) -> None:
        """(Re)start the hub's Nginx, with its site or `site_text` in its place."""
        assert self.nginx_args is not None
        if self.nginx is not None:
            self.nginx.stop(graceful=False)  # its WebSockets closed, not waited for
        binary, folder, text, port = self.nginx_args
        self.nginx = NginxProcess(binary, folder, site_text or text, port)

    def hub_command(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`python -m server ...` on the hub's data, as its operator runs it."""
        return subprocess.run(
            [sys.executable, "-m", "server", *args, "--data-dir", str(self.hub.data_dir),
             "--public-url", self.public_url, "--agent-wheel-dir", str(self.wheels)],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    def hosts(self) -> dict[str, dict[str, Any]]:
        return {
            h["id"]: h for h in requests.get(self.hub.url + "/api/hosts", timeout=5).json()["hosts"]
        }

    def main_pid(self) -> int:
        return int(self.guest.run("systemctl show -p MainPID --value dashboard-agent").stdout)

    def left_behind(self) -> list[str]:
        return [p for p in AGENT_PATHS if os.path.lexists(f"{self.guest.rootfs}{p}")]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    if os.geteuid() != 0:
        skip_or_fail_under_ci("a booted guest needs root (systemd-nspawn)")
    nginx_binary, puppet = require_binary("nginx"), require_binary("puppet")
    guest = Guest(
        require_binary("debootstrap"),
        require_binary("systemd-nspawn"),
        require_binary("nsenter"),
        tmp_path_factory.mktemp("agent-guest"),
    )
    work = tmp_path_factory.mktemp("agent-hub")
    ca, cert, key = make_ca_and_cert(work)
    wheels = work / "wheels"  # as `make agent-wheel` builds it
    build_agent_wheel(wheels)
    http_port, tls_port = free_port(), free_port()
    public_url = f"https://localhost:{tls_port}"
    hub = ServerProcess(work / "hub" / "logs", "--proxy-hops", "1", "--allow-anonymous", "true",
                        "--agent-wheel-dir", str(wheels), "--public-url", public_url)  # fmt: skip
    site = Site(hub, public_url, wheels, guest)
    try:
        hub.start()
        site_text = render_epp(puppet, SITE_TEMPLATE, checkout_site(
            f"127.0.0.1:{http_port}", hub.port, tls_cert=str(cert), tls_key=str(key),
            tls_listen=f"127.0.0.1:{tls_port}"))  # fmt: skip
        site.nginx_args = (nginx_binary, work / "nginx", site_text, tls_port)
        site.serve()
        guest.boot(GUEST_HOSTNAME)
        # curl, as on most machines; python3-venv comes later: its absence is a case.
        guest.run("apt-get update -q && apt-get install -y -q --no-install-recommends curl",
                  env={"DEBIAN_FRONTEND": "noninteractive"})  # fmt: skip
        shutil.copy(ca, f"{guest.rootfs}{GUEST_CA}")
        yield site
    finally:
        guest.stop()
        if site.nginx is not None:
            site.nginx.stop()
        hub.stop()


def agent_log(site: Site) -> str:
    return Path(f"{site.guest.rootfs}/var/log/dashboard-agent/dashboard.log").read_text()


def install_line(site: Site) -> str:
    made = site.hub_command("add-agent", NAME, "--print-install", "--ca-file", GUEST_CA)
    assert made.returncode == 0, made.stderr
    line = made.stdout.strip()
    assert "--token-file -" in line and "--cacert /root/hub-ca.pem" in line, line
    return line


def test_what_the_machine_lacks_or_the_hub_refuses_is_said_and_nothing_is_left(
    site: Site,
) -> None:
    line = install_line(site)
    token = re.search(r"printf %s (\S+) \|", line)
    assert token, line
    guest = site.guest
    lacking = guest.run(line, check=False)
    assert lacking.returncode == 1
    assert "install python3-venv (apt-get install python3-venv)" in lacking.stderr
    assert site.left_behind() == []

    no_systemd = guest.run(
        f"unshare -m sh -c 'mount -t tmpfs none /run/systemd && {line}'", check=False
    )
    assert no_systemd.returncode == 1
    assert "does not run systemd" in no_systemd.stderr and "-m server agent" in no_systemd.stderr
    assert site.left_behind() == []

    guest.run("apt-get install -y -q --no-install-recommends python3-venv",
              env={"DEBIAN_FRONTEND": "noninteractive"})  # fmt: skip
    wrong = guest.run(line.replace(token.group(1), "W" * 43), check=False)
    assert wrong.returncode == 1
    assert "the hub does not know this token" in wrong.stderr, wrong.stderr
    assert "Nothing was installed" in wrong.stderr
    assert site.left_behind() == []

    # The same script, from a hub that does not answer (nothing listens on its port).
    script = requests.get(site.hub.url + "/agent/install.sh", timeout=10).text
    closed = f"https://localhost:{free_port()}"
    (site.guest.rootfs / "root/closed.sh").write_text(
        re.sub(r"(?m)^HUB=.*$", f"HUB={closed}", script)
    )
    silent = guest.run(f"printf %s {token.group(1)} | sh /root/closed.sh --token-file -"
                       f" --ca-file {GUEST_CA}", check=False)  # fmt: skip
    assert silent.returncode == 1
    assert f"the hub at {closed} does not answer" in silent.stderr, silent.stderr
    assert site.left_behind() == []
    assert "agent_outdated" not in site.hosts().get(NAME, {})  # it never connected

    # A used token: another machine's agent holds it (a stand-in, from this machine).
    other = wait_until_the_hub_takes(site.hub.url, token.group(1))
    try:
        used = guest.run(line, check=False)
    finally:
        other.disconnect()
    assert used.returncode == 1
    assert f"this token is in use: host {NAME}'s agent is connected" in used.stderr, used.stderr
    assert site.left_behind() == []


def test_the_one_line_installs_a_hardened_agent_the_hub_shows_live(site: Site) -> None:
    site.hub_command("remove-agent", NAME)  # the cases before made it: made again
    line = site.line = install_line(site)
    started = time.monotonic()
    installed = site.guest.run(line, check=False)
    took = time.monotonic() - started
    assert installed.returncode == 0, installed.stderr
    assert f"the hub reports this host, {NAME}: live" in installed.stderr
    print(f"\nthe one line took {took:.1f} s on the guest")  # bench/results: install time

    def live() -> dict[str, Any] | None:
        host = site.hosts().get(NAME)
        return host if host and host["state"] == "ok" else None

    host = wait_until(live, timeout=30, what="the guest's live tile")
    assert host["agent_version"] == "0.2.0"
    static = requests.get(f"{site.hub.url}/api/hosts/{NAME}/static", timeout=5).json()
    assert static["hostname"] == GUEST_HOSTNAME  # the guest's numbers, not this machine's
    assert host["agent_outdated"] is False

    guest = site.guest
    asked = "User ProtectSystem NoNewPrivileges ProtectHome CapabilityBoundingSet"
    shown = guest.run("systemctl show dashboard-agent" + " -p ".join(["", *asked.split()])).stdout
    assert "User=dashboard-agent" in shown and "ProtectSystem=strict" in shown
    assert "NoNewPrivileges=yes" in shown and "ProtectHome=read-only" in shown
    assert "CapabilityBoundingSet=\n" in shown  # none at all
    pid = site.main_pid()
    assert guest.run(f"stat -c %U /proc/{pid}").stdout.strip() == "dashboard-agent"
    # Every part of a sample read as that user: none null for want of access.
    sample = requests.get(f"{site.hub.url}/api/hosts/{NAME}/metrics", timeout=5).json()
    unread = [k for k in ("cpu", "memory", "disks", "net", "services", "addresses")
              if k in sample and sample[k] is None]  # fmt: skip
    assert unread == [], unread
    assert "cannot read" not in agent_log(site), agent_log(site)
    token = Path(f"{guest.rootfs}/etc/dashboard-agent/token").stat()
    assert token.st_mode & 0o777 == 0o600 and token.st_uid == 0
    size = guest.run("du -sm /opt/dashboard-agent | cut -f1").stdout.strip()
    print(f"the agent's installed size: {size} MiB")  # bench/results: size on disk


def test_a_second_run_changes_nothing(site: Site) -> None:
    guest = site.guest
    pid = site.main_pid()
    unit = Path(f"{guest.rootfs}/etc/systemd/system/dashboard-agent.service").stat().st_mtime_ns
    again = guest.run(f"sh /root/dashboard-agent.sh --ca-file {GUEST_CA}", check=False)
    assert again.returncode == 0, again.stderr
    assert "already installed and running: nothing changed" in again.stderr
    assert site.main_pid() == pid
    assert Path(f"{guest.rootfs}/etc/systemd/system/dashboard-agent.service").stat().st_mtime_ns \
        == unit  # fmt: skip


def test_a_killed_agent_is_restarted_and_its_history_has_only_that_gap(site: Site) -> None:
    began = time.time()
    time.sleep(10)
    pid = site.main_pid()
    killed = time.time()
    site.guest.run(f"kill -KILL {pid}")
    wait_until(lambda: site.main_pid() not in (0, pid), timeout=30, interval=0.5,
               what="systemd starting the agent again")  # fmt: skip
    wait_until(lambda: (site.hosts()[NAME]["last_sample_age"] or 9) < 2, timeout=30,
               interval=0.5, what="the agent's samples again")  # fmt: skip
    time.sleep(7)  # the store commits every 5 s
    ended = time.time()
    stamps = [s["ts"] for s in samples_between(site.hub.url, began, ended, host=NAME)]
    gaps = [(a, b - a) for a, b in itertools.pairwise(stamps) if b - a > 2.0]
    assert stamps and stamps[0] < killed - 5 and stamps[-1] > ended - 7, stamps
    assert len(gaps) == 1, gaps  # the kill's, and none beside it
    at, gap = gaps[0]
    assert killed - 2 <= at <= killed + 1 and gap <= 10, gaps  # RestartSec 2, and a start


def test_an_older_agent_is_upgraded_by_the_one_line_and_its_buffer_replayed(
    site: Site, tmp_path: Path
) -> None:
    """The agent of the parent commit (stamped 0.1.99: older than the hub) runs on the
    guest, its link to the hub cut at Nginx so that its samples wait in its buffer. The
    same one line upgrades it: the old agent keeps its buffer at its stop, the new one
    sends it first once the link is back, and no sample taken is lost."""
    git = require_binary("git")
    parent = tmp_path / "parent"
    parent.mkdir()
    archive = subprocess.run([git, "-C", str(ROOT), "archive", "HEAD~1"], capture_output=True,
                             timeout=60, check=False)  # fmt: skip
    if archive.returncode != 0:
        skip_or_fail_under_ci(f"no parent commit to build: {archive.stderr.decode()[:200]}")
    subprocess.run(["tar", "-x", "-C", str(parent)], input=archive.stdout, check=True)
    project = parent / "pyproject.toml"
    project.write_text(re.sub(r'(?m)^version = ".*"$', 'version = "0.1.99"', project.read_text()))
    old = build_agent_wheel(tmp_path / "old", parent)
    guest = site.guest
    shutil.copy(old, f"{guest.rootfs}/root/{old.name}")
    guest.run(f"/opt/dashboard-agent/venv/bin/pip install --quiet --no-deps --force-reinstall"
              f" /root/{old.name} && systemctl restart dashboard-agent")  # fmt: skip

    def older() -> dict[str, Any] | None:
        host = site.hosts()[NAME]
        return host if host["agent_version"] == "0.1.99" else None

    outdated = wait_until(older, timeout=30, what="the older agent at the hub")
    assert outdated["agent_outdated"] is True

    assert site.nginx_args is not None
    blocked = site.nginx_args[2].replace(
        "location /agents/socket.io/ {", "location /agents/socket.io/ {\n        return 503;"
    )
    assert blocked != site.nginx_args[2]
    log = Path(f"{guest.rootfs}/var/log/dashboard-agent/dashboard.log")
    mark = len(log.read_text())  # the lines before are of the restarts before

    def since() -> str:
        return log.read_text()[mark:]

    site.serve(blocked)  # the link cut; the install's paths still served
    began = time.time()
    try:
        time.sleep(8)
        upgrade: list[subprocess.CompletedProcess[str]] = []
        runner = threading.Thread(target=lambda: upgrade.append(guest.run(site.line, check=False)))
        upgrading = time.time()
        runner.start()
        wait_until(lambda: "samples the hub has not acknowledged" in since(), timeout=120,
                   interval=0.5, what="the old agent keeping its buffer at its stop")  # fmt: skip
        swapped = time.time()
    finally:
        site.serve()
    runner.join(120)
    assert upgrade and upgrade[0].returncode == 0, upgrade
    assert f"the hub reports this host, {NAME}: live" in upgrade[0].stderr
    kept = re.search(r"kept (\d+) samples the hub has not acknowledged", since())
    assert kept and int(kept.group(1)) >= 8, since()
    assert f"sending first the {kept.group(1)} samples the last agent kept" in since()
    host = site.hosts()[NAME]
    assert host["agent_version"] == "0.2.0" and host["agent_outdated"] is False

    time.sleep(7)  # the store commits every 5 s
    stored = samples_between(site.hub.url, began - 5, time.time(), host=NAME)
    stamps = [s["ts"] for s in stored]
    assert len(stamps) == len(set(stamps)), "duplicates"
    # No sample lost: the agent numbers its samples, and the new process goes on from the
    # old one's numbers, so the store holds every number of the window, the cut's too.
    assert stored and all(isinstance(s.get("seq"), int) for s in stored), stored[:3]
    problem = numbering_problem([int(s["seq"]) for s in stored])
    assert problem is None, (problem, upgrading, swapped)
    # In time, no hole longer than the swap's: the old process's stop (its link's loops get
    # 2 s each to end before it keeps its buffer) to the new one's first sample. (A busy
    # machine's late tick leaves 2-3 s between two samples, nothing missing.)
    gaps = [(a, b - a) for a, b in itertools.pairwise(stamps) if b - a > 2.0]
    assert all(gap <= 10 for _, gap in gaps), (gaps, upgrading, swapped)


def test_uninstall_leaves_no_unit_user_or_files(site: Site) -> None:
    removed = site.hub_command("remove-agent", NAME, "--ca-file", GUEST_CA)
    assert removed.returncode == 0, removed.stderr
    line = removed.stdout.strip()
    assert " --uninstall" in line and f"--cacert {GUEST_CA}" in line, line
    gone = site.guest.run(line, check=False)
    assert gone.returncode == 0, gone.stderr
    guest = site.guest
    assert site.left_behind() == []
    assert guest.run("systemctl cat dashboard-agent", check=False).returncode != 0
    assert guest.run("getent passwd dashboard-agent", check=False).stdout == ""
    # The pattern does not match the grep's own command line.
    running = guest.run("grep -l 'dashboard-agen[t]' /proc/[0-9]*/cmdline", check=False).stdout
    assert running.strip() == "", running
