"""One rate-limited log of refusals, shared by every access check."""

from __future__ import annotations

import logging

from server.logs import RateLimitFilter

refused_log = logging.getLogger("dashboard.refused")
refused_log.addFilter(RateLimitFilter(burst=10, period=60))


def log_refusal(address: str, reason: str) -> None:
    # %r: an address or a reason may carry what a client sent (a Host, a path).
    refused_log.warning("refused %r: %s", address, reason)
