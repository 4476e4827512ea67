"""Add host on the hub's page: a logged-in user makes a new agent's token and is shown
the one line that installs it; a page open to all has no such button, and the API
refuses it there. A real server, a real Chromium."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from testkit.auth import PASSWORD, basic_auth_headers, password_hash
from testkit.chromium import Chromium
from testkit.config import write_toml
from testkit.deploytools import build_agent_wheel
from testkit.serverproc import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wheels")
    build_agent_wheel(folder)
    return folder


@pytest.fixture
def hub(tmp_path: Path, wheels: Path) -> Iterator[ServerProcess]:
    config = write_toml(tmp_path / "hub.toml", password_hash=password_hash(),
                        agent_wheel_dir=str(wheels))  # fmt: skip
    server = ServerProcess(tmp_path / "logs", "--config", str(config)).start()
    try:
        yield server
    finally:
        server.stop()


def test_a_logged_in_user_adds_a_host_and_is_shown_its_one_line(
    hub: ServerProcess, browser: Chromium
) -> None:
    browser.navigate(hub.url + "/login")
    browser.wait_for("document.readyState === 'complete'")
    browser.evaluate_async(
        f"fetch('/login', {{method: 'POST', body: new URLSearchParams({{user: 'ops',"
        f" password: {PASSWORD!r}}})}}).then(r => r.status)"
    )
    browser.navigate(hub.url + "/")  # a fleet of one: the hub's own page has it
    # Parsed, its modules run (they run before the document is complete).
    browser.wait_for("document.readyState === 'complete' && !!document.getElementById('add-host')")
    browser.evaluate(
        "document.getElementById('add-host').click();"
        "document.getElementById('add-host-name').value = 'web-2';"
        "document.getElementById('add-host-ca').value = '/etc/ssl/hub-ca.pem';"
        "document.getElementById('add-host-form').requestSubmit();"
    )
    line = browser.wait_for("document.getElementById('add-host-line').textContent")
    assert browser.evaluate("document.getElementById('add-host-dialog').open") is True
    found = re.fullmatch(
        r"curl -fsS --cacert /etc/ssl/hub-ca\.pem -o /root/dashboard-agent\.sh "
        + re.escape(hub.url) + r"/agent/install\.sh && printf %s (\S+) \| "
        r"sh /root/dashboard-agent\.sh --token-file - --ca-file /etc/ssl/hub-ca\.pem --allow-http",
        line,
    )  # fmt: skip
    assert found, line
    # The token in the line is the new host's: the install's check knows it.
    check = requests.post(hub.url + "/agent/check", json={"token": found.group(1)}, timeout=5)
    assert check.status_code == 200 and check.json()["host"] == "web-2"

    # The same name again: said in the dialog, nothing made.
    browser.evaluate(
        "document.getElementById('add-host-close').click();"
        "document.getElementById('add-host').click();"
        "document.getElementById('add-host-name').value = 'web-2';"
        "document.getElementById('add-host-form').requestSubmit();"
    )
    error = browser.wait_for("document.getElementById('add-host-error').textContent")
    assert "exists" in error and browser.evaluate(
        "document.getElementById('add-host-result').hidden"
    )
    # The browser logs the refused request itself; nothing else went wrong.
    assert [e for e in browser.console_errors() if "status of 409" not in e] == []


def test_adding_a_host_needs_a_login(hub: ServerProcess, tmp_path: Path, wheels: Path) -> None:
    assert requests.post(hub.url + "/api/agents", json={"name": "x"}, timeout=5).status_code == 401
    auth = basic_auth_headers("ops", PASSWORD)
    bad = requests.post(hub.url + "/api/agents", json={"name": "-no"}, headers=auth, timeout=5)
    assert bad.status_code == 400 and "name" in bad.json()["error"]
    foreign = requests.post(hub.url + "/api/agents", json={"name": "x1"}, timeout=5,
                            headers={**auth, "Origin": "http://evil.example"})  # fmt: skip
    assert foreign.status_code == 403
    # Open to all (allow_anonymous): no button, and the API refuses.
    config = write_toml(tmp_path / "open.toml", allow_anonymous=True, agent_wheel_dir=str(wheels))
    open_hub = ServerProcess(tmp_path / "open-logs", "--config", str(config)).start()
    try:
        assert 'id="add-host"' not in requests.get(open_hub.url + "/", timeout=5).text
        refused = requests.post(open_hub.url + "/api/agents", json={"name": "x"}, timeout=5)
        assert refused.status_code == 403 and "needs a login" in refused.json()["error"]
    finally:
        open_hub.stop()
