// The dashboard page: receives `static`, `history` and `metrics` over
// Socket.IO and draws them. No request leaves the server it came from.
import { $, num, bytes, pct, pctWhole, duration, favicon, keepScreenAwake, shared, testing, cell } from "./common.js";
import { Columns } from "./columns.js";
import { Charts, declaredCharts } from "./charts.js";
import { showContainers, setUpContainers } from "./containers.js";
import { showServices } from "./services.js";
import { showSensors, showGpus } from "./sensors.js";
import { showDiskHealth } from "./drives.js";
import { ackControl, setUpAlertActions, takeAlertsSnapshot } from "./alertactions.js";
import { setUpAlertHistory } from "./alerthistory.js";

const interval = parseFloat(document.body.dataset.interval) || 1;

// The page's state in one place: what the server said, what the user chose,
// how the socket is. The charts' data is in `columns`, the uPlots in `charts`.
const page = {
  // Levels per alert rule come in `static` (declared once on the server, in
  // server/series.py), so a card turns amber and red exactly where its alert fires.
  levels: {},
  liveWindow: 900, // the server's history_seconds: what `history` covers
  windowSeconds: 900, // what the charts span: the live window, or a range chosen
  rangeSeconds: null, // a range chosen; null: the live window from `history`
  rangeRequest: 0, // the newest range asked for: an answer to an older one is dropped
  at: alertMoment(), // ?at=EPOCH, a notification's link: the hour around it, not live
  uptimeBase: null, // [uptime seconds, performance.now() when received]
  activeAlerts: {}, // rule -> its alert, as `alerts` and `alert` say
  heldOpen: false, // whether the alerts held back by host_down are shown
  lastMessageAt: 0, // performance.now() at the last `history` or `metrics`
  disconnectedAt: null, // performance.now() when the socket went down; null while up
};
if (page.at !== null) page.rangeSeconds = 3600; // loaded from REST once `history` comes

function level(p, rule) {
  if (!num(p)) return "unknown";
  const l = page.levels[rule];
  if (!l) return "ok";
  return p >= l.critical ? "crit" : p >= l.warning ? "warn" : "ok";
}

const diskRule = (mount) => (page.levels["disk:" + mount] ? "disk:" + mount : "disk");

function setText(id, text) {
  const el = $(id);
  if (el && el.textContent !== text) el.textContent = text;
}

function setMeter(id, p) {
  const el = $(id);
  if (el) el.style.width = (num(p) ? p : 0) + "%";
}

// ---------------------------------------------------------------- charts

const CHARTS = declaredCharts();
const columns = new Columns(CHARTS, interval);
const charts = new Charts(CHARTS, columns, () => page.windowSeconds);

// When the charts were first drawn full, from navigation start (for `make
// bench` and the tests). uPlot draws in a microtask after it is given data:
// this one comes after theirs.
function markFull() {
  if (!testing || !columns.ts.length || window.__chartsFullAt) return;
  queueMicrotask(() => { window.__chartsFullAt = window.__chartsFullAt || performance.now(); });
}

// ---------------------------------------------------------------- range

// A notification links to the page at its alert's moment (server/alerts/evidence.py):
// a time in the past year, else the page is live as ever.
function alertMoment() {
  const at = Number(new URLSearchParams(location.search).get("at"));
  const now = Date.now() / 1000;
  return Number.isFinite(at) && at > now - 366 * 86400 && at <= now ? at : null;
}

