"""The page as its users' tools judge it, in real headless Chromium: axe-core
(both themes, desktop and phone, under load), layout shift, console errors,
a phone's width, wall mode, and history drawn from columns.

The server runs with alert levels low enough that a busy core is critical and
alerts fire, the states an audit of an idle page never sees.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.chromium import Chromium
from testkit.serverproc import ServerProcess
from testkit.system import skip_or_fail_under_ci

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

AXE = Path(__file__).parent / "node" / "node_modules" / "axe-core" / "axe.min.js"

# A core at 0.02 % or more is critical; memory is past its warning.
LOW_LEVELS = """
[alerts.cpu]
warning = 0.01
critical = 0.02
for_seconds = 0
clear_seconds = 3600
[alerts.memory]
warning = 0.5
critical = 99.9
for_seconds = 0
clear_seconds = 3600
"""


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server whose page shows critical cores and firing alerts: one core kept busy."""
    tmp = tmp_path_factory.mktemp("page")
    config = tmp / "alerts.toml"
    config.write_text(LOW_LEVELS)
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    server = ServerProcess(tmp / "logs", "--config", str(config)).start()
    try:
        yield server
    finally:
        server.stop()
        burner.kill()
        burner.wait()


def layout_shift(browser: Chromium) -> float:
    """The page's layout shift since navigation (`buffered`: not only from now on),
    shifts that followed an input left out."""
    return float(
        browser.evaluate_async("""new Promise(done => {
      let sum = 0;
      new PerformanceObserver(list => {
        for (const e of list.getEntries()) if (!e.hadRecentInput) sum += e.value;
      }).observe({type: 'layout-shift', buffered: true});
      setTimeout(() => done(sum), 200);
    })""")
    )


def open_page(browser: Chromium, url: str, width: int, height: int, scheme: str) -> None:
    browser.viewport(width, height)
    browser.color_scheme(scheme)
    browser.navigate(url)
    browser.wait_for("document.body.dataset.status === 'live'", timeout=20)


def test_no_console_error_and_nothing_wider_than_a_phone(
    loaded: ServerProcess, browser: Chromium
) -> None:
    open_page(browser, loaded.url + "/", 390, 844, "light")
    browser.wait_for("document.querySelectorAll('#processes tr').length > 0")
    time.sleep(2)
    assert browser.console_errors() == []
    # Nothing sticks out past 390 px but what scrolls inside its own region.
    wide = browser.evaluate("""JSON.stringify([...document.querySelectorAll('body *')]
      .filter(e => !e.closest('.table-scroll') && e.getBoundingClientRect().right > 390.5)
      .map(e => e.tagName + '.' + e.className))""")
    assert json.loads(wide) == []
    assert browser.evaluate("document.documentElement.scrollWidth") <= 390
    # A table wider than the phone can be reached with the keyboard.
    regions = browser.evaluate(
        "[...document.querySelectorAll('.table-scroll')].every(e => e.tabIndex === 0)"
    )
    assert regions is True


def test_charts_fill_from_history_in_columns(loaded: ServerProcess, browser: Chromium) -> None:
    open_page(browser, loaded.url + "/", 1400, 1000, "light")
    browser.wait_for("window.__chartsFullAt > 0")
    assert browser.evaluate("document.body.dataset.historyFormat") == "columns"
    counts = json.loads(
        browser.evaluate(
            "JSON.stringify(Object.values(window.__dashboardPlots).map(u => [u.data[0].length, "
            "u.data.slice(1).every(c => c.length === u.data[0].length), "
            "u.data[1].filter(v => v !== null).length]))"
        )
    )
    assert len(counts) == 4
    for points, aligned, values in counts:
        assert points >= 1 and aligned and values >= 1


def test_wall_mode_fits_one_screen(loaded: ServerProcess, browser: Chromium) -> None:
    open_page(browser, loaded.url + "/?kiosk=1", 1920, 1080, "dark")
    browser.wait_for("window.__chartsFullAt > 0")
    size = browser.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
    )
    assert size[0] <= 1920 and size[1] <= 1080, size
    hidden = browser.evaluate(
        "[...document.querySelectorAll('#ranges, #notify, .bottom')]"
        ".every(e => e.getBoundingClientRect().height === 0)"
    )
    assert hidden is True
    big = browser.evaluate("parseFloat(getComputedStyle(document.body).fontSize)")
    assert big > 14  # larger type than the desk page's
    assert browser.console_errors() == []


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", [1400, 390])
def test_axe_finds_no_violation_under_load(
    loaded: ServerProcess, browser: Chromium, scheme: str, width: int
) -> None:
    if not AXE.exists():
        skip_or_fail_under_ci(f"{AXE} is missing (make test installs it with npm)")
    open_page(browser, loaded.url + "/", width, 900, scheme)
    # The states only load shows: critical cores, alerts firing, a pressed range.
    browser.wait_for("document.querySelector('.core.crit') !== null", timeout=20)
    browser.wait_for("document.querySelectorAll('#alerts-active li').length >= 2", timeout=20)
    browser.evaluate("document.querySelector('#ranges button[data-seconds=\"3600\"]').click()")
    browser.wait_for("document.body.dataset.rangeLoaded === '3600'")
    browser.call("Page.setBypassCSP", enabled=True)
    browser.evaluate(AXE.read_text())
    found = browser.evaluate_async(
        "axe.run(document, {resultTypes: ['violations']}).then(r => JSON.stringify("
        "r.violations.map(v => [v.id, v.impact, v.nodes.map(n => n.target.join(' ') + ': ' "
        "+ (n.failureSummary || '')).slice(0, 5)])))"
    )
    assert json.loads(found) == [], found


@pytest.mark.parametrize("width", [1400, 390])
def test_layout_shift_stays_under_005(loaded: ServerProcess, browser: Chromium, width: int) -> None:
    browser.viewport(width, 900)
    browser.navigate(loaded.url + "/")
    time.sleep(5)
    shift = layout_shift(browser)
    assert shift <= 0.05, shift
