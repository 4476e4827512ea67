// What the host page (app.js), the fleet page (fleet.js) and the Logs panel
// (firehose.js) share: one way to write a figure, one tab icon, one socket.

export const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- format

// A value that is not a finite number (missing, or bad data from a host) shows a dash.
export const num = (v) => typeof v === "number" && isFinite(v);

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
export function bytes(n) {
  if (!num(n)) return "–";
  let i = 0;
  while (Math.abs(n) >= 1024 && i < UNITS.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n.toFixed(0) : n.toFixed(n < 10 ? 1 : 0)) + " " + UNITS[i];
}

export const rate = (n) => (num(n) ? bytes(n) + "/s" : "–");

export const pct = (p) => (num(p) ? p.toFixed(1) + " %" : "–");

// Where room is short: a core's label, a chart's axis.
export const pctWhole = (p) => (num(p) ? p.toFixed(0) + "%" : "–");

export function duration(seconds) {
  if (!num(seconds)) return "–";
  seconds = Math.floor(seconds);
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  const hms = [h, m, s].map((v) => String(v).padStart(2, "0")).join(":");
  return d > 0 ? d + "d " + hms : hms;
}

// A table cell with its text (never HTML: names come from hosts and engines).
export function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

// ---------------------------------------------------------------- look

// The colours live in style.css alone (light and dark); script reads them there.
export function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

// The tab's icon in the colour of the worst state, so that a tab in the
// background still says when something is wrong.
const ICON_COLOURS = { ok: "--ok", warn: "--warn", crit: "--crit", down: "--down", stale: "--stale" };
export function favicon(worst) {
  const dot = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><circle cx="8" cy="8" r="7" fill="' + cssVar(ICON_COLOURS[worst]) + '"/></svg>';
  $("favicon").href = "data:image/svg+xml," + encodeURIComponent(dot);
  document.body.dataset.worst = worst;
}
// The host page paints its icon only when an alert comes or goes: a scheme
// that changes in between would leave it in the other scheme's colours.
window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
  const worst = document.body.dataset.worst;
  if (worst in ICON_COLOURS) favicon(worst);
});

// Wall mode: the screen kept awake where the browser allows it. The lock is
// let go when the tab is hidden, so it is asked again when it shows.
export function keepScreenAwake() {
  if (!("wakeLock" in navigator)) return;
  const ask = () => navigator.wakeLock.request("screen").catch(() => {});
  ask();
  document.addEventListener("visibilitychange", () => { if (document.visibilityState === "visible") ask(); });
}

// ---------------------------------------------------------------- between scripts

// The page's one Socket.IO connection, opened by app.js or fleet.js: the
// Logs panel listens on it rather than open a second session with the server.
// On the fleet page, `fleetHosts` gives the hosts the last `fleet` event
// named, whose logs the panel asks for.
export const shared = {
  socket: null,
  fleetHosts: () => [],
};

// testkit/chromium.py (the browser tests, `make bench`) sets this before any
// script of the page runs; only then does the page put its insides on
// `window` for them to read.
export const testing = window.__DASHBOARD_TEST__ === true;

export function exposeForTests(name, value) {
  if (testing) window[name] = value;
}
