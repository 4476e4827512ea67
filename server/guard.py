"""The gate in front of the app: Host check, login, session, connection caps.

Wired from create_app: a WSGI Host guard around everything (Socket.IO too),
a before_request login check for pages, REST and /metrics (session cookie
or HTTP Basic), the login page, and the checks a Socket.IO connect passes.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from typing import Any

from flask import (
    Blueprint,
    Flask,
    Request,
    Response,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    session,
)
from flask.sessions import SecureCookieSessionInterface
from flask.typing import ResponseReturnValue
from flask_socketio import ConnectionRefusedError
from werkzeug.middleware.proxy_fix import ProxyFix

from server.auth import Credentials, HostGuard, LoginLimiter, basic_credentials
from server.config import Config
from server.logs import RateLimitFilter

refused_log = logging.getLogger("dashboard.refused")
refused_log.addFilter(RateLimitFilter(burst=10, period=60))

guard = Blueprint("guard", __name__)

# Paths open without a login: health for load balancers, the login page and
# the static files it needs (nothing there is about the host).
OPEN_ENDPOINTS = {"api.healthz", "guard.login", "guard.logout", "static"}


def log_refusal(address: str, reason: str) -> None:
    refused_log.warning("refused %s: %s", address, reason)


class _SessionInterface(SecureCookieSessionInterface):
    """Session cookies marked Secure exactly when the request came over HTTPS."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(request and request.is_secure)


class Gate:
    """Login state and the Socket.IO connection counts."""

    def __init__(self, config: Config) -> None:
        self.credentials = Credentials(config.password_hash, config.users)
        self.limiter = LoginLimiter()
        self.max_total = config.max_connections
        self.max_per_ip = config.max_connections_per_ip
        self._per_ip: dict[str, int] = {}
        self._total = 0
        self._lock = threading.Lock()

    # ---- who is this

    def user(self, req: Request) -> str | None:
        """The logged-in user of this request (session or Basic), else None."""
        if not self.credentials.required:
            return "anonymous"
        user = session.get("user")
        if isinstance(user, str):
            return user
        basic = basic_credentials(req.headers.get("Authorization"))
        if basic is None:
            return None
        address = req.remote_addr or "?"
        if self.limiter.retry_after(address):
            return None
        if self.credentials.check(*basic):
            return basic[0]
        self.limiter.failed(address)
        log_refusal(address, "wrong HTTP Basic credentials")
        return None

    # ---- Socket.IO connections

    def admit(self, address: str, authorized: bool) -> None:
        """Count a new connection, or raise ConnectionRefusedError saying why."""
        if not authorized:
            log_refusal(address, "Socket.IO connect without a valid session or credentials")
            raise ConnectionRefusedError("authentication required: log in first")
        with self._lock:
            if self._total >= self.max_total:
                reason = f"server full ({self.max_total} connections)"
            elif self._per_ip.get(address, 0) >= self.max_per_ip:
                reason = f"too many connections from this address ({self.max_per_ip})"
            else:
                self._total += 1
                self._per_ip[address] = self._per_ip.get(address, 0) + 1
                return
        log_refusal(address, reason)
        raise ConnectionRefusedError(reason)

    @property
    def connected(self) -> int:
        """Socket.IO connections admitted and not yet gone."""
        return self._total

    def release(self, address: str) -> None:
        with self._lock:
            count = self._per_ip.get(address, 0) - 1
            if count > 0:
                self._per_ip[address] = count
            else:
                self._per_ip.pop(address, None)
            self._total = max(self._total - 1, 0)


def _secret_key(config: Config) -> bytes:
    """A session key kept in data_dir (0600), so logins survive a restart."""
    path = os.path.join(config.data_dir, "secret_key")
    try:
        with open(path, "rb") as handle:
            key = handle.read()
        if len(key) >= 32:
            return key
    except FileNotFoundError:
        pass
    key = secrets.token_bytes(32)
    os.makedirs(config.data_dir, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(key)
    return key


def _gate() -> Gate:
    gate: Gate = current_app.extensions["dashboard_gate"]
    return gate


def _require_login() -> ResponseReturnValue | None:
    if request.endpoint in OPEN_ENDPOINTS:
        return None
    if _gate().user(request) is not None:
        return None
    address = request.remote_addr or "?"
    if request.path == "/":
        return render_template("login.html", error=None), 401
    log_refusal(address, f"{request.method} {request.path} without credentials")
    response = jsonify({"error": "authentication required: log in or use HTTP Basic"})
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Basic realm="dashboard", charset="UTF-8"'
    return response


@guard.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    gate = _gate()
    if request.method == "GET":
        return render_template("login.html", error=None)
    address = request.remote_addr or "?"
    wait = gate.limiter.retry_after(address)
    if wait:
        log_refusal(address, "login rate limit")
        response = Response(
            render_template("login.html", error=f"Too many attempts. Try again in {wait:.0f} s."),
            429,
        )
        response.headers["Retry-After"] = str(int(wait) + 1)
        return response
    user = request.form.get("user", "")
    password = request.form.get("password", "")
    if not gate.credentials.required or gate.credentials.check(user, password):
        session.clear()
        session["user"] = user or "user"
        return redirect("/", code=303)
    gate.limiter.failed(address)
    log_refusal(address, "wrong password at /login")
    return render_template("login.html", error="Wrong user or password."), 401


@guard.post("/logout")
def logout() -> ResponseReturnValue:
    session.clear()
    return redirect("/login", code=303)


def install(app: Flask, config: Config, gate: Gate) -> None:
    """Put the gate in front of `app` (call after SocketIO has wrapped it)."""
    app.extensions["dashboard_gate"] = gate
    app.secret_key = _secret_key(config)
    app.session_interface = _SessionInterface()
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="dashboard_session",
    )
    app.register_blueprint(guard)
    app.before_request(_require_login)
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
