"""Channels through Apprise: each `[notify.NAME]` URL (email, ntfy, Slack, Telegram,
a JSON POST, ...) read at start, then sent to one attempt at a time, each within
its deadline.

Apprise is imported here only, and only where channels are declared and the
process sends them (role all or core): an agent, a web process and a server
without channels never load it (about 13 MiB and 0.25 s: docs/alerts.md).
It is read after eventlet has patched the sockets its libraries use.

Apprise's notify() is synchronous (requests, smtplib). Each attempt runs it in a
thread of its own, which the channel's delivery loop (alerts/delivery.py) waits
for up to the channel's `timeout`: under eventlet the thread and its sockets are
green, so a slow receiver holds only its own channel, never the hub or the 1 Hz.
An attempt past its deadline is given up, and the next one is refused until it
has ended (its socket timeouts end it): at most one per channel. Apprise's
async_notify() would only run the same call in a pool of Apprise's own, behind an
asyncio loop that eventlet does not drive.

Apprise's own log lines carry addresses and parts of URLs: they are kept out of
the app's log. The reason given for a failed attempt is Apprise's last warning,
with every part of the channel's URL blanked out.
"""

from __future__ import annotations

import logging
import re
import threading
import urllib.parse

from server.alerts.delivery import DeliveryError
from server.alerts.messages import Message
from server.alerts.routes import ChannelSettings
from server.config import ConfigError
from server.logs import describe_error

# Apprise's email services: a full message by default (`message = "auto"`).
EMAIL_SCHEMES = frozenset({
    "mailto", "mailtos", "ses", "sendgrid", "mailgun", "sparkpost", "smtp2go", "resend",
    "postmark", "brevo", "mailersend", "sendpulse", "o365", "azure",
})  # fmt: skip


class _Reasons(logging.Handler):
    """Apprise's warnings, the last one per thread: why that thread's attempt failed."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.last: dict[int, str] = {}  # thread -> message; each taken by its attempt

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread is not None:
            self.last[record.thread] = record.getMessage()


_reasons = _Reasons()


def _quiet_apprise() -> None:
    """Apprise's lines to _reasons only, never the app's log (idempotent)."""
    logger = logging.getLogger("apprise")
    logger.propagate = False
    logger.setLevel(logging.WARNING)  # its debug lines cost time in each attempt
    if _reasons not in logger.handlers:
        logger.addHandler(_reasons)


def _secrets(url: str) -> list[str]:
    """Every part of an Apprise URL that may be secret: user, password, host (a token
    in Slack's and Discord's forms), each path part and query value; longest first."""
    parts = urllib.parse.urlsplit(url)
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    host = hostport.rsplit(":", 1)[0] if hostport.count(":") == 1 else hostport
    found = [user, password, host, *parts.path.split("/")]
    found += [v for _, v in urllib.parse.parse_qsl(parts.query)]
    found += [urllib.parse.unquote(p) for p in found]
    return sorted({p for p in found if len(p) >= 3}, key=len, reverse=True)


class AppriseChannel:
    """One channel: its Apprise service, opened at start; deliver() sends one message."""

    def __init__(self, name: str, settings: ChannelSettings) -> None:
        import apprise
        from apprise.plugins import N_MGR

        _quiet_apprise()
        self.name = name
        self.scheme = settings.url.partition("://")[0].lower()
        self.timeout = settings.timeout
        self.send_resolved = settings.send_resolved
        full = settings.message == "full"
        self.full = full or (settings.message == "auto" and self.scheme in EMAIL_SCHEMES)
        self._secrets = _secrets(settings.url)
        asset = apprise.AppriseAsset(app_id="host-dashboard", app_desc="Host dashboard alerts")
        plugin = apprise.Apprise.instantiate(settings.url, asset=asset)
        _reasons.last.pop(threading.get_ident(), None)  # what it said while reading the URL
        if plugin is None:
            what = (
                "its form is wrong for that service, or it needs a library not installed"
                if self.scheme in N_MGR
                else "Apprise knows no such scheme"
            )
            raise ConfigError(
                f"setting 'notify.{name}.url' ({self.scheme}://...) is not a URL Apprise "
                f"can send to: {what} (https://github.com/caronc/apprise/wiki)"
            )
        # The service's own pace (Apprise sleeps between two calls to most services) is
        # kept by the delivery loop, outside the deadline.
        self.pace = float(plugin.request_rate_per_sec or 0)
        plugin.request_rate_per_sec = 0
        # Each socket operation within the deadline too, so a given-up attempt ends soon.
        plugin.socket_connect_timeout = min(plugin.socket_connect_timeout, self.timeout)
        plugin.socket_read_timeout = min(plugin.socket_read_timeout, self.timeout)
        self._plugin = plugin
        self._types = {
            "critical": apprise.NotifyType.FAILURE,
            "warning": apprise.NotifyType.WARNING,
            "ok": apprise.NotifyType.SUCCESS,
        }
        self._text = apprise.NotifyFormat.TEXT
        self._idle = threading.Event()  # no attempt of this channel running
        self._idle.set()

    @property
    def label(self) -> str:
        """How the log names it: its name and scheme, never its URL."""
        return f"{self.name} ({self.scheme}://)"

    def deliver(self, message: Message) -> None:
        """Send `message`, or raise DeliveryError within `timeout` seconds."""
        if not self._idle.is_set():
            raise DeliveryError(f"an attempt given up after {self.timeout:g} s still runs")
        self._idle.clear()
        outcome: list[str | None] = []  # None: sent; else why not
        threading.Thread(
            target=self._attempt, args=(message, outcome), name=f"notify-{self.name}", daemon=True
        ).start()
        if not self._idle.wait(self.timeout):
            raise DeliveryError(f"no answer within {self.timeout:g} s")
        if outcome[0] is not None:
            raise DeliveryError(self._blank(outcome[0]))

    def _attempt(self, message: Message, outcome: list[str | None]) -> None:
        me = threading.get_ident()
        try:
            sent = self._plugin.notify(
                body=message.full if self.full else message.short,
                title=message.title,
                notify_type=self._types.get(message.level, self._types["warning"]),
                body_format=self._text,
            )
            reason = _reasons.last.pop(me, None)
            outcome.append(None if sent else reason or "Apprise said it was not sent")
        except Exception as exc:  # a bug in a plugin: this channel's failure, not the loop's
            _reasons.last.pop(me, None)
            outcome.append(describe_error(exc))
        finally:
            self._idle.set()

    def _blank(self, text: str) -> str:
        for secret in self._secrets:
            text = re.sub(re.escape(secret), "***", text, flags=re.IGNORECASE)
        return text[:300]


def open_channels(channels: dict[str, ChannelSettings]) -> dict[str, AppriseChannel]:
    """Every declared channel, read by Apprise; ConfigError naming the first it cannot."""
    return {name: AppriseChannel(name, settings) for name, settings in channels.items()}