function loadRange(seconds) {
  const ask = ++page.rangeRequest;
  document.body.dataset.range = String(seconds);
  for (const b of document.querySelectorAll("#ranges button")) {
    b.setAttribute("aria-pressed", String(Number(b.dataset.seconds) === seconds));
  }
  // About a point per pixel: 7 days is ~1,000 points, not 10,000. Finer than
  // 10 s, the store's own pick (raw samples for the last hour) stands.
  const perPixel = Math.ceil(seconds / Math.max($("chart-cpu").clientWidth, 300));
  const step = perPixel >= 10 ? "&step=" + perPixel : "";
  const span = page.at === null ? "&seconds=" + seconds
    : "&start=" + (page.at - seconds / 2) + "&end=" + Math.min(page.at + seconds / 2, Date.now() / 1000);
  const url = document.body.dataset.history + "?format=columns" + span + step;
  return fetch(url, { credentials: "same-origin" })
    .then((r) => (r.ok ? r.json() : Promise.reject(new Error("HTTP " + r.status))))
    .then((body) => {
      if (ask !== page.rangeRequest) return; // a newer choice won
      page.windowSeconds = seconds;
      columns.load(body);
      charts.draw();
      document.body.dataset.rangeStep = String(body.step);
      document.body.dataset.rangeLoaded = String(seconds);
      setText("range-note", page.at === null ? ""
        : "the hour around " + new Date(page.at * 1000).toLocaleString() + ", from a notification: a range goes back to live");
    })
    .catch(() => setText("range-note", "could not load that range"));
}

setUpContainers();

for (const button of document.querySelectorAll("#ranges button")) {
  button.addEventListener("click", () => {
    const seconds = Number(button.dataset.seconds);
    page.at = null; // back to live
    page.rangeSeconds = seconds === page.liveWindow ? null : seconds;
    loadRange(seconds);
  });
}

// ---------------------------------------------------------------- cards & tables

function setCard(card, p, rule) {
  card.classList.remove("ok", "warn", "crit", "unknown");
  card.classList.add(level(p, rule));
}

function showUsage(name, p, detail) {
  setText(name + "-percent", pct(p));
  setMeter(name + "-meter", p);
  setCard($("card-" + name), p, name);
  if (detail !== undefined) setText(name + "-detail", detail);
}

function diskCardId(mount) {
  return "card-disk-" + mount.replace(/[^a-zA-Z0-9]/g, "_");
}

function showDisks(disks) {
  const cards = $("cards");
  const wanted = new Set();
  const body = $("disks");
  body.textContent = "";
  for (const d of disks || []) {
    const id = diskCardId(d.mount);
    wanted.add(id);
    let card = $(id);
    if (!card) {
      card = document.createElement("article");
      card.className = "card disk-card";
      card.id = id;
      card.innerHTML = '<h2></h2><p class="big"><span class="value"></span></p><div class="meter"><span></span></div><p class="sub"></p>';
      card.querySelector("h2").textContent = "Disk " + d.mount;
      cards.appendChild(card);
    }
    card.querySelector(".value").textContent = pct(d.percent);
    card.querySelector(".meter span").style.width = (d.percent || 0) + "%";
    card.querySelector(".sub").textContent = d.answering === false ? "not answering" : bytes(d.used) + " of " + bytes(d.total);
    setCard(card, d.percent, diskRule(d.mount));

    const row = document.createElement("tr");
    cell(row, d.mount);
    cell(row, d.device, "wide");
    cell(row, d.fstype, "wide");
    cell(row, bytes(d.used), "num");
    cell(row, bytes(d.free), "num");
    cell(row, bytes(d.total), "num");
    cell(row, pct(d.percent), "num " + level(d.percent, diskRule(d.mount)));
    body.appendChild(row);
  }
  for (const card of cards.querySelectorAll(".disk-card")) {
    if (!wanted.has(card.id)) card.remove();
  }
}

function showCores(perCore) {
  const box = $("cores");
  perCore = perCore || [];
  box.classList.toggle("many", perCore.length > 32);
  while (box.children.length > perCore.length) box.lastChild.remove();
  while (box.children.length < perCore.length) {
    const core = document.createElement("div");
    core.className = "core";
    core.innerHTML = '<span class="core-bar"><span class="core-fill"></span></span><span class="core-label"></span>';
    box.appendChild(core);
  }
  perCore.forEach((p, i) => {
    const core = box.children[i];
    core.querySelector(".core-fill").style.height = (p || 0) + "%";
    const text = pctWhole(p);
    core.querySelector(".core-label").textContent = text;
    core.title = "core " + i + ": " + text;
    core.className = "core " + level(p, "cpu");
  });
}

