// The host page's Containers panel: what runs on the host, from each sample's
// `containers` table (docs/contract.md, "Containers"). Sortable; grouped by
// Compose project; the busiest SHOWN first and the rest one click away. Each
// row has its last minute of CPU as a sparkline (from the live samples), and
// its name opens the container's CPU and memory chart over the chosen range
// (from the store's per-container tiers: /api/.../containers/<name>/history).
import { $, num, bytes, rate, pct, cell, cssVar, exposeForTests } from "./common.js";

const SHOWN = 15;
const SPARK = 60; // points in a row's sparkline: a minute at 1 Hz
const SVG = "http://www.w3.org/2000/svg";
// `known`: each container of the latest table by name, with its last minute of CPU
// and, once it has been shown, its row. A row is made once and then only changed
// where a value changed: rebuilding 15-200 rows every second was most of a live
// update's time.
const panel = { sortKey: "cpu_percent", all: false, last: null, tick: 0, known: new Map(), heads: new Map(), chart: null };

// What a row's state says, in words and in a colour class (never colour alone).
function stateOf(c) {
  if (c.health === "unhealthy") return ["unhealthy", "crit"];
  if (c.state === "exited" || c.state === "dead") return ["exited (" + (num(c.exit_code) ? c.exit_code : "?") + ")", "crit"];
  if (c.state === "restarting") return ["restarting", "warn"];
  if (c.state === "running") return [c.health === "healthy" ? "healthy" : "running", "ok"];
  return [c.state || "–", "warn"];
}

function compare(a, b) {
  const key = panel.sortKey;
  if (key === "name" || key === "state") return String(a[key] || "").localeCompare(String(b[key] || ""));
  return (num(b[key]) ? b[key] : -1) - (num(a[key]) ? a[key] : -1); // biggest first
}

// Writes only what differs: an unchanged write still costs a style recalc.
function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

// Whether a row's `key` now shows something other than `value`, which it is about to:
// what was written is kept on the row, as reading each cell back from the DOM every
// second costs more than the comparison.
function changed(row, key, value) {
  if (row.was[key] === value) return false;
  row.was[key] = value;
  return true;
}

const width = (share) => (num(share) ? Math.min(Math.max(share, 0), 100) : 0) + "%";

function meterCell(tr) {
  const td = document.createElement("td");
  td.className = "num";
  const label = document.createElement("span");
  const meter = document.createElement("span");
  meter.className = "mini-meter";
  const fill = document.createElement("span");
  meter.appendChild(fill);
  td.append(label, meter);
  tr.appendChild(td);
  return [td, label, fill];
}

// A container's row, made the first time it is shown; its cells are filled by fillRow.
function makeRow(name) {
  const tr = document.createElement("tr");
  tr.dataset.name = name;
  const open = document.createElement("button");
  open.type = "button";
  open.className = "open-chart";
  open.textContent = name;
  open.addEventListener("click", () => openChart(name));
  cell(tr, "", "name").appendChild(open);
  const state = cell(tr, "", "state");
  const [cpuCell, cpu, cpuFill] = meterCell(tr);
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("aria-hidden", "true");
  const line = document.createElementNS(SVG, "polyline");
  svg.appendChild(line);
  cpuCell.appendChild(svg);
  const [, memory, memoryFill] = meterCell(tr);
  const net = cell(tr, "", "num wide");
  const restarts = cell(tr, "", "num");
  return {
    tr, open, state, cpu, cpuFill, memory, memoryFill, net, restarts, was: {},
    svg, line, points: "", count: 0, flat: null, top: null, seenAt: -1, drawnAt: -1, // the sparkline's (drawSpark)
  };
}

