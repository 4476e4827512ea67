"""The host page with 50 containers on a real dockerd (one unhealthy, one exited with an
error, a chart open): axe finds nothing in either theme at a desk's and a phone's
width, layout shift stays under 0.05, and nothing but the table's own scrolling region
is wider than a phone."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from testkit.chromium import Chromium
from testkit.docker import IMAGE, Docker
from testkit.serverproc import ServerProcess
from testkit.system import skip_or_fail_under_ci
from tests.test_page import AXE, layout_shift, open_page

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


@pytest.fixture(scope="module")
def fifty(docker: Docker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = None
    try:
        ids = [docker.cli("create", "--network", "none", "--name", f"app-{k:02d}",
                          "--label", f"com.docker.compose.project=shop{k % 3}", IMAGE,
                          "sleep", "100000").stdout.strip() for k in range(48)]  # fmt: skip
        docker.cli("start", *ids)
        docker.run("sick", "--health-cmd", "false", "--health-interval", "1s",
                   "--health-retries", "1", IMAGE, "sleep", "100000")  # fmt: skip
        docker.run("crash", IMAGE, "sh", "-c", "exit 3")
        tmp = tmp_path_factory.mktemp("fifty")
        server = ServerProcess(tmp / "logs", "--containers", docker.socket).start()
        yield server
    finally:
        if server is not None:
            server.stop()


def show_containers(browser: Chromium, url: str, width: int, scheme: str) -> None:
    open_page(browser, url + "/", width, 900, scheme)
    browser.wait_for(
        "document.querySelectorAll('#containers tr[data-name]').length >= 15"
        " && document.querySelector('#containers .state.crit') !== null",
        timeout=30,
    )


@pytest.mark.parametrize(("scheme", "width"), [("light", 1400), ("dark", 390)])
def test_axe_finds_no_violation_with_fifty_containers_and_a_chart_open(
    fifty: ServerProcess, browser: Chromium, scheme: str, width: int
) -> None:
    if not AXE.exists():
        skip_or_fail_under_ci(f"{AXE} is missing (make test installs it with npm)")
    show_containers(browser, fifty.url, width, scheme)
    browser.evaluate("document.getElementById('containers-more').click()")
    browser.wait_for("document.querySelectorAll('#containers tr[data-name]').length >= 49")
    browser.evaluate("document.querySelector('#containers button.open-chart').click()")
    browser.wait_for("!document.getElementById('container-chart').hidden")
    browser.call("Page.setBypassCSP", enabled=True)
    browser.evaluate(AXE.read_text())
    found = browser.evaluate_async(
        "axe.run(document, {resultTypes: ['violations']}).then(r => JSON.stringify("
        "r.violations.map(v => [v.id, v.impact, v.nodes.map(n => n.target.join(' ') + ': ' "
        "+ (n.failureSummary || '')).slice(0, 5)])))"
    )
    assert json.loads(found) == [], found
    assert browser.console_errors() == []


@pytest.mark.parametrize("width", [1400, 390])
def test_layout_shift_stays_under_005_with_fifty_containers(
    fifty: ServerProcess, browser: Chromium, width: int
) -> None:
    browser.viewport(width, 900)
    browser.navigate(fifty.url + "/")
    time.sleep(5)
    shift = layout_shift(browser)
    assert shift <= 0.05, shift
    rows = browser.evaluate("document.querySelectorAll('#containers tr[data-name]').length")
    assert rows == 15  # the busiest 15 shown; measured with the panel full


def test_nothing_but_the_table_is_wider_than_a_phone_with_fifty_containers(
    fifty: ServerProcess, browser: Chromium
) -> None:
    show_containers(browser, fifty.url, 390, "light")
    wide = browser.evaluate("""JSON.stringify([...document.querySelectorAll('body *')]
      .filter(e => !e.closest('.table-scroll') && e.getBoundingClientRect().right > 390.5)
      .map(e => e.tagName + '.' + e.className))""")
    assert json.loads(wide) == []
    assert browser.evaluate("document.documentElement.scrollWidth") <= 390