function showProcesses(processes) {
  if (processes === undefined) return; // history samples carry none
  const body = $("processes");
  body.textContent = "";
  for (const p of processes || []) {
    const row = document.createElement("tr");
    cell(row, String(p.pid), "num");
    cell(row, p.name, "name").title = p.name;
    cell(row, pct(p.cpu_percent), "num");
    cell(row, pct(p.memory_percent), "num");
    body.appendChild(row);
  }
}

function showSample(s) {
  showUsage("cpu", s.cpu ? s.cpu.percent : null);
  setText("load", Array.isArray(s.load) ? s.load.map((v) => (num(v) ? v.toFixed(2) : "–")).join(" · ") : "–");
  const m = s.memory || {};
  showUsage("memory", m.percent, bytes(m.used) + " of " + bytes(m.total));
  const sw = s.swap || {};
  showUsage("swap", sw.total === 0 ? null : sw.percent, sw.total === 0 ? "no swap" : bytes(sw.used) + " of " + bytes(sw.total));
  showCores(s.cpu ? s.cpu.per_core : null);
  showDisks(s.disks);
  showProcesses(s.processes);
  showContainers(s.containers, s.ts);
  showServices(s.services);
  showSensors(s.sensors, page.levels);
  showGpus(s.gpus);
  showDiskHealth(s.disk_health, page.activeAlerts);
  if (s.uptime !== null && s.uptime !== undefined) page.uptimeBase = [s.uptime, performance.now()];
  showOwnCost(s.server);
  showClockNote(s);
  setText("last-seq", "#" + s.seq);
  document.body.dataset.seq = s.seq;
}

// An agent's clock, as the hub measured it: "clock 10 min ahead" past the setting.
function showClockNote(s) {
  if (!("clock_offset" in s)) return; // the hub's own host, or a hub that does not measure
  const note = $("clock-note");
  note.hidden = !s.clock_note;
  note.textContent = s.clock_note || "";
}

function showOwnCost(own) {
  if (!own) return; // history samples carry none
  // The hub's store cannot write: say so until it can (the page goes on from memory).
  $("store-banner").hidden = !own.store_error;
  setText("store-error", own.store_error || "");
  setText("own-cpu", pct(own.cpu_percent));
  setText("own-rss", bytes(own.rss));
  setText("own-tick", num(own.tick_ms) ? own.tick_ms.toFixed(1) + "\u00a0ms" : "–");
  setText("own-clients", own.clients + (own.clients === 1 ? " client" : " clients"));
}

// ---------------------------------------------------------------- alerts

function alertCardId(rule) {
  if (rule.startsWith("disk:")) return diskCardId(rule.slice(5));
  if (rule === "load" || rule.endsWith("cpu.percent") || rule === "cpu") return "card-cpu";
  if (rule.endsWith("memory.percent") || rule === "memory") return "card-memory";
  if (rule.endsWith("swap.percent") || rule === "swap") return "card-swap";
  if (rule.endsWith("load.per_core")) return "card-cpu";
  if (rule.startsWith("temperature:")) return "card-sensors";
  if (rule.startsWith("disk_health:")) return "card-drives";
  return null;
}

function alertText(a) {
  const when = new Date(a.ts * 1000).toLocaleTimeString();
  const what = a.level === "ok" ? "resolved" : a.level;
  return when + " · " + a.rule + " " + what + " · " + a.metric + " " + a.value + " (threshold " + a.threshold + ")";
}

function alertItem(a) {
  const li = document.createElement("li");
  li.className = "alert alert-" + a.level;
  li.textContent = alertText(a);
  return li;
}

function paintAlertCards() {
  for (const card of document.querySelectorAll(".card[data-alert]")) delete card.dataset.alert;
  const rank = { warning: 1, critical: 2 };
  for (const a of Object.values(page.activeAlerts)) {
    const card = $(alertCardId(a.rule) || "");
    if (card && (!card.dataset.alert || rank[a.level] > rank[card.dataset.alert])) card.dataset.alert = a.level;
  }
}

