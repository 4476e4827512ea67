// The host page's Containers panel: what runs on the host, from each sample's
// `containers` table (docs/contract.md, "Containers"). Sortable; grouped by
// Compose project; the busiest SHOWN first and the rest one click away. Each
// row has its last minute of CPU as a sparkline (from the live samples), and
// its name opens the container's CPU and memory chart over the chosen range
// (from the store's per-container tiers: /api/.../containers/<name>/history).
import { $, num, bytes, rate, pct, cell, cssVar, exposeForTests } from "./common.js";

const SHOWN = 15;
const SPARK = 60; // points in a row's sparkline: a minute at 1 Hz
const panel = { sortKey: "cpu_percent", all: false, last: null, spark: new Map(), chart: null };

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

function meterCell(row, text, share, cls) {
  const td = document.createElement("td");
  td.className = "num " + (cls || "");
  const label = document.createElement("span");
  label.textContent = text;
  const meter = document.createElement("span");
  meter.className = "mini-meter";
  const fill = document.createElement("span");
  fill.style.width = (num(share) ? Math.min(Math.max(share, 0), 100) : 0) + "%";
  meter.appendChild(fill);
  td.append(label, meter);
  row.appendChild(td);
}

// The row's last SPARK CPU values as a line in an SVG, 0-100 % high.
function sparkline(values) {
  const svgNs = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(svgNs, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 " + (SPARK - 1) + " 20");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("aria-hidden", "true");
  const line = document.createElementNS(svgNs, "polyline");
  const top = Math.max(10, ...values.filter(num)); // a quiet container is not drawn as a busy one
  const start = SPARK - values.length;
  line.setAttribute("points", values.map((v, i) => (start + i) + "," + (num(v) ? 20 - (20 * v) / top : 20).toFixed(1)).join(" "));
  svg.appendChild(line);
  return svg;
}

// Each container's last minute of CPU, kept only for the names of the latest table.
function remember(part) {
  const seen = new Set();
  for (const c of part.items) {
    seen.add(c.name);
    const values = panel.spark.get(c.name) || [];
    values.push(c.cpu_percent);
    if (values.length > SPARK) values.shift();
    panel.spark.set(c.name, values);
  }
  for (const name of panel.spark.keys()) if (!seen.has(name)) panel.spark.delete(name);
}

function draw() {
  const part = panel.last;
  const body = $("containers");
  body.textContent = "";
  const more = $("containers-more");
  if (!part) {
    $("containers-summary").textContent = part === null ? "engine not answering" : "–";
    more.hidden = true;
    return;
  }
  $("containers-summary").textContent = part.running + " running · " + part.unhealthy + " unhealthy · " + part.stopped + " stopped";
  // The busiest (by the chosen order) make the cut; then each project's rows together.
  const chosen = [...part.items].sort(compare).slice(0, panel.all ? part.items.length : SHOWN);
  const groups = new Map();
  for (const c of chosen) {
    const project = c.project || "";
    if (!groups.has(project)) groups.set(project, []);
    groups.get(project).push(c);
  }
  for (const [project, rows] of groups) {
    if (project && groups.size > 1) {
      const head = document.createElement("tr");
      head.className = "group";
      const th = document.createElement("th");
      th.colSpan = 6;
      th.scope = "rowgroup";
      th.textContent = project;
      head.appendChild(th);
      body.appendChild(head);
    }
    for (const c of rows) {
      const row = document.createElement("tr");
      row.dataset.name = c.name;
      const name = cell(row, "", "name");
      const open = document.createElement("button");
      open.type = "button";
      open.className = "open-chart";
      open.textContent = c.name;
      open.title = (c.image || "") + (c.service ? " · service " + c.service : "") + " · open its chart";
      open.setAttribute("aria-expanded", String(panel.chart !== null && panel.chart.name === c.name));
      open.addEventListener("click", () => openChart(c.name));
      name.appendChild(open);
      const [state, cls] = stateOf(c);
      cell(row, state, "state " + cls);
      meterCell(row, pct(c.cpu_percent), c.cpu_percent);
      row.lastChild.appendChild(sparkline(panel.spark.get(c.name) || []));
      const memory = num(c.memory_limit) ? bytes(c.memory_used) + " / " + bytes(c.memory_limit) : bytes(c.memory_used);
      meterCell(row, memory, num(c.memory_limit) && num(c.memory_used) ? (100 * c.memory_used) / c.memory_limit : null);
      cell(row, rate(c.rx_bps) + " / " + rate(c.tx_bps), "num wide");
      cell(row, num(c.restarts) ? String(c.restarts) : "–", "num");
      body.appendChild(row);
    }
  }
  const hidden = part.items.length - chosen.length;
  more.hidden = !panel.all && hidden <= 0;
  more.textContent = panel.all ? "show the busiest " + SHOWN : "show all " + part.items.length + " (" + hidden + " more)";
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
