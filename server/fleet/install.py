"""The one-line agent install, served by the hub: /agent/install.sh, this version's
wheel beside it, and /agent/check, where the script asks about its token.

The script is install.sh (beside this module) with the hub's address, its
version and the wheel's SHA-256 written in: curl verifies the script (TLS
against the system's or the given CA), the script verifies the wheel (the
digest), so nothing reaches a shell that was not both. The wheel is built
beforehand (`make agent-wheel`, or the Puppet hub class) into `agent_wheel_dir`:
never in a request. Its dependencies come from the new machine's package index.

These paths are open without a login: they carry the project's code, and the
check answers only to a token's holder about that token's own host.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shlex
import threading
from importlib import resources
from typing import Any

from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue

from server import __version__
from server.access.login import foreign_origin
from server.blocking import run_blocking
from server.config import Config
from server.fleet.oneline import install_line, wheel_name
from server.fleet.tokens import NAME, AgentTokens, wheel_problem
from server.ratelimit import TokenBucket
from server.state import current_state

agent_files = Blueprint("agent_files", __name__)
log = logging.getLogger("dashboard.fleet")

# A new machine asks a few times (download, check, wait for its samples): per address.
_asks = TokenBucket(burst=30, rate=1.0)


class Wheel:
    """This version's wheel in `folder`: its bytes and digest, read again when it changes."""

    def __init__(self, folder: str) -> None:
        self.path = os.path.join(folder, wheel_name())
        self._seen: tuple[int, int] | None = None
        self._data = b""
        self._digest = ""
        self._lock = threading.Lock()

    def read(self) -> tuple[bytes, str] | None:
        """(bytes, sha256 hex), or None where the folder has no wheel of this version.
        Blocking: call it through run_blocking."""
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        with self._lock:
            if self._seen != (info.st_mtime_ns, info.st_size):
                with open(self.path, "rb") as handle:
                    self._data = handle.read()
                self._digest = hashlib.sha256(self._data).hexdigest()
                self._seen = (info.st_mtime_ns, info.st_size)
            return self._data, self._digest


def link_url(config: Config, base: str) -> str:
    """Where an agent connects: behind Nginx (proxy_hops) its /agents/ location, which
    goes to the core; served directly, the app's own Socket.IO path."""
    return f"{base}/agents" if config.proxy_hops else base


# Read once, at import: not a file read on the event loop per request.
SCRIPT = (resources.files("server.fleet") / "install.sh").read_text(encoding="utf-8")


def script_text(hub: str, link: str, digest: str) -> str:
    text = SCRIPT
    values = {"HUB": hub, "LINK": link, "VERSION": __version__, "WHEEL": wheel_name(),
              "WHEEL_SHA256": digest}  # fmt: skip
    for key, value in values.items():
        text = text.replace(f"@{key}@", shlex.quote(value))
    return text


def _base(config: Config) -> str:
    return config.public_url or request.url_root.rstrip("/")


def _error(status: int, message: str) -> Response:
    response = jsonify(error=message)
    response.status_code = status
    return response


def can_add_hosts() -> bool:
    """Whether this request's user may add a host: a login, never a page open to all
    (a token lets a machine into the fleet)."""
    login = current_state().access.login
    return login.credentials.required and login.user(request) is not None


def _too_fast() -> Response | None:
    if _asks.take(str(request.remote_addr)):
        return None
    return _error(429, "too many requests from this address: slow down")


_wheels: dict[str, Wheel] = {}  # by folder: one per process


def _wheel(config: Config) -> Wheel:
    return _wheels.setdefault(config.agent_wheels, Wheel(config.agent_wheels))


def _served_wheel(config: Config) -> tuple[bytes, str] | Response:
    """This version's wheel and digest; or the answer to give: too many requests from
    this address (429), or no wheel to serve (503)."""
    refused = _too_fast()
    if refused is not None:
        return refused
    found = run_blocking(_wheel(config).read)
    if found is None:
        return _error(503, f"this hub has no agent wheel of its version ({wheel_name()} in"
                           f" {config.agent_wheels}): build it with `make agent-wheel` or"
                           " the Puppet hub class")  # fmt: skip
    return found


@agent_files.get("/agent/install.sh")
def install_script() -> ResponseReturnValue:
    config = current_state().config
    found = _served_wheel(config)
    if isinstance(found, Response):
        return found
    base = _base(config)
    body = script_text(base, link_url(config, base), found[1])
    return Response(body, mimetype="text/x-shellscript", headers={"Cache-Control": "no-store"})


@agent_files.get("/agent/<name>")
def wheel(name: str) -> ResponseReturnValue:
    if name != wheel_name():
        return _error(404, f"this hub serves {wheel_name()} only")
    found = _served_wheel(current_state().config)
    if isinstance(found, Response):
        return found
    return Response(found[0], mimetype="application/octet-stream")


@agent_files.post("/agent/check")
def check() -> ResponseReturnValue:
    """{"token": ...}: the token's host, whether its agent is connected, and its latest
    sample's age. 403 for a token the hub does not know (wrong, or removed)."""
    state = current_state()
    refused = _too_fast()
    if refused is not None:
        return refused
    body: Any = request.get_json(silent=True) if (request.content_length or 0) <= 1024 else None
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str):
        return _error(400, 'a JSON body {"token": "..."} of at most 1 KiB')
    name = state.link.tokens.host_of(token)
    if name is None:  # added since the tick last read the file: read it afresh
        name = run_blocking(lambda: AgentTokens(state.config.data_dir).host_of(token))
    if name is None or name == state.fleet.local.id:
        return _error(
            403,
            "the hub does not know this token: it is wrong, or was removed (remove-agent);"
            " make one with the hub's Add host or add-agent NAME",
        )
    host = state.fleet.get(name)
    age = host.last_sample_age() if host is not None else None
    return jsonify(
        host=name,
        connected=bool(host and host.connected),
        last_sample_age=None if age is None else round(age, 1),
        agent_version=host.agent_version if host is not None else None,
        hub_version=__version__,
    )


@agent_files.post("/api/agents")
def add_agent() -> ResponseReturnValue:
    """{"name", "ca_file"?}: a new agent's token, made for the page's Add host, and the
    one line that installs it (the token in it, shown once). 201, or a JSON error."""
    state = current_state()
    if foreign_origin():
        return _error(403, "cross-origin request refused")
    if not can_add_hosts():
        return _error(403, "adding a host needs a login (password_hash or [users]): a page"
                           " open to all may not let machines into the fleet")  # fmt: skip
    body: Any = request.get_json(silent=True) if (request.content_length or 0) <= 1024 else None
    name = body.get("name") if isinstance(body, dict) else None
    ca_file = body.get("ca_file") or "" if isinstance(body, dict) else ""
    if not isinstance(name, str) or not NAME.match(name):
        return _error(400, "name: letters, digits, '.', '_' or '-', at most 64")
    if not isinstance(ca_file, str) or len(ca_file) > 300 or (ca_file and ca_file[0] != "/"):
        return _error(400, "ca_file: the CA's path on the new machine, from /")
    if name == state.fleet.local.id:
        return _error(400, f"{name!r} is the hub's own host: give the new one another name")
    config = state.config

    try:
        run_blocking(wheel_problem, config)
    except ValueError as exc:
        return _error(503, str(exc))
    try:
        token = run_blocking(lambda: AgentTokens(config.data_dir).add(name))  # reads the file
    except ValueError as exc:  # the name is taken
        return _error(409, str(exc))
    log.info("agent %r added from the page by %s", name, state.access.login.user(request))
    line = install_line(_base(config), token, ca_file)
    return jsonify(name=name, line=line), 201
