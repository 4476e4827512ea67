// The fleet page: a tile per host, worst first, from one `fleet` event a second.
// A tile is text and SVG made with DOM calls, never HTML from the payload.
import { $, num, pct, favicon, keepScreenAwake, shared, exposeForTests } from "./common.js";

const SVG = "http://www.w3.org/2000/svg";
const STATES = ["down", "stale", "crit", "warn", "ok"];

// The page's state in one place: the tiles made, their sparklines, the last
// `fleet` event, and wall mode's host in focus.
const page = {
  tiles: new Map(), // id -> {el, parts}
  sparks: new Map(), // id -> [cpu, ...] (15 min)
  sparkAt: new Map(), // id -> when its last point was added
  sparkStep: 10, // seconds between two points, as the hub says
  lastFleet: null,
  focusIndex: -1, // wall mode: the host shown large, and its place in the hosts it cycles through
  focusId: null,
};

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const k in attrs) node.setAttribute(k, attrs[k]);
  return node;
}

function bar(label) {
  const row = el("div", "tile-bar");
  row.append(el("span", "tile-bar-label", label));
  const meter = el("div", "meter");
  const fill = el("span");
  meter.append(fill);
  const value = el("span", "tile-bar-value", "–");
  row.append(meter, value);
  return { row, fill, value };
}

function makeTile(id) {
  const a = el("a", "tile");
  a.href = "host/" + encodeURIComponent(id);
  const head = el("div", "tile-head");
  const name = el("span", "tile-name");
  const state = el("span", "tile-state");
  head.append(name, state);
  // The alert ring: ok, warn and crit checks as arcs of one circle.
  const ring = svg("svg", { viewBox: "0 0 36 36", class: "ring", role: "img" });
  const arcs = ["ok", "warn", "crit"].map((k) => {
    const c = svg("circle", { cx: 18, cy: 18, r: 15.9155, fill: "none", "stroke-width": 4, class: "arc-" + k });
    ring.append(c);
    return c;
  });
  const ringText = svg("text", { x: 18, y: 21, "text-anchor": "middle", class: "ring-text" });
  ring.append(ringText);
  const bars = { cpu: bar("cpu"), mem: bar("mem"), disk: bar("disk") };
  const body = el("div", "tile-body");
  const meters = el("div", "tile-meters");
  meters.append(bars.cpu.row, bars.mem.row, bars.disk.row);
  body.append(ring, meters);
  const spark = svg("svg", { viewBox: "0 0 90 20", preserveAspectRatio: "none", class: "spark", "aria-hidden": "true" });
  const line = svg("polyline", { fill: "none", "stroke-width": 1.2 });
  spark.append(line);
  const age = el("span", "tile-age");
  const clock = el("span", "tile-clock"); // "clock 10 min ahead", as the hub measured it
  const agent = el("span", "tile-clock"); // "agent 0.1.0, older than the hub (0.2.0)"
  const trouble = el("span", "tile-trouble"); // over a budget, or refused: why
  const containers = el("span", "tile-containers"); // where the host's containers are sampled
  const services = el("span", "tile-services"); // where the host's systemd units are read
  a.append(head, body, spark, age, containers, services, clock, agent, trouble);
  return { el: a, name, state, arcs, ringText, ring, bars, line, age, containers, services, clock, agent, trouble };
}

function drawSpark(t, points) {
  const coords = [];
  points.forEach((v, i) => {
    // Right-aligned: the newest point at the right edge, 90 points for 15 minutes.
    if (num(v)) coords.push((90 - points.length + i) + "," + (20 - Math.min(v, 100) / 5).toFixed(1));
  });
  t.line.setAttribute("points", coords.join(" "));
}

function update(t, h) {
  t.el.dataset.state = h.state;
  t.el.dataset.name = h.name.toLowerCase();
  t.name.textContent = h.name;
  t.state.textContent = h.state;
  t.state.className = "tile-state state-" + h.state;
  const [ok, warn, crit] = h.alerts;
  const total = ok + warn + crit || 1;
  let offset = 25; // start at 12 o'clock
  [ok, warn, crit].forEach((n, i) => {
    const len = (n / total) * 100;
    t.arcs[i].setAttribute("stroke-dasharray", len + " " + (100 - len));
    t.arcs[i].setAttribute("stroke-dashoffset", String(offset));
    offset -= len;
  });
  t.ringText.textContent = String(warn + crit);
  t.ring.setAttribute("aria-label", ok + " ok, " + warn + " warning, " + crit + " critical");
  for (const k of ["cpu", "mem", "disk"]) {
    const v = h[k];
    t.bars[k].fill.style.width = (num(v) ? v : 0) + "%";
    t.bars[k].value.textContent = pct(v);
  }
  t.age.textContent = !num(h.age) ? "no sample yet" : h.age < 2 ? "live" : "last sample " + h.age.toFixed(0) + " s ago";
  const [running, unhealthy, stopped] = h.containers || [];
  t.containers.hidden = !h.containers;
  t.containers.textContent = h.containers ? "containers: " + running + " running" + (unhealthy ? " · " + unhealthy + " unhealthy" : "") + (stopped ? " · " + stopped + " stopped" : "") : "";
  t.containers.classList.toggle("bad", Boolean(unhealthy));
  // systemd's units: "units: 1 failed · 142 ok", the troubled counts only where not 0.
  const [failed, restarting, activating, fine] = h.services || [];
  t.services.hidden = !h.services;
  t.services.textContent = h.services ? "units: " + [[failed, "failed"], [restarting, "restarting"], [activating, "starting"], [fine, "ok"]].filter(([n, word]) => n || word === "ok").map(([n, word]) => n + " " + word).join(" · ") : "";
  t.services.classList.toggle("bad", Boolean(failed));
  t.clock.hidden = !h.clock_note;
  t.clock.textContent = h.clock_note || "";
  t.agent.hidden = !h.agent_note;
  t.agent.textContent = h.agent_note || "";
  t.trouble.hidden = !h.trouble;
  t.trouble.textContent = (h.trouble || []).join("; ");
}

