"""The one line that installs an agent on a new machine (or removes it), as the hub
shows it: in its Add host dialog and from `add-agent NAME --print-install`."""

from __future__ import annotations

import shlex

from server import __version__

SCRIPT_PATH = "/root/dashboard-agent.sh"  # root's own folder: no other user can plant it


def wheel_name(version: str = __version__) -> str:
    return f"host_dashboard-{version}-py3-none-any.whl"


def _fetch(hub: str, ca_file: str) -> str:
    """curl the script into root's folder, verified (TLS, the given CA)."""
    cacert = f"--cacert {shlex.quote(ca_file)} " if ca_file else ""
    return f"curl -fsS {cacert}-o {SCRIPT_PATH} {shlex.quote(hub + '/agent/install.sh')}"


def _options(hub: str, ca_file: str) -> str:
    ca = f" --ca-file {shlex.quote(ca_file)}" if ca_file else ""
    return ca + (" --allow-http" if hub.startswith("http://") else "")


def install_line(hub: str, token: str, ca_file: str = "") -> str:
    """Run as root on the new machine: the script fetched whole before it runs (`&&`),
    the token on its standard input from a builtin (on no command line, in no process
    list)."""
    return (f"{_fetch(hub, ca_file)} && printf %s {shlex.quote(token)}"
            f" | sh {SCRIPT_PATH} --token-file -{_options(hub, ca_file)}")  # fmt: skip


def uninstall_line(hub: str, ca_file: str = "") -> str:
    return f"{_fetch(hub, ca_file)} && sh {SCRIPT_PATH} --uninstall{_options(hub, ca_file)}"
