"""Credentials as the tests send them: a password, its hash, HTTP Basic."""

from __future__ import annotations

import base64
import functools

from werkzeug.security import generate_password_hash

PASSWORD = "correct horse battery"  # what most tests log in with, as user "ops"


def basic_authorization(user: str, password: str) -> str:
    """An Authorization header's value for HTTP Basic: "Basic <base64 of user:password>"."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def basic_auth_headers(user: str, password: str) -> dict[str, str]:
    """Request headers that log in with HTTP Basic."""
    return {"Authorization": basic_authorization(user, password)}


@functools.cache
def password_hash(password: str = PASSWORD) -> str:
    """The hash a `password_hash` setting takes (werkzeug's scrypt): made once a run per
    password, as scrypt is slow on purpose."""
    return generate_password_hash(password)