function applyFilter() {
  const want = $("filter").value.trim().toLowerCase();
  let shown = 0;
  for (const t of page.tiles.values()) {
    const match = !want || t.el.dataset.name.includes(want);
    t.el.hidden = !match;
    if (match) shown++;
  }
  $("empty").hidden = shown > 0 || page.tiles.size === 0;
}

function render(fleet) {
  page.lastFleet = fleet;
  // The hub cannot write its history: said until it can.
  const problems = fleet.degraded || [];
  $("store-banner").hidden = !problems.length;
  $("store-error").textContent = problems.join("; ");
  if (fleet.spark_step) page.sparkStep = fleet.spark_step;
  const box = $("tiles");
  const now = performance.now();
  const seen = new Set();
  fleet.hosts.forEach((h, i) => {
    seen.add(h.id);
    let t = page.tiles.get(h.id);
    if (!t) {
      t = makeTile(h.id);
      page.tiles.set(h.id, t);
    }
    if (fleet.sparks && fleet.sparks[h.id]) {
      page.sparks.set(h.id, fleet.sparks[h.id].slice(-90));
      page.sparkAt.set(h.id, now);
    } else if (!page.sparkAt.has(h.id) || now - page.sparkAt.get(h.id) >= page.sparkStep * 1000) {
      const s = page.sparks.get(h.id) || [];
      s.push(h.cpu);
      if (s.length > 90) s.shift();
      page.sparks.set(h.id, s);
      page.sparkAt.set(h.id, now);
    }
    update(t, h);
    drawSpark(t, page.sparks.get(h.id) || []);
    if (box.children[i] !== t.el) box.insertBefore(t.el, box.children[i] || null);
  });
  for (const [id, t] of page.tiles) {
    if (!seen.has(id)) { t.el.remove(); page.tiles.delete(id); page.sparks.delete(id); }
  }
  const counts = $("counts");
  counts.textContent = "";
  for (const s of STATES) {
    const n = fleet.counts[s] || 0;
    if (!n && s !== "ok") continue;
    const li = el("li", "count state-" + s, n + " " + s);
    counts.append(li);
  }
  const worst = STATES.find((s) => fleet.counts[s] > 0) || "ok";
  document.title = (worst === "ok" ? "" : worst.toUpperCase() + " · ") + "Fleet · dashboard";
  favicon(worst);
  document.body.dataset.hosts = String(fleet.hosts.length);
  applyFilter();
}

$("filter").addEventListener("input", applyFilter);

const socket = io({ auth: { view: "fleet" }, transports: ["websocket", "polling"], reconnectionDelayMax: 10000 });
shared.socket = socket;
shared.fleetHosts = () => (page.lastFleet ? page.lastFleet.hosts : []);
const status = $("status");
function setStatus(cls, text) {
  status.className = "status status-" + cls;
  status.textContent = text;
}
socket.on("connect", () => setStatus("live", "live"));
socket.on("disconnect", () => setStatus("reconnecting", "reconnecting"));
socket.on("connect_error", () => setStatus("reconnecting", "reconnecting"));
socket.on("fleet", render);
// An agent removed at the hub: its tile goes with the next `fleet`; say why.
socket.on("host_state", (change) => {
  if (change.state !== "removed") return;
  const note = $("removed-note");
  note.textContent = `${change.host} was removed from the fleet; its history stays at the hub until it ages out.`;
  note.hidden = false;
});
exposeForTests("__fleet", () => page.lastFleet);

// ---------------------------------------------------------------- wall mode

// ?kiosk=1: every `cycle` seconds (?cycle=N) the next host in trouble, or
// the next of all when none is, is shown large above the tiles.
const kiosk = document.body.classList.contains("kiosk");
const cycleSeconds = Number(document.body.dataset.cycle) || 15;

function focusNext() {
  if (!page.lastFleet || !page.lastFleet.hosts.length) return;
  const trouble = page.lastFleet.hosts.filter((h) => h.state !== "ok");
  const pool = trouble.length ? trouble : page.lastFleet.hosts;
  page.focusIndex = (page.focusIndex + 1) % pool.length;
  page.focusId = pool[page.focusIndex].id;
  showFocus();
}

function showFocus() {
  const h = page.lastFleet && page.lastFleet.hosts.find((x) => x.id === page.focusId);
  const box = $("focus");
  box.textContent = "";
  if (!h) return;
  box.dataset.state = h.state;
  document.body.dataset.focus = h.id;
  const name = el("div", "focus-name", h.name);
  const state = el("span", "tile-state state-" + h.state, h.state);
  const head = el("div");
  head.append(name, state);
  const figures = el("div", "focus-figures");
  for (const [label, value] of [["cpu", h.cpu], ["memory", h.mem], ["disk", h.disk]]) {
    const f = el("span", null, label);
    f.prepend(el("b", null, pct(value)));
    figures.append(f);
  }
  const trouble = page.lastFleet.hosts.filter((x) => x.state !== "ok").length;
  const note = el("span", "focus-note", trouble ? trouble + " in trouble · every " + cycleSeconds + " s" : "all ok · every " + cycleSeconds + " s");
  box.append(head, figures, note);
}

if (kiosk) {
  socket.on("fleet", () => { if (page.focusId === null) focusNext(); else showFocus(); });
  setInterval(focusNext, cycleSeconds * 1000);
  keepScreenAwake();
}
