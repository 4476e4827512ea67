"""The hub's side of the agents' link: the `/agent` Socket.IO namespace.

An agent's identity is its token's, never its payload's. What an agent sends
is checked and bounded before it touches any state: at most 96 KiB a message
(Engine.IO's cap), a rate per agent, a shape per sample. Each refusal is
counted per host and reason (`/metrics`) and logged at most once a minute per
address (or host) and kind. The handlers are python-socketio's own, each in
a green thread of its own, without a Flask request context per message.

Acknowledged means kept: a batch is answered once the store has committed
it (server/history/store.py). A refusal says whether sending again can help
(`retry`): a busy or full store, the rate, a clock not yet measured can;
a sample of the wrong shape cannot, and is answered as handled, so the agent
drops it. Samples are placed on the hub's timeline (server/fleet/clock.py).
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import socketio

from server import __version__
from server.firehose.relay import Firehose
from server.fleet import schema
from server.fleet.clock import LinkClock
from server.fleet.hosts import Fleet, Host
from server.fleet.protocol import MAX_BATCH, NAMESPACE, OLDEST_PROTOCOL, PROTOCOL
from server.fleet.tokens import AgentTokens
from server.history.store import Ticket
from server.logs import LogThrottle
from server.ratelimit import TokenBucket

log = logging.getLogger("dashboard.fleet")

Sample = dict[str, Any]
OLDEST = 8 * 86400  # seconds: older samples than an agent can buffer are refused
ACK_DEADLINE = 8.0  # seconds a batch waits for its commit (the agent waits 10)
CLOCK_EVERY = 30.0  # seconds between a link's clock round trips (a step shows within it)
CLOCK_FIRST_WAIT = 3.0  # seconds a first batch waits for the link's first measurement
# Why a batch was refused, and whether sending it again can help.
RETRY = {"rate": True, "busy": True, "store": True, "clock": True, "link": True,
         "batch": False, "shape": False, "claims": False, "budget": False}  # fmt: skip


def sample_problem(
    data: Any, now: float, to_hub: Callable[[Sample], float] | None = None
) -> str | None:
    """What is wrong with an agent's sample, or None: its shape (server/fleet/schema.py),
    then its time as `to_hub` places it on the hub's timeline."""
    problem = schema.sample_problem(data)
    if problem is not None:
        return problem
    ts = to_hub(data) if to_hub else data["ts"]
    if not now - OLDEST <= ts <= now + 300:
        return "ts is in the future or older than 8 days (on the hub's clock)"
    return None


def protocol_refusal(auth: Any) -> str | None:
    """Why an agent's link protocol (its connect's `protocol`) is not one this hub
    speaks, saying which side to upgrade; None where it is. An agent that names none
    is of 0.2.0 or before, and speaks 1."""
    given = auth if isinstance(auth, dict) else {}
    protocol = given.get("protocol", 1)
    agent = f"this agent ({str(given.get('version') or 'version unknown')[:40]})"
    hub = f"this hub ({__version__})"
    if not isinstance(protocol, int) or isinstance(protocol, bool):
        return "the agent's link protocol must be a whole number"
    if protocol > PROTOCOL:
        return (f"{agent} speaks link protocol {protocol} and {hub} at most {PROTOCOL}: "
                "upgrade the hub, or install the hub's version of the agent")  # fmt: skip
    if protocol < OLDEST_PROTOCOL:
        return (f"{agent} speaks link protocol {protocol} and {hub} {OLDEST_PROTOCOL} or "
                "later: upgrade the agent to the hub's version")  # fmt: skip
    return None