function fillRow(row, c, spark) {
  const title = (c.image || "") + (c.service ? " · service " + c.service : "") + " · open its chart";
  if (changed(row, "title", title)) row.open.title = title;
  const expanded = String(panel.chart !== null && panel.chart.name === c.name);
  if (changed(row, "expanded", expanded)) row.open.setAttribute("aria-expanded", expanded);
  const [state, cls] = stateOf(c);
  if (changed(row, "state", state + "|" + cls)) {
    row.state.textContent = state;
    row.state.className = "state " + cls;
  }
  const cpu = pct(c.cpu_percent);
  if (changed(row, "cpu", cpu)) row.cpu.textContent = cpu;
  const cpuWidth = width(c.cpu_percent);
  if (changed(row, "cpuWidth", cpuWidth)) row.cpuFill.style.width = cpuWidth;
  drawSpark(row, spark);
  const memory = num(c.memory_limit) ? bytes(c.memory_used) + " / " + bytes(c.memory_limit) : bytes(c.memory_used);
  if (changed(row, "memory", memory)) row.memory.textContent = memory;
  const memoryWidth = width(num(c.memory_limit) && num(c.memory_used) ? (100 * c.memory_used) / c.memory_limit : null);
  if (changed(row, "memoryWidth", memoryWidth)) row.memoryFill.style.width = memoryWidth;
  const net = rate(c.rx_bps) + " / " + rate(c.tx_bps);
  if (changed(row, "net", net)) row.net.textContent = net;
  const restarts = num(c.restarts) ? String(c.restarts) : "–";
  if (changed(row, "restarts", restarts)) row.restarts.textContent = restarts;
}

// The row's last SPARK CPU values as a line, 0-100 % of its height. A point's x is the
// tick it came at and the viewBox slides along: a new sample adds one point and drops
// the oldest, rather than working out all 60 again. The line is made whole only when
// the scale changes (a new peak, or the old one leaving the minute) or it was not
// drawn last tick; and a flat line that stays flat (an idle container: most of them)
// is not written at all, as it would look the same. `seenAt`: the tick the line last
// showed the values (written or not); `drawnAt`: the tick it was last written.
function drawSpark(row, values) {
  const now = panel.tick;
  if (row.seenAt === now) return; // seen already this tick (a sort, a chart opened)
  const top = Math.max(10, ...values.filter(num)); // a quiet container is not drawn as a busy one
  const y = (v) => (num(v) ? 20 - (20 * v) / top : 20).toFixed(1);
  const last = y(values[values.length - 1]);
  const still = row.seenAt === now - 1 && row.flat === last && row.top === top && row.count === values.length;
  row.seenAt = now;
  if (still) return;
  if (row.drawnAt === now - 1 && row.top === top) {
    row.points += " " + now + "," + last;
    if (row.count === values.length) row.points = row.points.slice(row.points.indexOf(" ") + 1);
    row.flat = row.flat === last ? last : null; // one that became flat is found at its next whole drawing
  } else {
    const ys = values.map(y);
    const start = now - values.length + 1;
    row.points = ys.map((v, i) => start + i + "," + v).join(" ");
    row.flat = ys.every((v) => v === last) ? last : null;
  }
  row.count = values.length;
  row.line.setAttribute("points", row.points);
  row.svg.setAttribute("viewBox", now - SPARK + 1 + " 0 " + (SPARK - 1) + " 20");
  row.top = top;
  row.drawnAt = now;
}

// Each container's last minute of CPU, kept only for the names of the latest table.
function remember(part) {
  panel.tick += 1;
  const seen = new Set();
  for (const c of part.items) {
    seen.add(c.name);
    const known = panel.known.get(c.name) || { spark: [], row: null };
    known.spark.push(c.cpu_percent);
    if (known.spark.length > SPARK) known.spark.shift();
    panel.known.set(c.name, known);
  }
  for (const name of panel.known.keys()) if (!seen.has(name)) panel.known.delete(name);
}

// A Compose project's heading row, made once.
function groupHead(project) {
  let head = panel.heads.get(project);
  if (!head) {
    head = document.createElement("tr");
    head.className = "group";
    const th = document.createElement("th");
    th.colSpan = 6;
    th.scope = "rowgroup";
    th.textContent = project;
    head.appendChild(th);
    panel.heads.set(project, head);
  }
  return head;
}

