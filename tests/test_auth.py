"""server/access/: passwords, Basic parsing, the login limiter, Host matching."""

from __future__ import annotations

import base64
import statistics
import subprocess
import time

from werkzeug.security import check_password_hash

from server.access.hosts import host_allowed
from server.access.login import LoginLimiter, basic_credentials
from server.access.passwords import Credentials
from testkit.auth import PASSWORD, basic_authorization, password_hash
from testkit.serverproc import run_server_command

HASH = password_hash()


def test_single_password_and_users() -> None:
    single = Credentials(password_hash=HASH)
    assert single.required
    assert single.check("anyone", PASSWORD)
    assert not single.check("anyone", "wrong")
    users = Credentials(users={"ops": HASH})
    assert users.check("ops", PASSWORD)
    assert not users.check("dev", PASSWORD)
    assert not Credentials().required


def test_unknown_user_takes_as_long_as_a_known_one() -> None:
    creds = Credentials(users={"ops": HASH})

    def timed(user: str) -> float:
        started = time.perf_counter()
        creds.check(user, "wrong password")
        return time.perf_counter() - started

    known = statistics.median(timed("ops") for _ in range(5))
    unknown = statistics.median(timed("nobody") for _ in range(5))
    assert 0.5 < unknown / known < 2.0, (known, unknown)


def test_basic_credentials() -> None:
    assert basic_credentials(basic_authorization("ops", "pa:ss")) == ("ops", "pa:ss")
    assert basic_credentials("Bearer x") is None
    assert basic_credentials("Basic !!!") is None
    assert basic_credentials("Basic " + base64.b64encode(b"nocolon").decode()) is None
    assert basic_credentials(None) is None


def test_login_limiter() -> None:
    now = [100.0]
    limiter = LoginLimiter(attempts=3, window=60, clock=lambda: now[0])
    for _ in range(3):
        assert limiter.retry_after("10.0.0.1") == 0
        assert limiter.attempt("10.0.0.1") == 0  # counted on arrival
    assert limiter.attempt("10.0.0.1") == 60  # the 4th is refused, and not counted
    assert limiter.retry_after("10.0.0.1") == 60
    assert limiter.retry_after("10.0.0.2") == 0  # per address
    now[0] += 61
    assert limiter.retry_after("10.0.0.1") == 0
    assert limiter.attempt("10.0.0.1") == 0
    limiter.succeeded("10.0.0.1")  # a right password is forgiven
    for _ in range(3):
        assert limiter.attempt("10.0.0.1") == 0


def test_host_allowed() -> None:
    allowed = ["localhost", "127.0.0.1", "::1", ".example.net"]
    assert host_allowed("localhost:5000", allowed)
    assert host_allowed("127.0.0.1", allowed)
    assert host_allowed("[::1]:8080", allowed)
    assert host_allowed("dash.example.net", allowed)
    assert not host_allowed("evil.example", allowed)
    assert not host_allowed("localhost.evil.example", allowed)
    assert not host_allowed("", allowed)
    assert not host_allowed(None, allowed)
    assert not host_allowed("anything", ["*"])  # "*" is no wildcard (refused at start too)


def hash_password(typed: str) -> subprocess.CompletedProcess[str]:
    return run_server_command("hash-password", input=typed + "\n")


def test_hash_password_command() -> None:
    result = hash_password(PASSWORD)
    assert result.returncode == 0, result.stderr
    printed = result.stdout.strip()
    assert printed.startswith(("scrypt:", "pbkdf2:"))
    assert check_password_hash(printed, PASSWORD)
    short = hash_password("short")
    assert short.returncode == 2 and "at least 8" in short.stderr
