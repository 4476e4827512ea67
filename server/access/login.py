"""Login and session: the login page, HTTP Basic, sessions, and the login limit.

Whether a login is required comes from the settings (a password hash or
users), never from the peer's address: behind Nginx every peer is 127.0.0.1.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
import urllib.parse
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
from server.blocking import BoundedPool, KeyedLock, run_blocking
from server.config import Config, ConfigError
from server.private import write_private_json

login_pages = Blueprint("guard", __name__)

# Paths open without a login: health for load balancers, the login page and
# the static files it needs (nothing there is about the host), and a new agent's
# install (server/fleet/install.py: the project's code, and a check that answers
# a token's holder only).
OPEN_ENDPOINTS = {"api.healthz", "guard.login", "guard.logout", "static",
                  "agent_files.install_script", "agent_files.wheel",
                  "agent_files.check"}  # fmt: skip


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
    """At most `attempts` login attempts per address per `window` seconds.

    An attempt counts when it arrives, before its password is checked, so
    requests sent together cannot race past the limit; a success is forgiven.
    """

    def __init__(
        self, attempts: int = 5, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.attempts = attempts
        self.window = window
        self._clock = clock
        self._tries: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, address: str) -> deque[float]:
        tries = self._tries.setdefault(address, deque())
        cutoff = self._clock() - self.window
        while tries and tries[0] < cutoff:
            tries.popleft()
        return tries

    def retry_after(self, address: str) -> float:
        """Seconds until `address` may try again; 0 if it may now."""
        with self._lock:
            tries = self._recent(address)
            if len(tries) < self.attempts:
                return 0.0
            return max(tries[0] + self.window - self._clock(), 0.1)

    def attempt(self, address: str) -> float:
        """Count an attempt now; 0 if it may go on, else the seconds to wait (not counted)."""
        with self._lock:
            tries = self._recent(address)
            if len(tries) >= self.attempts:
                return max(tries[0] + self.window - self._clock(), 0.1)
            tries.append(self._clock())
            if len(self._tries) > 10_000:  # bounded memory under a spray of addresses
                del self._tries[next(iter(self._tries))]
            return 0.0

    def succeeded(self, address: str) -> None:
        with self._lock:
            tries = self._recent(address)
            if tries:
                tries.pop()


class SessionInterface(SecureCookieSessionInterface):
    """Session cookies marked Secure exactly when the request came over HTTPS."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(request and request.is_secure)