// The indexes of `order` (each wanted row's place in the table now, -1 if not in it)
// that form its longest increasing run: those rows stay, the others move.
function staying(order) {
  const tails = []; // tails[k]: where the run of length k + 1 with the lowest end ends
  const before = order.map(() => -1);
  order.forEach((at, i) => {
    if (at < 0) return;
    let lo = 0;
    let hi = tails.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (order[tails[mid]] < at) lo = mid + 1; else hi = mid;
    }
    if (lo > 0) before[i] = tails[lo - 1];
    tails[lo] = i;
  });
  const stay = new Set();
  for (let i = tails.length ? tails[tails.length - 1] : -1; i >= 0; i = before[i]) stay.add(i);
  return stay;
}

// The tbody made to hold `wanted`, in that order, with as few moves as may be: a
// moved element is taken out and put back (a style recalc, and a focused name button
// loses focus), so the longest run already in order stays where it is.
function arrange(body, wanted) {
  const keep = new Set(wanted);
  for (const el of [...body.children]) if (!keep.has(el)) el.remove();
  const now = [...body.children];
  if (now.length === wanted.length && now.every((el, i) => el === wanted[i])) return;
  const at = new Map(now.map((el, i) => [el, i]));
  const stay = staying(wanted.map((el) => (at.has(el) ? at.get(el) : -1)));
  let next = null;
  for (let i = wanted.length - 1; i >= 0; i--) {
    if (!stay.has(i)) body.insertBefore(wanted[i], next);
    next = wanted[i];
  }
}

function draw() {
  const part = panel.last;
  const body = $("containers");
  const more = $("containers-more");
  if (!part) {
    body.textContent = "";
    setText($("containers-summary"), part === null ? "engine not answering" : "–");
    more.hidden = true;
    return;
  }
  setText($("containers-summary"), part.running + " running · " + part.unhealthy + " unhealthy · " + part.stopped + " stopped");
  // The busiest (by the chosen order) make the cut; then each project's rows together.
  const chosen = [...part.items].sort(compare).slice(0, panel.all ? part.items.length : SHOWN);
  const groups = new Map();
  for (const c of chosen) {
    const project = c.project || "";
    if (!groups.has(project)) groups.set(project, []);
    groups.get(project).push(c);
  }
  const wanted = [];
  for (const [project, rows] of groups) {
    if (project && groups.size > 1) wanted.push(groupHead(project));
    for (const c of rows) {
      const known = panel.known.get(c.name);
      if (!known.row) known.row = makeRow(c.name);
      fillRow(known.row, c, known.spark);
      wanted.push(known.row.tr);
    }
  }
  for (const project of panel.heads.keys()) if (!groups.has(project)) panel.heads.delete(project);
  arrange(body, wanted);
  const hidden = part.items.length - chosen.length;
  more.hidden = !panel.all && hidden <= 0;
  setText(more, panel.all ? "show the busiest " + SHOWN : "show all " + part.items.length + " (" + hidden + " more)");
}

export function showContainers(part, ts) {
  if (part === undefined) return; // history samples carry none
  $("containers-panel").hidden = false;
  panel.last = part;
  if (part) remember(part);
  draw();
  if (part && panel.chart) follow(part, ts);
}

// ---------------------------------------------------------------- one container's chart

function chartUrl(name, seconds) {
  const perPixel = Math.ceil(seconds / Math.max($("container-chart-plot").clientWidth, 300));
  const step = perPixel > 10 ? "&step=" + perPixel : "";
  const base = document.body.dataset.history.replace(/history$/, "containers/" + encodeURIComponent(name) + "/history");
  return base + "?seconds=" + seconds + step;
}

function chartSeconds() {
  return Number(document.body.dataset.range) || Number(document.body.dataset.historySeconds) || 900;
}

function openChart(name) {
  const box = $("container-chart");
  if (panel.chart && panel.chart.name === name) return closeChart();
  closeChart();
  box.hidden = false;
  const seconds = chartSeconds();
  $("container-chart-title").textContent = name + ": CPU and memory, last " + spanText(seconds);
  panel.chart = { name: name, seconds: seconds, plot: null, data: [[], [], []], ask: (panel.chart ? panel.chart.ask : 0) + 1 };
  const chart = panel.chart;
  draw();
  fetch(chartUrl(name, seconds), { credentials: "same-origin" })
    .then((r) => (r.ok ? r.json() : Promise.reject(new Error("HTTP " + r.status))))
    .then((body) => {
      if (panel.chart !== chart) return; // closed, or another opened meanwhile
      chart.data = [body.ts, body.cpu_percent, body.memory_used];
      plot(chart);
      box.dataset.points = String(body.ts.length);
      box.dataset.step = String(body.step);
    })
    .catch(() => { $("container-chart-title").textContent = name + ": could not load its history"; });
}