// While a host's host_down fires, the server holds its other alerts back from the
// channels (server/alerts/dispatch.py): here they fold under it, one click away.
function heldBack(held) {
  const details = document.createElement("details");
  details.className = "held";
  details.open = page.heldOpen;
  details.addEventListener("toggle", () => { page.heldOpen = details.open; });
  const summary = document.createElement("summary");
  summary.textContent = held.length + " held back by host_down";
  const list = document.createElement("ul");
  list.className = "alert-list";
  for (const a of held) {
    const li = alertItem(a);
    li.append(" ", ackControl(a));
    list.appendChild(li);
  }
  details.append(summary, list);
  return details;
}

function showActiveAlerts() {
  const list = $("alerts-active");
  list.textContent = "";
  const items = Object.values(page.activeAlerts).sort((a, b) => (a.level === b.level ? b.ts - a.ts : a.level === "critical" ? -1 : 1));
  const down = items.find((a) => a.rule === "host_down");
  const held = down ? items.filter((a) => a !== down) : [];
  for (const a of down ? [down] : items) {
    const li = alertItem(a);
    li.append(" ", ackControl(a));
    if (held.length) li.appendChild(heldBack(held));
    list.appendChild(li);
  }
  $("alerts-none").hidden = items.length > 0;
  paintAlertCards();
  favicon(items.some((a) => a.level === "critical") ? "crit" : items.length ? "warn" : "ok");
}

function addRecent(a) {
  const list = $("alerts-recent");
  list.insertBefore(alertItem(a), list.firstChild);
  while (list.children.length > 50) list.lastChild.remove();
}

function notify(a) {
  if (!("Notification" in window) || Notification.permission !== "granted") return;
  const title = (a.level === "ok" ? "Resolved: " : a.level.toUpperCase() + ": ") + a.rule;
  new Notification(title, { body: alertText(a), tag: a.rule });
}

const notifyButton = $("notify");
if ("Notification" in window && Notification.permission === "default") {
  notifyButton.hidden = false;
  notifyButton.addEventListener("click", () => {
    Notification.requestPermission().then(() => { notifyButton.hidden = true; });
  });
}

function showStatic(st) {
  setText("hostname", st.hostname);
  document.title = st.hostname + " · dashboard";
  const main = (st.addresses || [])[0];
  setText("address", main ? main.address : "–");
  const os = st.os || {};
  setText("os", [os.distribution || os.system, os.release, os.machine].filter(Boolean).join(" · "));
  const cpu = st.cpu || {};
  setText("cpu-model", (cpu.model || "CPU") + " · " + (cpu.logical || "?") + " threads");
}

setInterval(() => {
  if (page.uptimeBase) setText("uptime", duration(page.uptimeBase[0] + (performance.now() - page.uptimeBase[1]) / 1000));
}, 1000);
setInterval(() => checkStale(), 250);

// ---------------------------------------------------------------- connection

function setStatus(kind, text) {
  const el = $("status");
  el.className = "status status-" + kind;
  el.textContent = text;
  document.body.dataset.status = kind;
}

function checkStale() {
  if (page.disconnectedAt !== null) {
    // Past 30 s of retrying, call it offline; the socket keeps retrying.
    if (!navigator.onLine || performance.now() - page.disconnectedAt > 30000) setStatus("offline", "offline");
    return;
  }
  // Three intervals without a sample (the socket up): the sampler, or the
  // core behind a web process, is gone. It says so within a quarter second.
  if (page.lastMessageAt && performance.now() - page.lastMessageAt > 3 * interval * 1000) {
    setStatus("reconnecting", "stalled");
  }
}

// The history the server put in the page: the charts are full at first
// paint, and the socket is asked only for what came after it.
const embedded = $("history-data");
if (embedded) {
  try {
    columns.load(JSON.parse(embedded.textContent));
    document.body.dataset.historyFormat = "columns";
  } catch { columns.reset(); }
}
// This script comes after uPlot and the page's elements: the charts, full, at once.
charts.draw();
markFull();

