"""Agent tokens: made once, shown once, kept only as a hash; the host's identity.

A token is 32 random bytes, so a plain SHA-256 of it is as good as a slow
KDF and costs a microsecond: an agent's connect never burdens the hub.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import sys
import time
from collections.abc import Sequence

from server.config import Config, ConfigError
from server.fleet.oneline import install_line, uninstall_line, wheel_name
from server.private import write_private_json

NAME = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")  # \Z: "$" would let a newline end it


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class AgentTokens:
    """data_dir/agents.json: {name: {"hash": sha256 hex, "added": epoch}}."""

    def __init__(self, data_dir: str) -> None:
        self.path = os.path.join(data_dir, "agents.json")
        self._by_hash: dict[str, str] = {}
        self._names: dict[str, dict[str, object]] = {}
        self._mtime: float | None = None
        self.reload()

    def reload(self) -> bool:
        """Read the file again if it changed; True if it did. Call off the event loop."""
        try:
            mtime = os.stat(self.path).st_mtime
        except FileNotFoundError:
            mtime = None
        if mtime == self._mtime and (mtime is not None or not self._names):
            return False
        self._mtime = mtime
        self._names = self._read()
        self._by_hash = {str(v["hash"]): name for name, v in self._names.items()}
        return True

    def _read(self) -> dict[str, dict[str, object]]:
        try:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ConfigError(f"setting 'data_dir': {self.path!r} is not usable: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"setting 'data_dir': {self.path!r} is not a table of agents")
        return {str(k): v for k, v in data.items() if isinstance(v, dict) and "hash" in v}

    def host_of(self, token: object) -> str | None:
        """The agent name a token belongs to, or None."""
        if not isinstance(token, str) or not 20 <= len(token) <= 200:
            return None
        return self._by_hash.get(token_hash(token))

    @property
    def names(self) -> list[str]:
        return sorted(self._names)

    def add(self, name: str) -> str:
        if not NAME.match(name):
            raise ValueError("a name of letters, digits, '.', '_' or '-', at most 64")
        if name in self._names:
            raise ValueError(f"agent {name!r} exists; remove-agent it first to make a new token")
        token = secrets.token_urlsafe(32)
        self._names[name] = {"hash": token_hash(token), "added": round(time.time())}
        self._write()
        return token

    def remove(self, name: str) -> None:
        if self._names.pop(name, None) is None:
            raise ValueError(f"no agent named {name!r}")
        self._write()

    def _write(self) -> None:
        self._by_hash = {str(v["hash"]): name for name, v in self._names.items()}
        write_private_json(self.path, self._names)


def agents_command(
    command: str,
    args: Sequence[str],
    config: Config,
    print_install: bool = False,
    ca_file: str = "",
) -> int:
    """`add-agent NAME [--print-install [--ca-file PATH]]`, `list-agents`,
    `remove-agent NAME` on the hub's data_dir."""
    tokens = AgentTokens(config.data_dir)
    try:
        if command == "list-agents":
            for name in tokens.names:
                print(name)
            return 0
        if len(args) != 1:
            print(f"python -m server {command}: give one agent NAME", file=sys.stderr)
            return 2
        if command == "add-agent":
            if print_install:
                install_problem(config)
            token = tokens.add(args[0])
            if print_install:
                print(install_line(config.public_url, token, ca_file))
                print(f"agent {args[0]!r} added: run that line as root on the new machine"
                      " (its token is in it, shown once)", file=sys.stderr)  # fmt: skip
                return 0
            print(token)
            print(
                f"agent {args[0]!r} added: this token is shown once; on the agent set "
                "hub_token to it (DASHBOARD_HUB_TOKEN)",
                file=sys.stderr,
            )
            return 0
        tokens.remove(args[0])
        print(f"agent {args[0]!r} removed: its token is refused from now on", file=sys.stderr)
        if config.public_url:
            print("to stop the agent and remove it from its machine, run there as root:",
                  file=sys.stderr)  # fmt: skip
            print(uninstall_line(config.public_url, ca_file))
        return 0
    except ValueError as exc:
        print(f"python -m server {command}: error: {exc}", file=sys.stderr)
        return 2


def install_problem(config: Config) -> None:
    """Raise ValueError where this hub cannot serve the one-line install to another
    machine from the command line (a page has its own address to go by)."""
    if not config.public_url:
        raise ValueError(
            "setting 'public_url' is empty: the install line needs the hub's address as"
            " the new machine reaches it (https://hub.example.net)"
        )
    wheel_problem(config)


def wheel_problem(config: Config) -> None:
    """Raise ValueError where `agent_wheel_dir` holds no wheel of this version."""
    wheel = os.path.join(config.agent_wheels, wheel_name())
    if not os.path.isfile(wheel):
        raise ValueError(
            f"setting 'agent_wheel_dir': no {wheel_name()} in {config.agent_wheels}:"
            " build it with `make agent-wheel`"
        )
