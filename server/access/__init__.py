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

from server.access.connections import ConnectionCaps, HandshakeLimiter
from server.access.hosts import HostGuard, TrustedProxies
from server.access.login import Login, SessionInterface, login_pages, require_login, secret_key
from server.access.refused import log_refusal
from server.config import Config
from server.ratelimit import TokenBucket


@dataclasses.dataclass
class Access:
    login: Login
    caps: ConnectionCaps


def install(app: Flask, config: Config) -> Access:
    """Put the access checks in front of `app` (call after SocketIO has wrapped it)."""
    key = secret_key(config)
    access = Access(
        Login(config, key), ConnectionCaps(config.max_connections, config.max_connections_per_ip)
    )
    app.extensions["dashboard_login"] = access.login
    app.secret_key = key
    app.session_interface = SessionInterface()
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="dashboard_session",
        DASHBOARD_CORS_ORIGINS=tuple(config.cors_origins),
    )
    app.register_blueprint(login_pages)
    app.before_request(require_login)
    allowed = list(config.allowed_hosts)
    if config.host not in ("0.0.0.0", "::") and config.host not in allowed:
        allowed.append(config.host)
    wsgi: Any = HostGuard(app.wsgi_app, allowed, log_refusal)
    # Pages reconnect with backoff: a burst as large as the per-address cap,
    # then two a second, is far above what a wall of real pages needs.
    wsgi = HandshakeLimiter(
        wsgi,
        per_address=TokenBucket(burst=max(config.max_connections_per_ip, 20), rate=2),
        # In all: a wall of pages coming back after a restart (their backoff
        # spreads them over ~10 s) gets through; a flood from many addresses does not.
        in_all=TokenBucket(
            burst=max(1000, config.max_connections // 5),
            rate=max(200, config.max_connections // 20),
        ),
    )
    # Behind Nginx: the client's address, scheme and Host from X-Forwarded-*,
    # believed only from the peers listed in trusted_proxies.
    wsgi = TrustedProxies(wsgi, config.trusted_proxies, config.proxy_hops)
    app.wsgi_app = wsgi  # type: ignore[method-assign]
    return access