class Sessions:
    """Logins that end: on logout, on a password change or removal, and by age.

    The signed cookie carries a session id, the user, when it began and when
    it was last used, and a fingerprint of the user's password hash: a new
    hash (or no user) no longer matches, across restarts. Logged-out ids are
    kept in data_dir until they would have expired anyway.
    """

    def __init__(
        self,
        config: Config,
        credentials: Credentials,
        key: bytes,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.idle = config.session_idle_seconds
        self.lifetime = config.session_lifetime_seconds
        self._credentials = credentials
        self._key = key
        self._clock = clock
        self._path = os.path.join(config.data_dir, "revoked_sessions.json")
        self._revoked: dict[str, float] = self._load()
        # Several web processes share the file: each rereads it when it changed,
        # looking at most once a second (a stat, off the event loop).
        self._mtime = self._stat()
        self._looked = time.monotonic()
        self._lock = threading.Lock()
        self.on_end: list[Callable[[str], None]] = []  # e.g. close that session's sockets

    def fingerprint(self, user: str) -> str | None:
        stored = self._credentials.stored(user)
        if not stored:
            return None
        return hmac.new(self._key, stored.encode(), hashlib.sha256).hexdigest()[:32]

    def begin(self, user: str) -> None:
        now = self._clock()
        session.clear()
        session.update(
            sid=secrets.token_urlsafe(18), user=user, fp=self.fingerprint(user), iat=now, seen=now
        )

    def user(self) -> str | None:
        """The user of this request's session, if it is still valid."""
        user, sid = session.get("user"), session.get("sid")
        if not isinstance(user, str) or not isinstance(sid, str):
            return None
        now = self._clock()
        began, seen = session.get("iat"), session.get("seen")
        if not isinstance(began, int | float) or not isinstance(seen, int | float):
            return None
        self._refresh()
        if now - began > self.lifetime or now - seen > self.idle or sid in self._revoked:
            return None
        if session.get("fp") != self.fingerprint(user):
            return None
        if now - seen > 60:  # refresh the idle clock, at most once a minute
            session["seen"] = now
        return user

    def end(self) -> None:
        sid, began = session.get("sid"), session.get("iat")
        session.clear()
        if not isinstance(sid, str) or not isinstance(began, int | float):
            return
        now = self._clock()
        with self._lock:
            self._revoked = {s: t for s, t in self._revoked.items() if t > now}
            self._revoked[sid] = began + self.lifetime
            revoked = dict(self._revoked)
        run_blocking(write_private_json, self._path, revoked)
        for callback in self.on_end:
            callback(sid)

    def _stat(self) -> float | None:
        try:
            return os.stat(self._path).st_mtime
        except OSError:
            return None

    def _refresh(self) -> None:
        if time.monotonic() - self._looked < 1.0:
            return
        self._looked = time.monotonic()
        mtime = run_blocking(self._stat)
        if mtime != self._mtime:
            self._mtime = mtime
            self._revoked = run_blocking(self._load)

    def _load(self) -> dict[str, float]:
        try:
            with open(self._path, encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            # Unreadable: fail closed for what it held by refusing to start.
            raise ConfigError(f"setting 'data_dir': {self._path!r} is not readable JSON") from None
        now = self._clock()
        return {str(k): float(v) for k, v in data.items() if float(v) > now}


class Login:
    """Who is logged in: a session, or HTTP Basic, checked against the settings.

    Password checks are slow on purpose, so they run in a bounded pool off
    the event loop, one at a time per client address; a good Basic password
    is remembered for a minute under a keyed hash (never the password).
    """

    BASIC_CACHE_SECONDS = 60.0

    def __init__(self, config: Config, key: bytes) -> None:
        self.credentials = Credentials(config.password_hash, config.users)
        self.limiter = LoginLimiter()
        self.sessions = Sessions(config, self.credentials, key)
        self.pool = BoundedPool(size=4, deadline=10.0)
        self._per_address = KeyedLock()
        self._key = key
        self._basic_ok: dict[bytes, tuple[str, float]] = {}

    def verify(self, address: str, user: str, password: str) -> bool:
        """Check a password whose attempt was counted; raises Busy if no slot in time."""
        with self._per_address.hold(address, timeout=self.pool.deadline):
            if self.pool.run(self.credentials.check, user, password):
                self.limiter.succeeded(address)
                return True
            return False

    def user(self, req: Request) -> str | None:
        """The logged-in user of this request (session or Basic), else None."""
        if not self.credentials.required:
            return "anonymous"
        user = self.sessions.user()
        if user is not None:
            return user
        basic = basic_credentials(req.headers.get("Authorization"))
        if basic is None:
            return None
        key = hmac.new(self._key, "\0".join(basic).encode(), hashlib.sha256).digest()
        cached = self._basic_ok.get(key)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        address = req.remote_addr or "?"
        if self.limiter.attempt(address):
            log_refusal(address, "login limit (HTTP Basic)")
            return None
        if self.verify(address, *basic):
            if len(self._basic_ok) >= 1024:
                self._basic_ok.clear()
            self._basic_ok[key] = (basic[0], time.monotonic() + self.BASIC_CACHE_SECONDS)
            return basic[0]
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
    # Busy (no password-check slot in time) becomes a 503 with Retry-After (pages.py).
    if _login().user(request) is not None:
        return None
    address = request.remote_addr or "?"
    if request.path == "/":
        return render_template("login.html", error=None), 401
    log_refusal(address, f"{request.method} {request.path!r} without credentials")
    response = jsonify({"error": "authentication required: log in or use HTTP Basic"})
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Basic realm="dashboard", charset="UTF-8"'
    return response


def _foreign_origin() -> bool:
    """A POST from a page of another origin (login or logout CSRF)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return False  # not a browser's cross-site form: those always send Origin
    # "null" (a sandboxed frame, a no-referrer page) is refused: it could be anyone.
    allowed = current_app.config.get("DASHBOARD_CORS_ORIGINS", ())
    return origin not in allowed and (
        origin == "null" or urllib.parse.urlsplit(origin).netloc != request.host
    )


foreign_origin = _foreign_origin  # the same check for the API's state-changing calls


@login_pages.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    if request.method == "GET":
        return render_template("login.html", error=None)
    address = request.remote_addr or "?"
    if _foreign_origin():
        log_refusal(address, f"login from another origin {request.headers.get('Origin')!r}")
        return jsonify({"error": "cross-origin login refused"}), 403
    state = _login()
    if not state.credentials.required:
        state.sessions.begin(request.form.get("user", "")[:200] or "user")
        return redirect("/", code=303)
    # Counted before the body is even read: requests sent together cannot race the limit.
    wait = state.limiter.attempt(address)
    if wait:
        log_refusal(address, "login rate limit")
        response = Response(
            render_template("login.html", error=f"Too many attempts. Try again in {wait:.0f} s."),
            429,
        )
        response.headers["Retry-After"] = str(int(wait) + 1)
        return response
    user = request.form.get("user", "")[:200]
    password = request.form.get("password", "")[:1024]
    if state.verify(address, user, password):
        state.sessions.begin(user or "user")
        return redirect("/", code=303)
    log_refusal(address, "wrong password at /login")
    return render_template("login.html", error="Wrong user or password."), 401


@login_pages.post("/logout")
def logout() -> ResponseReturnValue:
    if _foreign_origin():
        log_refusal(request.remote_addr or "?", "logout from another origin")
        return jsonify({"error": "cross-origin logout refused"}), 403
    _login().sessions.end()
    return redirect("/login", code=303)
