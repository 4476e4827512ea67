"""The page in real headless Chromium: it fills from history and then moves."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from server.app import host_id_of
from server.history.store import HistoryStore
from testkit.chromium import Chromium
from testkit.history import wait_until_stored
from testkit.serverproc import ServerProcess
from testkit.synthetic import fill
from testkit.system import require_binary
from testkit.wait import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

READ_PAGE = """JSON.stringify({
  hostname: document.getElementById('hostname').textContent,
  cpu: document.getElementById('cpu-percent').textContent,
  cores: [...document.querySelectorAll('.core-label')].map(e => e.textContent).join('|'),
  seq: document.body.dataset.seq || null,
  status: document.body.dataset.status || null,
  points: document.querySelectorAll('#chart-cpu canvas').length,
  disks: document.querySelectorAll('#disks tr').length,
  processes: document.querySelectorAll('#processes tr').length,
  uptime: document.getElementById('uptime').textContent,
  own: ['own-cpu', 'own-rss', 'own-tick', 'own-clients']
    .map(id => document.getElementById(id).textContent).join('|'),
  alertsPanel: !!document.getElementById('alerts-active'),
})"""


def read(browser: Chromium) -> dict[str, object]:
    import json

    page: dict[str, object] = json.loads(browser.evaluate(READ_PAGE))
    return page


# Per chart: its number of points if its x values increase strictly and it
# has as many y values, else what is wrong.
CHART_POINTS = """JSON.stringify(Object.entries(window.__dashboardPlots || {}).map(([name, u]) => {
  const x = u.data[0];
  for (let i = 1; i < x.length; i++) if (!(x[i] > x[i - 1])) return name + ': x repeats at ' + i;
  for (const y of u.data.slice(1)) if (y.length !== x.length) return name + ': y is short';
  return x.length;
}))"""


def history_drawn(browser: Chromium) -> int:
    """The fewest points any of the four charts holds; fails on a chart that is wrong."""
    import json

    counts: list[int | str] = json.loads(browser.evaluate(CHART_POINTS))
    assert len(counts) == 4, counts
    numbers = [c for c in counts if isinstance(c, int)]
    assert len(numbers) == 4, counts
    return min(numbers)


# Per chart line: [its band's edges shown, some point has a band value].
BANDS_SHOWN = """Object.values(window.__dashboardPlots).flatMap((u) =>
  u.series.map((s, i) => i).filter((i) => i % 3 === 2).map((i) =>
    [u.series[i].show, u.data[i].some((v) => v !== null)]))"""


def test_page_shows_host_and_live_cpu(server: ServerProcess, browser: Chromium) -> None:
    import requests

    hostname = requests.get(server.url + "/api/static", timeout=5).json()["hostname"]

    # Some history first, so that "drawn from history" differs from a live point or two.
    def five_samples() -> list[object] | None:
        samples = requests.get(server.url + "/api/history", timeout=5).json()["samples"]
        return samples if len(samples) >= 5 else None

    sent = len(wait_until(five_samples, timeout=15))
    browser.navigate(server.url + "/")
    browser.wait_for("document.body.dataset.status === 'live' && document.body.dataset.seq")
    first = read(browser)
    assert first["hostname"] == hostname
    assert str(first["cpu"]).endswith(" %")
    assert first["points"] == 1  # the CPU chart was drawn
    assert int(str(first["disks"])) >= 1 and int(str(first["processes"])) >= 1
    # The charts start full: every chart holds the history it was sent (not
    # one live point), with strictly increasing x values.
    assert history_drawn(browser) >= sent

    seen_cpu = {(first["cpu"], first["cores"])}
    seen_own = {first["own"]}
    seqs = [int(str(first["seq"]))]
    readings = [first]

    def moved() -> bool:
        """Read the page once a second until its figures have moved."""
        time.sleep(1)
        now = read(browser)
        readings.append(now)
        seen_cpu.add((now["cpu"], now["cores"]))
        seen_own.add(now["own"])
        seqs.append(int(str(now["seq"])))
        assert now["hostname"] == hostname
        assert now["status"] == "live"
        return len(seen_cpu) >= 2 and len(seen_own) >= 2 and len(seqs) >= 4

    wait_until(moved, timeout=12, interval=0, what="the page's figures moving")
    now = readings[-1]
    assert len(seen_cpu) >= 2, "the CPU figures never changed"
    # The footer: the server's own cost, live. One client: this page.
    assert len(seen_own) >= 2, seen_own
    own_cpu, own_rss, own_tick, clients = str(now["own"]).split("|")
    assert own_cpu.endswith(" %") and "MiB" in own_rss and own_tick.endswith("\u00a0ms")
    assert clients == "1 client"
    assert now["alertsPanel"] is True
    # The tab's icon: painted in the worst alert's colour (none here), never a
    # request for /favicon.ico that answers 404.
    assert browser.evaluate("document.body.dataset.worst") == "ok"
    icon = browser.evaluate("document.getElementById('favicon').href")
    assert icon.startswith("data:image/svg+xml,") and "2f9e6b" in icon
    assert seqs == sorted(seqs) and seqs[-1] >= seqs[0] + 3
    uptime = read(browser)["uptime"]
    assert isinstance(uptime, str) and uptime.count(":") == 2


def test_page_reconnects_and_refills_without_duplicates(tmp_path: Path, browser: Chromium) -> None:
    server = ServerProcess(tmp_path / "logs", "--async-mode", "eventlet").start()
    try:
        browser.navigate(server.url + "/")
        browser.wait_for("document.body.dataset.status === 'live' && document.body.dataset.seq")
        time.sleep(3)
        server.stop()
        browser.wait_for("document.body.dataset.status === 'reconnecting'", timeout=10)
        time.sleep(4)  # a downtime of a few ticks
        server.start()  # same port, same history database
        browser.wait_for("document.body.dataset.status === 'live'", timeout=20)
        time.sleep(2.5)
        # The charts' x values: strictly increasing means no sample drawn twice.
        assert history_drawn(browser) >= 3
        # The history came back from disk, and the downtime is a gap (a null), not a line.
        gap = browser.evaluate("""(() => {
            const y = window.__dashboardPlots.cpu.data[1];
            const i = y.indexOf(null);
            return i > 0 && i < y.length - 1 && y[i - 1] !== null && y[i + 1] !== null;
        })()""")
        assert gap is True
    finally:
        server.stop()


def test_page_fits_a_phone(server: ServerProcess) -> None:
    phone = Chromium(require_binary("chromium", "chromium-browser"), width=390, height=844)
    try:
        phone.navigate(server.url + "/")
        phone.wait_for("document.body.dataset.seq")
        overflow = phone.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the page scrolls sideways by {overflow}px on a phone"
    finally:
        phone.close()


def test_range_selector_loads_longer_ranges(server: ServerProcess, browser: Chromium) -> None:
    browser.navigate(server.url + "/")
    browser.wait_for("document.body.dataset.status === 'live' && document.body.dataset.seq")
    wait_until_stored(server.url)  # a batch on disk
    browser.evaluate("document.querySelector('#ranges button[data-seconds=\"3600\"]').click()")
    browser.wait_for("document.body.dataset.rangeLoaded === '3600'")
    # An hour: raw samples (the store's own pick below 10 s a pixel).
    width = browser.evaluate("document.getElementById('chart-cpu').clientWidth")
    assert browser.evaluate("document.body.dataset.rangeStep") == "1"
    points = browser.evaluate("window.__dashboardPlots.cpu.data[0].length")
    assert points >= 2
    browser.evaluate("document.querySelector('#ranges button[data-seconds=\"86400\"]').click()")
    browser.wait_for("document.body.dataset.rangeLoaded === '86400'")
    # A day: about a point per pixel of the chart, regrouped from the 1 min tier.
    step = int(browser.evaluate("document.body.dataset.rangeStep"))
    assert step % 60 == 0 and 86400 / step <= 2 * width, (step, width)
    pressed = browser.evaluate(
        "document.querySelector('#ranges button[aria-pressed=\"true\"]').dataset.seconds"
    )
    assert pressed == "86400"
    # Live points keep coming in after the range loaded.
    before = browser.evaluate("window.__dashboardPlots.cpu.data[0].length")
    browser.wait_for(f"window.__dashboardPlots.cpu.data[0].length > {before}", timeout=5)


def test_bands_are_drawn_for_a_downsampled_range_and_not_for_raw_samples(
    tmp_path: Path, browser: Chromium
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    clock = [time.time() - 1800]
    own_id = host_id_of(socket.gethostname())  # the server's id for its own rows
    store = HistoryStore(str(data / "history.sqlite3"), clock=lambda: clock[0], local_host=own_id)
    store.open()
    fill(store, clock, 1800, clock[0], batch=300)  # half an hour: 10 s points with min and max
    store.stop()
    server = ServerProcess(tmp_path / "logs", "--data-dir", str(data)).start()
    try:
        browser.navigate(server.url + "/")
        browser.wait_for("document.body.dataset.status === 'live'")
        # The page's own 15 minutes are raw samples: no band to draw.
        assert browser.evaluate(BANDS_SHOWN) == [[False, False]] * 7
        browser.evaluate("document.querySelector('#ranges button[data-seconds=\"86400\"]').click()")
        browser.wait_for("document.body.dataset.rangeLoaded === '86400'")
        assert browser.evaluate(BANDS_SHOWN) == [[True, True]] * 7
        browser.evaluate("document.querySelector('#ranges button[data-seconds=\"900\"]').click()")
        browser.wait_for("document.body.dataset.rangeLoaded === '900'")
        assert browser.evaluate(BANDS_SHOWN) == [[False, False]] * 7
    finally:
        server.stop()
