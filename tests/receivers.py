"""Receivers on loopback: HTTP ones that record, fail, hang, redirect or drip (webhooks,
Apprise's json:// and ntfy://), and an SMTP server that takes a login (aiosmtpd)."""

from __future__ import annotations

import email
import email.message
import email.policy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """An HTTP server on 127.0.0.1 answering POSTs with `mode`: ok, error or hang."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.bodies: list[Any] = []
        self.paths: list[str] = []  # of each body kept
        self.answer = (204, b"")  # in mode ok; ntfy's clients want (200, a JSON body)
        self.headers: list[dict[str, str]] = []
        self.outcome: dict[str, int] = {}  # the sender's stats, for the tests to read
        self.attempts = 0
        self.release = threading.Event()  # ends a hanging handler
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                outer.attempts += 1
                outer.headers.append(dict(self.headers))
                if outer.mode == "redirect":
                    self.send_response(302)
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                    self.end_headers()
                    return
                if outer.mode == "drip":  # a header line a second, never done
                    self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                    for i in range(60):
                        if outer.release.wait(1):
                            return
                        self.wfile.write(f"X-Drip-{i}: x\r\n".encode())
                        self.wfile.flush()
                    return
                if outer.mode == "hang":
                    outer.release.wait(30)
                    return
                if outer.mode == "error":
                    self.send_response(500)
                    self.end_headers()
                    return
                outer.bodies.append(json.loads(body))
                outer.paths.append(self.path)
                self.send_response(outer.answer[0])
                self.send_header("Content-Length", str(len(outer.answer[1])))
                self.end_headers()
                self.wfile.write(outer.answer[1])

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


# The mail relay's login: its password must never reach a log.
RELAY_USER, RELAY_PASSWORD = "dash", "s3cret-Pa55word"


class MailReceiver:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that takes one login, AUTH PLAIN or
    LOGIN without TLS, as a relay on a LAN may; it keeps each message it is given."""

    def __init__(self, user: str, password: str) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        from testkit.serverproc import free_port

        self.messages: list[email.message.EmailMessage] = []
        self.logins: list[str] = []
        outer = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
                outer.messages.append(parsed)
                return "250 OK"

        def authenticate(server: Any, session: Any, envelope: Any, mechanism: str,
                         data: Any) -> AuthResult:  # fmt: skip
            good = isinstance(data, LoginPassword) and (data.login, data.password) == (
                user.encode(), password.encode())  # fmt: skip
            if good:
                outer.logins.append(user)
            return AuthResult(success=good)

        self.port = free_port()
        self.controller = Controller(
            Handler(), hostname="127.0.0.1", port=self.port,
            authenticator=authenticate, auth_require_tls=False,
        )  # fmt: skip
        self.controller.start()

    def text(self, message: email.message.EmailMessage) -> str:
        """Its subject and its plain-text body."""
        body = message.get_body(preferencelist=("plain",))
        return f"{message['Subject']}\n{body.get_content() if body is not None else ''}"

    def close(self) -> None:
        self.controller.stop()