const hostId = document.body.dataset.host;
const socket = io({
  // A host of the fleet; none: the hub's own, as before the fleet. A function:
  // asked again on each connect, so a reconnect asks only for what is missing.
  auth: (give) => {
    const view = hostId ? { host: hostId, format: "columns" } : { format: "columns" };
    if (columns.lastTs && page.rangeSeconds === null) view.since = columns.lastTs;
    give(view);
  },
  transports: ["websocket", "polling"],
  autoConnect: false, // opened after the charts are drawn, below
  reconnectionDelay: 1000,
  reconnectionDelayMax: 10000,
  randomizationFactor: 0.5,
});

shared.socket = socket;
// Queued after uPlot's drawing: the first paint does not wait for a WebSocket.
queueMicrotask(() => socket.connect());

socket.on("connect", () => {
  page.disconnectedAt = null;
  setStatus("live", "live");
});
socket.on("shutdown", () => setStatus("reconnecting", "restarting"));
// An agent removed at the hub (remove-agent): said once; nothing more comes for it.
socket.on("host_state", (change) => {
  if (hostId && change.host === hostId && change.state === "removed") $("removed-banner").hidden = false;
});
socket.on("disconnect", () => {
  page.disconnectedAt = performance.now();
  setStatus("reconnecting", "reconnecting");
});
socket.on("connect_error", () => {
  if (page.disconnectedAt === null) page.disconnectedAt = performance.now();
  setStatus("reconnecting", "reconnecting");
});

socket.on("static", (st) => {
  page.liveWindow = st.history_seconds || 900;
  page.levels = st.levels || {};
  if (page.rangeSeconds === null) page.windowSeconds = page.liveWindow;
  showStatic(st);
});

socket.on("history", (payload) => {
  payload = payload || {};
  if (payload.latest) showSample(payload.latest);
  document.body.dataset.historyFormat = payload.format || "rows";
  page.lastMessageAt = performance.now();
  if (page.rangeSeconds !== null) { loadRange(page.rangeSeconds); return; } // a longer range: from REST
  page.windowSeconds = page.liveWindow;
  if (payload.format === "columns" && payload.since !== undefined) {
    // What came after the history the page has: appended, in time order.
    columns.append(payload);
    columns.trim(page.windowSeconds);
  } else if (payload.format === "columns") columns.load(payload);
  else { columns.reset(); for (const s of payload.samples || []) columns.pushSample(s); }
  charts.draw();
  markFull();
});

setUpAlertActions(socket, showActiveAlerts);
setUpAlertHistory();

socket.on("alerts", (snapshot) => {
  takeAlertsSnapshot(snapshot);
  page.activeAlerts = {};
  for (const a of snapshot.active || []) page.activeAlerts[a.rule] = a;
  $("alerts-recent").textContent = "";
  for (const a of (snapshot.recent || []).slice().reverse()) addRecent(a);
  showActiveAlerts();
});

socket.on("alert", (a) => {
  if (a.level === "ok") delete page.activeAlerts[a.rule];
  else page.activeAlerts[a.rule] = a;
  addRecent(a);
  showActiveAlerts();
  notify(a);
});

// Main-thread time per live update, the last 120 (for `make bench`).
const updateMs = testing ? (window.__updateMs = []) : null;

socket.on("metrics", (s) => {
  const began = performance.now();
  page.lastMessageAt = began;
  if (page.disconnectedAt === null) setStatus("live", "live");
  if (page.at === null && columns.pushSample(s)) {
    columns.trim(page.windowSeconds);
    charts.draw();
  }
  showSample(s);
  if (updateMs) {
    updateMs.push(performance.now() - began);
    if (updateMs.length > 120) updateMs.shift();
  }
});

// ---------------------------------------------------------------- wall mode

if (document.body.classList.contains("kiosk")) keepScreenAwake();
