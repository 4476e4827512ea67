"""Access control, one concern a module: Host check, login and session, connection caps.

install() puts them in front of the app: a WSGI Host guard around everything
(Socket.IO too), a before_request login check for pages, REST and /metrics
(session cookie or HTTP Basic), the login page, and the caps a Socket.IO
connect passes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from server.access.connections import ConnectionCaps
from server.access.hosts import HostGuard
from server.access.login import Login, SessionInterface, login_pages, require_login, secret_key
from server.access.refused import log_refusal
from server.config import Config


@dataclasses.dataclass
class Access:
    login: Login
    caps: ConnectionCaps


def install(app: Flask, config: Config) -> Access:
    """Put the access checks in front of `app` (call after SocketIO has wrapped it)."""
    access = Access(
        Login(config), ConnectionCaps(config.max_connections, config.max_connections_per_ip)
    )
    app.extensions["dashboard_login"] = access.login
    app.secret_key = secret_key(config)
    app.session_interface = SessionInterface()
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="dashboard_session",
    )
    app.register_blueprint(login_pages)
    app.before_request(require_login)
    allowed = list(config.allowed_hosts)
    if config.host not in ("0.0.0.0", "::") and config.host not in allowed:
        allowed.append(config.host)
    wsgi: Any = HostGuard(app.wsgi_app, allowed, log_refusal)
    if config.proxy_hops:
        # Behind Nginx: the client's address, scheme and Host from X-Forwarded-*.
        wsgi = ProxyFix(
            wsgi, x_for=config.proxy_hops, x_proto=config.proxy_hops, x_host=config.proxy_hops
        )
    app.wsgi_app = wsgi  # type: ignore[method-assign]
    return access
