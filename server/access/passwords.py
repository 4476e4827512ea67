"""Passwords: checking them against the configured hashes, and making a hash."""

from __future__ import annotations

import getpass
import hashlib
import secrets
import sys
from collections.abc import Mapping

from werkzeug.security import check_password_hash, generate_password_hash


def hash_problem(stored: str) -> str | None:
    """What is wrong with a stored hash, or None if werkzeug can check it at a sane cost.

    Checked at start: a hash that parses only halfway would answer every
    login with a 500, and one with a tiny cost would be cheap to crack.
    """
    method, _, rest = stored.partition("$")
    salt, _, digest = rest.partition("$")
    if not salt or not digest or "$" in digest:
        return "method$salt$hash expected"
    try:
        int(digest, 16)
    except ValueError:
        return "the hash part is not hexadecimal"
    kind, *params = method.split(":")
    try:
        numbers = [int(p) for p in params[1:]] if kind == "pbkdf2" else [int(p) for p in params]
    except ValueError:
        return "its parameters are not numbers"
    if kind == "scrypt":
        if len(numbers) != 3:
            return "scrypt:N:r:p expected"
        n, r, p = numbers
        if n < 2**14 or n > 2**20 or n & (n - 1) or not 1 <= r <= 32 or not 1 <= p <= 16:
            return "scrypt N from 2^14 to 2^20 (a power of 2), r 1-32, p 1-16"
        return None
    if kind == "pbkdf2":
        if len(params) != 2 or params[0] not in hashlib.algorithms_guaranteed:
            return "pbkdf2:HASH:ITERATIONS expected"
        if not 100_000 <= numbers[0] <= 10_000_000:
            return "pbkdf2 with 100,000 to 10,000,000 iterations"
        return None
    return "scrypt:... or pbkdf2:..."


class Credentials:
    """The configured users: name -> password hash. One password means any name."""

    def __init__(self, password_hash: str = "", users: Mapping[str, str] | None = None) -> None:
        self.single = password_hash
        self.users = dict(users or {})
        # An unknown user is checked against a hash of the same method and
        # cost as the real ones, so its refusal takes as long as a known one's.
        sample = self.single or next(iter(self.users.values()), "")
        method = sample.partition("$")[0] or "scrypt"
        self._dummy = generate_password_hash(secrets.token_hex(16), method=method)

    @property
    def required(self) -> bool:
        return bool(self.single or self.users)

    def stored(self, user: str) -> str:
        """The hash this user's password is checked against; empty if unknown."""
        return self.single or self.users.get(user, "")

    def check(self, user: str, password: str) -> bool:
        """Slow on purpose (scrypt, ~0.1 s): call it through the password pool."""
        stored = self.stored(user)
        ok = check_password_hash(stored or self._dummy, password)
        return ok and bool(stored)


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
