"""Webhook receivers on loopback: one that records, fails, hangs, redirects or drips."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """An HTTP server on 127.0.0.1 answering POSTs with `mode`: ok, error or hang."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.bodies: list[Any] = []
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
                self.send_response(204)
                self.end_headers()

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
