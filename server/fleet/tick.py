"""The fleet's once-a-second chores, after the hub's own sample: the tiles to the
fleet pages, the agents file read again, and (role core) the mirror for web processes.

The hosts' states are judged on a faster clock of their own (DashboardState).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from server.blocking import run_blocking
from server.fleet.hosts import Fleet
from server.fleet.hub import AgentLink
from server.fleet.tokens import AgentTokens
from server.web.queue import CoreLease

TOKENS_EVERY = 5  # ticks between looks at the agents file (add-agent, remove-agent)
MIRROR_EVERY = 5  # ticks between the core's mirrors of statics and alerts (role core)

Emit = Callable[..., Any]  # socketio.emit(event, data, to=room)


class FleetTick:
    """A Sampler observer: called with each of the hub's own samples."""

    def __init__(
        self,
        fleet: Fleet,
        tokens: AgentTokens,
        link: AgentLink,
        emit: Emit,
        start_task: Callable[..., Any],
        lease: CoreLease | None = None,
    ) -> None:
        self.fleet = fleet
        self.tokens = tokens
        self.link = link
        self._emit = emit
        self._start_task = start_task  # socketio.start_background_task
        self.lease = lease  # role core: the fleet pages and the mirror are on web processes
        self.ticks = 0

    def __call__(self, sample: dict[str, Any]) -> None:
        self.fleet.local.seen(sample)
        # The core's fleet pages are on web processes it can't count.
        if self.fleet.viewers or self.lease is not None:
            self._emit("fleet", self.fleet.summary(), to="fleet")
        self.ticks += 1
        if self.ticks % TOKENS_EVERY == 0 and run_blocking(self.tokens.reload):
            self.link.revoke_missing()
        if self.lease is not None and self.ticks % MIRROR_EVERY == 1:
            mirror = self.fleet.mirror()
            self._emit("mirror", mirror, to="mirror")  # no page joins it: for web processes
            self._start_task(self.lease.mirror, mirror)
