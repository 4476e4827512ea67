"""TLS at Nginx, as the Puppet module writes it: a certificate from a test CA,
plain HTTP sent to HTTPS, HSTS when asked, and the page, REST and the
WebSocket over https/wss with a client that verifies against that CA."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import socketio

from testkit.deploytools import (
    SITE_TEMPLATE,
    NginxProcess,
    checkout_site,
    make_ca_and_cert,
    render_epp,
)
from testkit.serverproc import ServerProcess, free_port
from testkit.system import require_binary
from testkit.wait import wait_until

pytestmark = pytest.mark.e2e


class Secure:
    def __init__(self, http_port: int, tls_port: int, ca: Path) -> None:
        self.http = f"http://127.0.0.1:{http_port}"
        self.https = f"https://localhost:{tls_port}"
        self.tls_port = tls_port
        self.ca = str(ca)


@pytest.fixture
def secure(tmp_path: Path) -> Iterator[Secure]:
    nginx_binary = require_binary("nginx")
    puppet = require_binary("puppet")
    ca, cert, key = make_ca_and_cert(tmp_path)
    # Behind Nginx: one proxy hop, so the app knows a request came over HTTPS.
    app = ServerProcess(tmp_path / "logs", "--proxy-hops", "1", "--allow-anonymous", "true").start()
    http_port, tls_port = free_port(), free_port()
    site = render_epp(
        puppet,
        SITE_TEMPLATE,
        checkout_site(
            f"127.0.0.1:{http_port}",
            app.port,
            tls_cert=str(cert),
            tls_key=str(key),
            tls_listen=f"127.0.0.1:{tls_port}",
            hsts=True,
        ),
    )
    nginx = NginxProcess(nginx_binary, tmp_path / "nginx", site, tls_port)
    try:
        yield Secure(http_port, tls_port, ca)
    finally:
        nginx.stop()
        app.stop()


def test_https_page_rest_and_wss_verified_against_the_test_ca(secure: Secure) -> None:
    # Plain HTTP to the dashboard's name is sent to HTTPS.
    plain = requests.get(
        secure.http + "/api/static?x=1",
        headers={"Host": "localhost"},
        allow_redirects=False,
        timeout=5,
    )
    assert plain.status_code == 301
    assert plain.headers["Location"] == f"https://localhost:{secure.tls_port}/api/static?x=1"

    page = requests.get(secure.https + "/", verify=secure.ca, timeout=5)
    assert page.status_code == 200 and "uPlot" in page.text
    assert page.headers["Strict-Transport-Security"] == "max-age=31536000"
    # Cookies over HTTPS are Secure.
    assert "dashboard_route=" in page.headers["Set-Cookie"]
    assert "Secure" in page.headers["Set-Cookie"]
    static = requests.get(secure.https + "/api/static", verify=secure.ca, timeout=5).json()
    assert static["hostname"]

    got: list[dict[str, object]] = []
    client = socketio.Client(websocket_extra_options={"sslopt": {"ca_certs": secure.ca}})
    client.on("metrics", got.append)
    client.connect(secure.https, transports=["websocket"], wait_timeout=10)
    try:
        assert client.transport() == "websocket"
        wait_until(lambda: got, timeout=10, interval=0.1, what="metrics over https")
        assert got[0]["cpu"]
    finally:
        client.disconnect()


def test_a_foreign_name_gets_no_handshake_and_an_unknown_ca_is_refused(secure: Secure) -> None:
    # No SNI for an address: the default server refuses the handshake.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"https://127.0.0.1:{secure.tls_port}/", verify=False, timeout=5)
    # The client checks the server: without the test CA, no connection.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(secure.https + "/", timeout=5)
    # A foreign Host over plain HTTP is still refused (DNS rebinding).
    foreign = requests.get(
        secure.http + "/", headers={"Host": "evil.example"}, allow_redirects=False, timeout=5
    )
    assert foreign.status_code == 421


def test_an_agent_reports_over_https_trusting_only_its_hub_ca_file(
    secure: Secure, tmp_path: Path
) -> None:
    from server.fleet.tokens import AgentTokens
    from testkit.fleet import AgentProcess, wait_until_the_hub_takes

    data_dir = next(p for p in tmp_path.iterdir() if p.name == "data")
    token = AgentTokens(str(data_dir)).add("edge-1")
    wait_until_the_hub_takes(secure.https + "/agents", token, ca_file=secure.ca).disconnect()
    agent = AgentProcess(tmp_path / "agents", "edge-1", token, secure.https + "/agents")
    agent.args += ["--hub-ca-file", secure.ca]
    agent.start()
    try:

        def reported() -> bool:
            hosts = requests.get(secure.https + "/api/hosts", verify=secure.ca, timeout=5)
            return any(h["id"] == "edge-1" and h["state"] == "ok" for h in hosts.json()["hosts"])

        wait_until(reported, timeout=30, what="the agent's samples over https")
    finally:
        agent.stop()
    assert "certificate verify failed" not in agent.log()