function closeChart() {
  if (panel.chart && panel.chart.plot) panel.chart.plot.destroy();
  panel.chart = null;
  $("container-chart").hidden = true;
  $("container-chart-plot").textContent = "";
  draw();
}

function spanText(seconds) {
  return seconds >= 86400 ? seconds / 86400 + " d" : seconds >= 3600 ? seconds / 3600 + " h" : seconds / 60 + " min";
}

function plot(chart) {
  const box = $("container-chart-plot");
  box.textContent = "";
  const axis = cssVar("--muted");
  const grid = cssVar("--grid");
  const colors = [cssVar("--series-1"), cssVar("--series-2")];
  const font = "11px system-ui, sans-serif";
  const show = (fmt) => (u, v) => (v === null || v === undefined ? "–" : fmt(v));
  const opts = {
    width: Math.max(box.clientWidth, 200),
    height: 180,
    legend: { show: true, live: true },
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: true }, cpu: { range: (u, min, max) => [0, Math.max(max || 0, 1) * 1.1] }, mem: { range: (u, min, max) => [0, Math.max(max || 0, 1024) * 1.1] } },
    axes: [
      { stroke: axis, font: font, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid } },
      { scale: "cpu", stroke: axis, font: font, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid }, values: (u, vals) => vals.map((v) => v.toFixed(0) + " %") },
      { scale: "mem", side: 1, stroke: axis, font: font, grid: { show: false }, ticks: { stroke: grid }, size: 70, values: (u, vals) => vals.map(bytes) },
    ],
    series: [
      {},
      { label: "cpu", scale: "cpu", stroke: colors[0], width: 1.5, points: { show: false }, value: show(pct) },
      { label: "memory", scale: "mem", stroke: colors[1], width: 1.5, points: { show: false }, value: show(bytes) },
    ],
  };
  chart.plot = new uPlot(opts, chart.data, box);
  exposeForTests("__containerChart", chart);
}

// While a chart is open, each live sample's value is added to its end.
function follow(part, ts) {
  const chart = panel.chart;
  if (!chart.plot || !num(ts)) return;
  const c = part.items.find((item) => item.name === chart.name);
  const [times, cpu, memory] = chart.data;
  if (!c || (times.length && ts <= times[times.length - 1])) return;
  times.push(ts);
  cpu.push(c.cpu_percent);
  memory.push(c.memory_used);
  while (times.length && times[0] < ts - chart.seconds) for (const column of chart.data) column.shift();
  chart.plot.setData(chart.data);
}

export function setUpContainers() {
  for (const button of document.querySelectorAll("#containers-panel button.sort")) {
    button.addEventListener("click", () => {
      panel.sortKey = button.dataset.sort;
      for (const other of document.querySelectorAll("#containers-panel button.sort")) other.setAttribute("aria-pressed", String(other === button));
      draw();
    });
  }
  $("containers-more").addEventListener("click", () => {
    panel.all = !panel.all;
    draw();
  });
  const box = document.createElement("div");
  box.id = "container-chart";
  box.className = "container-chart";
  box.hidden = true;
  const head = document.createElement("h3");
  head.id = "container-chart-title";
  const close = document.createElement("button");
  close.type = "button";
  close.className = "more";
  close.textContent = "close";
  close.addEventListener("click", closeChart);
  const plotBox = document.createElement("div");
  plotBox.id = "container-chart-plot";
  box.append(head, close, plotBox);
  $("containers-panel").appendChild(box);
  // A range chosen: an open chart spans it too.
  for (const button of document.querySelectorAll("#ranges button")) {
    button.addEventListener("click", () => {
      if (!panel.chart) return;
      const name = panel.chart.name;
      closeChart();
      document.body.dataset.range = button.dataset.seconds;
      openChart(name);
    });
  }
}
