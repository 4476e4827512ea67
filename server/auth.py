"""Who may watch: passwords, sessions, Host checks, login rate limits.

Whether a login is required comes from the settings (a password hash or
users), never from the peer's address: behind Nginx every peer is 127.0.0.1.
"""

from __future__ import annotations

import base64
import binascii
import getpass
import hmac
import secrets
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from werkzeug.security import check_password_hash, generate_password_hash

# A login is verified against this when the user is unknown, so an unknown
# user takes as long to refuse as a known one with a wrong password.
_DUMMY_HASH = generate_password_hash(secrets.token_hex(16))


class Credentials:
    """The configured users: name -> password hash. One password means any name."""

    def __init__(self, password_hash: str = "", users: Mapping[str, str] | None = None) -> None:
        self.single = password_hash
        self.users = dict(users or {})

    @property
    def required(self) -> bool:
        return bool(self.single or self.users)

    def check(self, user: str, password: str) -> bool:
        stored = self.single or self.users.get(user, "")
        known = bool(stored)
        ok = check_password_hash(stored or _DUMMY_HASH, password)
        return ok and known


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


def host_allowed(host_header: str | None, allowed: Iterable[str]) -> bool:
    """Is the Host header (port stripped) one of the allowed names? '*' allows any."""
    if not host_header:
        return False
    host = host_header.strip().lower()
    if host.startswith("["):  # [::1]:5000
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    for name in allowed:
        name = name.lower()
        if name == "*" or host == name or (name.startswith(".") and host.endswith(name)):
            return True
    return False


class HostGuard:
    """WSGI middleware: refuse a Host not in allowed_hosts, for every path.

    It wraps Socket.IO's middleware too, so /socket.io/ is checked like the
    rest: a DNS-rebinding page (Host = Origin = evil) gets nothing.
    """

    def __init__(
        self, app: Any, allowed: Iterable[str], refused: Callable[[str, str], None]
    ) -> None:
        self.app = app
        self.allowed = tuple(allowed)
        self.refused = refused

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        host = environ.get("HTTP_HOST")
        if host_allowed(host, self.allowed):
            return self.app(environ, start_response)
        self.refused(environ.get("REMOTE_ADDR", "?"), f"Host {host!r} not allowed")
        body = b'{"error": "this Host is not served here"}\n'
        start_response(
            "421 Misdirected Request",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]


def tokens_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def hash_password_command(argv: list[str]) -> int:
    """`python -m server hash-password`: print a hash for the settings file."""
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Again: "):
            print("python -m server: error: the passwords differ", file=sys.stderr)
            return 2
    else:
        password = sys.stdin.readline().rstrip("\n")
    if len(password) < 8:
        print("python -m server: error: use a password of at least 8 characters", file=sys.stderr)
        return 2
    print(generate_password_hash(password))
    return 0