class AgentLink(socketio.Namespace):  # type: ignore[misc]
    """Agents connect here with their token; samples come in as `samples` batches."""

    def __init__(
        self,
        fleet: Fleet,
        tokens: AgentTokens,
        publish: Callable[[Host, Sample], None],
        keep: Callable[[Host, Sample, Ticket], None],
        max_rate: float = 10.0,
    ) -> None:
        super().__init__(NAMESPACE)
        self.fleet = fleet
        self.tokens = tokens
        self._publish = publish  # a live sample: to its room, its alerts
        self._keep = keep  # every accepted sample: to the store
        self._rate = TokenBucket(burst=6 * max_rate, rate=max_rate)
        # Connects: an agent reconnects at a backoff of 1 s and more; a burst of 10.
        self._host_connects = TokenBucket(burst=10, rate=0.2)
        self._session_connects = TokenBucket(burst=5, rate=0.2)
        # Agents' comings and goings, and what each was refused: a line per agent
        # and kind at most once a minute, whatever an agent does.
        self._lines = LogThrottle(log)
        self.hosts_by_sid: dict[str, str] = {}
        self.refused: dict[tuple[str, str], int] = {}  # (host, reason) -> batches
        self.accepted = 0
        self.store_failure: Callable[[], str | None] = lambda: None  # why the store can't write
        # Log lines: several sources four times a second, and a backlog at first.
        self._firehose_rate = TokenBucket(burst=100, rate=40)
        self.firehose: Firehose | None = None  # set when the firehose is on

    def _say(self, who: str, kind: str, line: str) -> None:
        self._lines.log((who, kind), logging.INFO, "%s", line)

    def _warn(self, who: str, kind: str, message: str) -> None:
        line = f"agent {who!r}: {message} (at most once a minute)"
        self._lines.log((who, kind), logging.WARNING, "%s", line)

    def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        address = str(environ.get("REMOTE_ADDR") or "?")
        session = self.server.manager.eio_sid_from_sid(sid, NAMESPACE) or sid
        if not self._session_connects.take(session):  # one WebSocket, connect after connect
            self._warn(address, "connects", "refused: too many connects on one session")
            raise socketio.exceptions.ConnectionRefusedError("too many connects: slow down")
        token = auth.get("token") if isinstance(auth, dict) else None
        host_id = self.tokens.host_of(token)
        if host_id is None:
            self._warn(address, "token", "refused: unknown or revoked token")
            raise socketio.exceptions.ConnectionRefusedError(
                "unknown or revoked agent token: make one on the hub with add-agent NAME"
            )
        if host_id == self.fleet.local.id:
            self._warn(address, "name", f"refused: {host_id!r} is the hub's own name")
            raise socketio.exceptions.ConnectionRefusedError(
                f"agent name {host_id!r} is the hub's own host; add the agent under another name"
            )
        refusal = protocol_refusal(auth)  # told only to an agent with a token
        if refusal is not None:
            self._warn(host_id, "protocol", f"refused: {refusal}")
            self.fleet.ensure(host_id).note_trouble("refused", refusal)
            raise socketio.exceptions.ConnectionRefusedError(refusal)
        if not self._host_connects.take(host_id):
            self._warn(host_id, "connects", "refused: connects too often")
            self.fleet.ensure(host_id).note_trouble("refused", "connects too often")
            raise socketio.exceptions.ConnectionRefusedError("too many connects: slow down")
        for old, other in list(self.hosts_by_sid.items()):
            if other == host_id:  # the agent came back before its old link timed out
                self.hosts_by_sid.pop(old, None)
                self._bye(old, f"another agent with this token connected (from {address}):"
                               " each machine needs a token of its own")  # fmt: skip
        self.hosts_by_sid[sid] = host_id
        host = self.fleet.ensure(host_id)
        host.link(True)
        host.clock = LinkClock()  # measured anew: the agent may be a new process
        self.server.start_background_task(self._measure_clock, sid, host)
        self._say(host_id, "connected", f"agent {host_id} connected from {address}")
        if self.firehose is not None and self.firehose.watched(host_id):
            self.emit("firehose_watch", {"sources": sorted(self.firehose.watched(host_id))}, to=sid)

    def on_disconnect(self, sid: str, reason: Any = None) -> None:
        host_id = self.hosts_by_sid.pop(sid, None)
        host = self.fleet.get(host_id) if host_id else None
        if host is not None and host_id not in self.hosts_by_sid.values():
            host.link(False)
            self._say(host.id, "gone", f"agent {host.id} disconnected ({reason})")

    def on_static(self, sid: str, data: Any) -> bool:
        host = self._host(sid)
        if host is None:
            return False
        problem = schema.static_problem(data)
        if problem is not None:
            self._warn(host.id, "malformed", f"static refused: {problem}")
            host.note_trouble("refused", f"static: {problem}")
            return False
        if data.get("host") not in (None, host.id):
            self._warn(host.id, "claims", f"claims to be host {data.get('host')!r}")
            return False
        host.static = {**data, "host": host.id}
        return True

    def on_samples(self, sid: str, batch: Any) -> dict[str, Any]:
        """Keep a batch, oldest first; answered once it is committed, with the newest handled."""
        host = self._host(sid)
        if host is None:
            return {"error": "not connected as an agent", "reason": "link", "retry": True}
        if not self._rate.take(host.id):
            return self._refuse(host, "rate", "too many messages (sends too fast): slow down")
        if not isinstance(batch, list) or not 1 <= len(batch) <= MAX_BATCH:
            return self._refuse(host, "batch", f"a batch is a list of 1 to {MAX_BATCH} samples")
        failure = self.store_failure()
        if failure is not None:
            return self._refuse(host, "store", f"the hub cannot store samples now: {failure}")
        if not host.clock.measured.wait(CLOCK_FIRST_WAIT):
            return self._refuse(host, "clock", "the link's clock is not measured yet")
        now = time.time()
        ticket = Ticket()
        kept = refused = 0
        first_problem = None
        for sample in batch:
            problem = sample_problem(sample, now, host.clock.to_hub)
            if problem is None and sample.get("host") not in (None, host.id):
                problem = f"claims host {sample.get('host')!r}"
            if problem is not None:
                refused += 1
                first_problem = first_problem or problem
                continue
            placed = {k: v for k, v in sample.items() if k != "mono"}
            placed.update(ts=host.clock.to_hub(sample), host=host.id)
            offset = host.clock.offset
            if offset is not None:  # the host page's "clock 10 min ahead"
                placed.update(clock_offset=round(offset, 3), clock_note=host.clock_note())
            if host.take(placed, functools.partial(self._publish, host)):
                host.seen(placed)
            self._keep(host, placed, ticket)
            kept += 1
        if kept:
            error = ticket.wait(ACK_DEADLINE)
            if error is not None:  # "store: disk full (...)", "busy: ...", "budget: ..."
                reason, _, why = error.partition(": ")
                if reason not in RETRY:
                    reason = "shape" if ticket.permanent else "store"
                return self._refuse(host, reason, f"the hub could not keep them: {why or error}")
        self.accepted += kept
        last = next((s for s in reversed(batch) if isinstance(s, dict)), {})
        answer: dict[str, Any] = {"ts": last.get("ts"), "seq": last.get("seq")}
        if refused:
            message = f"{refused} of {len(batch)} samples refused: {first_problem}"
            self._refuse(host, "shape", message)
            answer.update(refused=refused, reason="shape", error=first_problem, retry=False)
        return answer

    def _refuse(self, host: Host, reason: str, message: str) -> dict[str, Any]:
        """Count and log (once a minute) a refusal; the answer says whether to send again."""
        key = (host.id, reason)
        self.refused[key] = self.refused.get(key, 0) + 1
        if not RETRY[reason] or reason == "rate":  # the agent's doing, not the hub's
            host.note_trouble("refused", f"{reason}: {message}")
        self._warn(host.id, reason, f"batch refused ({reason}): {message}")
        return {"error": message, "reason": reason, "retry": RETRY[reason]}

    def _measure_clock(self, sid: str, host: Host) -> None:
        """A round trip on this link at once, then one every CLOCK_EVERY seconds (jittered:
        a fleet that connected together does not measure together)."""
        clock = host.clock  # this link's: a reconnect makes another
        tries = 0
        while self.hosts_by_sid.get(sid) == host.id and host.clock is clock:
            sent = time.time()
            try:
                # The link is this process's own: not through the message queue (role core).
                answer = self.call("clock", {"ts": sent}, to=sid, timeout=5, ignore_queue=True)
            except Exception:  # a timeout, or the link went
                answer = TimeoutError
            tries += 1
            if not clock.add(sent, time.time(), answer):
                if answer is TimeoutError and not clock.measured.is_set() and tries < 3:
                    self.server.sleep(1.0)  # asked again before its samples are taken as is
                    continue
                clock.unknown()  # an older agent, which answers no clocks
            self.server.sleep(CLOCK_EVERY * random.uniform(0.8, 1.2))

    def on_firehose(self, sid: str, batch: Any) -> None:
        """Log lines of a watched source of this agent's host."""
        host = self._host(sid)
        if host is None or self.firehose is None:
            return
        if not self._firehose_rate.take(host.id):
            self._warn(host.id, "firehose rate", "sends log lines too fast: dropped")
            return
        problem = self.firehose.from_agent(host.id, batch)
        if problem:
            self._warn(host.id, "firehose", f"log lines refused: {problem}")
            host.note_trouble("logs", problem)

    def watch(self, host_id: str, sources: list[str]) -> None:
        """Tell an agent which of its sources pages watch (none: it sends nothing)."""
        for sid, other in list(self.hosts_by_sid.items()):
            if other == host_id:
                self.emit("firehose_watch", {"sources": sources}, to=sid)

    def _bye(self, sid: str, message: str) -> None:
        """Close an agent's link, first telling it why (`bye`): it logs the reason."""
        self.emit("bye", {"message": message}, to=sid)
        self.disconnect(sid)

    def _host(self, sid: str) -> Host | None:
        host_id = self.hosts_by_sid.get(sid)
        return self.fleet.get(host_id) if host_id else None

    def revoke_missing(self) -> None:
        """After the tokens file changed: close the links of removed agents."""
        names = set(self.tokens.names)
        for sid, host_id in list(self.hosts_by_sid.items()):
            if host_id not in names:
                log.warning("agent %s removed: its link is closed", host_id)
                self.hosts_by_sid.pop(sid, None)
                self._bye(sid, f"this agent ({host_id}) was removed at the hub: its token is"
                               " revoked; uninstall it (install.sh --uninstall)")  # fmt: skip
        for host_id in list(self.fleet.hosts):
            if host_id != self.fleet.local.id and host_id not in names:
                self.fleet.forget(host_id)
