"""Login and session: the login page, HTTP Basic, sessions, and the login limit.

Whether a login is required comes from the settings (a password hash or
users), never from the peer's address: behind Nginx every peer is 127.0.0.1.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable

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

from server.access.passwords import Credentials
from server.access.refused import log_refusal
from server.config import Config

login_pages = Blueprint("guard", __name__)

# Paths open without a login: health for load balancers, the login page and
# the static files it needs (nothing there is about the host).
OPEN_ENDPOINTS = {"api.healthz", "guard.login", "guard.logout", "static"}


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """(user, password) from an `Authorization: Basic ...` header, else None."""
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


class LoginLimiter:
    """At most `attempts` failed logins per address per `window` seconds."""

    def __init__(
        self, attempts: int = 5, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.attempts = attempts
        self.window = window
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, address: str) -> deque[float]:
        failures = self._failures.setdefault(address, deque())
        cutoff = self._clock() - self.window
        while failures and failures[0] < cutoff:
            failures.popleft()
        return failures

    def retry_after(self, address: str) -> float:
        """Seconds until `address` may try again; 0 if it may now."""
        with self._lock:
            failures = self._recent(address)
            if len(failures) < self.attempts:
                return 0.0
            return max(failures[0] + self.window - self._clock(), 0.1)

    def failed(self, address: str) -> None:
        with self._lock:
            self._recent(address).append(self._clock())
            if len(self._failures) > 10_000:  # bounded memory under a spray of addresses
                oldest = next(iter(self._failures))
                del self._failures[oldest]


class SessionInterface(SecureCookieSessionInterface):
    """Session cookies marked Secure exactly when the request came over HTTPS."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(request and request.is_secure)


class Login:
    """Who is logged in: a session, or HTTP Basic, checked against the settings."""

    def __init__(self, config: Config) -> None:
        self.credentials = Credentials(config.password_hash, config.users)
        self.limiter = LoginLimiter()

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


def secret_key(config: Config) -> bytes:
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


def _login() -> Login:
    login: Login = current_app.extensions["dashboard_login"]
    return login


def require_login() -> ResponseReturnValue | None:
    if request.endpoint in OPEN_ENDPOINTS:
        return None
    if _login().user(request) is not None:
        return None
    address = request.remote_addr or "?"
    if request.path == "/":
        return render_template("login.html", error=None), 401
    log_refusal(address, f"{request.method} {request.path} without credentials")
    response = jsonify({"error": "authentication required: log in or use HTTP Basic"})
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Basic realm="dashboard", charset="UTF-8"'
    return response


@login_pages.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    login_state = _login()
    if request.method == "GET":
        return render_template("login.html", error=None)
    address = request.remote_addr or "?"
    wait = login_state.limiter.retry_after(address)
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
    if not login_state.credentials.required or login_state.credentials.check(user, password):
        session.clear()
        session["user"] = user or "user"
        return redirect("/", code=303)
    login_state.limiter.failed(address)
    log_refusal(address, "wrong password at /login")
    return render_template("login.html", error="Wrong user or password."), 401


@login_pages.post("/logout")
def logout() -> ResponseReturnValue:
    session.clear()
    return redirect("/login", code=303)
