"""What this machine is, read once at start (StaticData): its names, OS, CPU,
memory and swap sizes, addresses and boot time."""

from __future__ import annotations

import os
import platform
import shlex
import socket
from typing import Any

import psutil

from server.sampling.collector import FailureLog


def facts(root: str = "/") -> dict[str, Any]:
    """The host's static facts, as StaticData's fields; what cannot be read is None.
    `root`: where the host's / is (in a container, its mount: the OS is the host's)."""
    reader = FailureLog()
    return {
        "hostname": hostname(root),
        "fqdn": socket.getfqdn(),
        "os": {
            "system": platform.system(),
            "release": platform.release(),
            "distribution": distribution(root),
            "machine": platform.machine(),
        },
        "cpu": {
            "model": cpu_model(),
            "logical": reader.read("cpu.logical", lambda: psutil.cpu_count(logical=True)),
            "physical": reader.read("cpu.physical", lambda: psutil.cpu_count(logical=False)),
        },
        "memory_total": reader.read("memory_total", memory_total),
        "swap_total": reader.read("swap_total", lambda: psutil.swap_memory().total),
        "addresses": reader.read("addresses", addresses) or [],
        "boot_time": reader.read("boot_time", boot_time),
    }


def hostname(root: str = "/") -> str:
    """This machine's name; in a container (`root` not /), the host's, from its /etc/hostname
    (a container's own is its id, unless it shares the host's network)."""
    if root != "/":
        try:
            with open(os.path.join(root, "etc/hostname"), encoding="utf-8") as handle:
                name = handle.read().strip()
        except (OSError, UnicodeDecodeError):
            name = ""
        if name and len(name) <= 253 and name.isprintable():
            return name
    return socket.gethostname()


def memory_total() -> int:
    return psutil.virtual_memory().total


def boot_time() -> float:
    return psutil.boot_time()


def distribution(root: str = "/") -> str | None:
    """os-release's name of the system whose / is `root` (the two paths systemd reads)."""
    for name in ("etc/os-release", "usr/lib/os-release"):
        try:
            with open(os.path.join(root, name), encoding="utf-8", errors="replace") as handle:
                release = parse_os_release(handle.read())
        except OSError:
            continue
        return release.get("PRETTY_NAME") or release.get("NAME")
    return None


def parse_os_release(text: str) -> dict[str, str]:
    """KEY=value lines, the value in shell quoting; a line that is not one is skipped."""
    fields = {}
    for line in text.splitlines():
        key, equals, value = line.strip().partition("=")
        if not equals or not key.isidentifier():
            continue
        try:
            words = shlex.split(value)
        except ValueError:  # an unclosed quote
            continue
        fields[key] = " ".join(words)
    return fields


def cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware", "cpu model"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or None


_FAMILIES = {socket.AF_INET: "ipv4", socket.AF_INET6: "ipv6"}


def addresses() -> list[dict[str, str]]:
    """IP addresses per interface, non-loopback IPv4 first (the 'main' one)."""
    found = []
    for interface, addrs in psutil.net_if_addrs().items():
        for addr in addrs:
            family = _FAMILIES.get(addr.family)
            if family:
                found.append({"interface": interface, "family": family, "address": addr.address})

    def rank(entry: dict[str, str]) -> tuple[int, int, str]:
        loopback = entry["interface"] == "lo" or entry["address"] in ("127.0.0.1", "::1")
        return (loopback, entry["family"] != "ipv4", entry["interface"])

    return sorted(found, key=rank)
