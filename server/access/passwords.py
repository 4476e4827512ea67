"""Passwords: checking them against the configured hashes, and making a hash."""

from __future__ import annotations

import getpass
import secrets
import sys
from collections.abc import Mapping

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
