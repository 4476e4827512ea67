"""The Host check: only the names in allowed_hosts are served, Socket.IO included."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.middleware.proxy_fix import ProxyFix


def host_allowed(host_header: str | None, allowed: Iterable[str]) -> bool:
    """Is the Host header (port stripped) one of the allowed names?"""
    if not host_header:
        return False
    host = host_header.strip().lower()
    if host.startswith("["):  # [::1]:5000
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    for name in allowed:
        name = name.lower()
        if host == name or (name.startswith(".") and host.endswith(name)):
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


class TrustedProxies:
    """WSGI middleware: X-Forwarded-* only from the proxies listed in trusted_proxies.

    From any other peer those headers are dropped, so a client on the LAN
    cannot pick its own address (to dodge a per-address limit) or Host.
    """

    def __init__(self, app: Any, networks: Iterable[str], hops: int) -> None:
        self.app = app
        self.networks = [ipaddress.ip_network(n, strict=False) for n in networks]
        self.fixed = ProxyFix(app, x_for=hops, x_proto=hops, x_host=hops) if hops else None

    def trusted(self, address: str | None) -> bool:
        try:
            peer = ipaddress.ip_address(address or "")
        except ValueError:
            return False
        return any(peer in network for network in self.networks)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if self.fixed is not None and self.trusted(environ.get("REMOTE_ADDR")):
            return self.fixed(environ, start_response)
        for key in [k for k in environ if k.startswith("HTTP_X_FORWARDED_")]:
            del environ[key]
        return self.app(environ, start_response)
