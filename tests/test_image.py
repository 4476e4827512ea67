"""The container image (Dockerfile): one image for the hub and the agent, and an agent's
container that reports the host it runs on, not itself.

The base is the guest's Debian root filesystem (testkit/guest.py) brought in with
`docker import` (no registry is reachable), with python3-venv and this machine's CA
bundle added. The image is built from the checkout by Debian's docker.io (vfs, no
bridge: the build's steps use the host's network to reach the package index). The
engine's data root is a tmpfs: a container's own / is then a tmpfs, the host's is
not, so the agent's root filesystem tells whose it reads.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from server import __version__
from testkit.docker import IMAGE as BUSYBOX
from testkit.docker import Docker, mount_table
from testkit.guest import rootfs_tar
from testkit.serverproc import ROOT, free_port
from testkit.system import require_binary, skip_or_fail_under_ci
from testkit.wait import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.guest]

BARE = "dashtest/debian:1"
BASE = "dashtest/debian-python:1"
IMAGE = "dashtest/host-dashboard:1"
IMAGE_UID = 10001  # the Dockerfile's user
BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# What docs/container.md's agent command and compose.agent.yml give the agent's container.
AGENT_FLAGS = ("--network", "host", "--pid", "host", "--cgroupns", "host", "--read-only",
               "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true")  # fmt: skip


def root_is_shared() -> bool:
    """Whether / propagates mounts (rslave needs it; a systemd host's is, this sandbox's
    may not be)."""
    root = next((fields for fields in mount_table() if fields[4] == "/"), None)
    return root is not None and any(f.startswith("shared:") for f in root[6 : root.index("-")])


def make_base(docker: Docker, debootstrap: str) -> None:
    """The guest's Debian as an image, with what a Python base image has: venv, and (here)
    the CA bundle this machine reaches the package index with."""
    with open(rootfs_tar(debootstrap), "rb") as tar:
        subprocess.run([docker.docker, "import", "-", BARE], stdin=tar, env=docker.env,
                       check=True, capture_output=True, timeout=300)  # fmt: skip
    script = (
        "cp /tmp/ca.crt /etc/ssl/certs/ca-certificates.crt"
        " && printf '[global]\\ncert = /etc/ssl/certs/ca-certificates.crt\\n' > /etc/pip.conf"
        " && apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q"
        " --no-install-recommends python3-venv && apt-get clean && rm -rf /var/lib/apt/lists/*"
    )
    docker.cli("run", "--name", "dashtest-base", "--network", "host", "-v",
               f"{BUNDLE}:/tmp/ca.crt:ro", BARE, "/bin/sh", "-c", script, timeout=600)  # fmt: skip
    docker.cli("commit", "dashtest-base", BASE)
    docker.cli("rm", "dashtest-base")


@pytest.fixture(scope="module")
def engine() -> Iterator[Docker]:
    if os.geteuid() != 0:
        skip_or_fail_under_ci("dockerd and its tmpfs need root")
    debootstrap = require_binary("debootstrap")
    docker = Docker(require_binary("dockerd"), require_binary("docker"),
                    require_binary("busybox"), data_tmpfs_mib=8192)  # fmt: skip
    try:
        docker.start()
        make_base(docker, debootstrap)
        built = subprocess.run(
            [docker.docker, "build", "--network", "host", "--build-arg", f"BASE={BASE}",
             "-t", IMAGE, str(ROOT)],
            env={**docker.env, "DOCKER_BUILDKIT": "0"}, capture_output=True, text=True,
            timeout=900,
        )  # fmt: skip
        assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
        yield docker
    finally:
        docker.stop()


def still_running(engine: Docker, name: str) -> None:
    """Raises with what the container printed, once it has stopped."""
    if engine.cli("inspect", "-f", "{{.State.Running}}", name).stdout.strip() != "true":
        logs = engine.cli("logs", name)
        raise AssertionError(f"{name} stopped: {logs.stdout[-2000:]}{logs.stderr[-2000:]}")


def api(url: str) -> Any:
    answer = requests.get(url, timeout=5)
    answer.raise_for_status()
    return answer.json()


def test_the_image_runs_a_hub_and_an_agent_that_reports_the_host(
    engine: Docker, tmp_path: Path
) -> None:
    # The hub: the image's default command, on this machine's loopback.
    port = free_port()
    hub = f"http://127.0.0.1:{port}"
    engine.cli("run", "-d", "--name", "dashtest-hub", "--network", "host", "--read-only",
               "--cap-drop", "ALL", IMAGE, "--port", str(port), "--public-url", hub)  # fmt: skip

    def serving() -> bool:
        still_running(engine, "dashtest-hub")
        try:
            return requests.get(hub + "/healthz", timeout=2).ok
        except requests.RequestException:
            return False

    wait_until(serving, timeout=60, what="the hub's container serving")
    added = engine.cli("exec", "dashtest-hub", "/opt/dashboard/bin/python", "-m", "server",
                       "add-agent", "boxed")  # fmt: skip
    token = added.stdout.split()[0]
    # It serves the one-line install of its own version: the wheel is in the image.
    script = requests.get(hub + "/agent/install.sh", timeout=5)
    assert script.ok and f"host_dashboard-{__version__}-py3-none-any.whl" in script.text

    # The agent, as docs/container.md runs it; its token a 0600 file of the image's user.
    token_file = tmp_path / "agent-token"
    token_file.write_text(token)
    os.chown(token_file, IMAGE_UID, -1)
    token_file.chmod(0o600)
    host_mount = "/:/host:ro,rslave" if root_is_shared() else "/:/host:ro"
    # A container of the host's beside it, which the agent lists through the engine's
    # socket (read-only, by its group) and the host's cgroups.
    engine.run("dashtest-sleeper", BUSYBOX, "sleep", "600")
    socket_group = str(os.stat(engine.socket).st_gid)
    engine.cli(
        "run", "-d", "--name", "dashtest-agent", *AGENT_FLAGS, "--cpuset-cpus", "0",
        "-v", host_mount, "-v", f"{token_file}:/run/secrets/agent-token:ro",
        "-v", f"{engine.socket}:/var/run/docker.sock:ro", "--group-add", socket_group,
        "-e", f"DASHBOARD_HUB_URL={hub}", "-e", "DASHBOARD_HUB_TOKEN_FILE=/run/secrets/agent-token",
        "-e", "DASHBOARD_HOST_ROOT=/host", "-e", "DASHBOARD_SERVICES=off",
        "-e", "DASHBOARD_SMART=off", IMAGE, "agent",
    )  # fmt: skip
    # A process of the host's, busy enough to be in its top processes.
    burner_binary = tmp_path / "dashburn"
    shutil.copy(require_binary("yes"), burner_binary)
    burner = subprocess.Popen([str(burner_binary)], stdout=subprocess.DEVNULL)
    try:

        def live() -> dict[str, Any] | None:
            still_running(engine, "dashtest-agent")
            host = {h["id"]: h for h in api(hub + "/api/hosts")["hosts"]}.get("boxed")
            # Live: sampled within the last seconds, an alarm state of its own (not stale, down).
            live = host and host["state"] in ("ok", "warn", "crit") and host["last_sample_age"] < 3
            return host if live else None

        try:
            tile = wait_until(live, timeout=60, what="the agent's container live at the hub")
        except TimeoutError:
            logs = engine.cli("logs", "dashtest-agent")
            raise AssertionError(logs.stdout[-2000:] + logs.stderr[-2000:]) from None
        static = api(hub + "/api/hosts/boxed/static")

        last: list[dict[str, Any]] = []

        def complete() -> dict[str, Any] | None:
            """A sample with the host's busy process, and the container's slower figures
            (read every few ticks)."""
            sample: dict[str, Any] = api(hub + "/api/hosts/boxed/metrics")
            last[:] = [sample]
            names = {(p["pid"], p["name"]) for p in sample.get("processes") or []}
            boxes = (sample.get("containers") or {}).get("items") or []
            pids = [c["pids"] for c in boxes if c["name"] == "dashtest-sleeper"]
            return sample if (burner.pid, "dashburn") in names and pids != [None] else None

        try:
            sample = wait_until(complete, timeout=30, what="the host's process in the agent's")
        except TimeoutError:
            raise AssertionError(f"the last sample: {last}") from None
    finally:
        burner.kill()
        burner.wait()
    printed = engine.cli("logs", "dashtest-agent").stderr
    assert tile["agent_version"] == __version__ and tile["agent_outdated"] is False, printed

    def inside(code: str) -> str:
        ran = engine.cli("exec", "dashtest-agent", "/opt/dashboard/bin/python", "-c", code)
        return ran.stdout.strip()

    # The CPU count is the host's, though the container may run on one CPU only.
    assert static["cpu"]["logical"] == psutil.cpu_count(logical=True)
    assert inside("import os; print(len(os.sched_getaffinity(0)))") == "1"
    # Its root filesystem is the host's, not the container's own (a tmpfs).
    host_root = os.statvfs("/")
    root = next(d for d in sample["disks"] if d["mount"] == "/")
    host_device = next(p for p in psutil.disk_partitions(all=True) if p.mountpoint == "/")
    assert (root["device"], root["fstype"]) == (host_device.device, host_device.fstype)
    assert root["total"] == host_root.f_blocks * host_root.f_frsize
    own = inside("import os; s = os.statvfs('/'); print(s.f_blocks * s.f_frsize)")
    assert int(own) == 8192 * 2**20 != root["total"]
    assert all(not d["mount"].startswith("/host") for d in sample["disks"]), sample["disks"]
    # The host's containers, its own among them, through the socket and the host's cgroups.
    boxes = {c["name"]: c for c in sample["containers"]["items"]}
    assert {"dashtest-sleeper", "dashtest-hub", "dashtest-agent"} <= set(boxes), boxes
    assert (
        boxes["dashtest-sleeper"]["state"] == "running" and boxes["dashtest-sleeper"]["pids"] == 1
    )
    # The OS is the host's.
    with open("/etc/os-release", encoding="utf-8") as release:
        pretty = next(line for line in release if line.startswith("PRETTY_NAME="))
    assert static["os"]["distribution"] == pretty.split("=", 1)[1].strip().strip('"')
