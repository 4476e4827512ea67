// The host page's Containers panel: what runs on the host, from each sample's
// `containers` table (docs/contract.md, "Containers"). Sortable; grouped by
// Compose project; the busiest SHOWN first and the rest one click away.
import { $, num, bytes, rate, pct, cell } from "./common.js";

const SHOWN = 15;
const panel = { sortKey: "cpu_percent", all: false, last: null };

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
      const name = cell(row, c.name, "name");
      name.title = (c.image || "") + (c.service ? " · service " + c.service : "");
      const [state, cls] = stateOf(c);
      cell(row, state, "state " + cls);
      meterCell(row, pct(c.cpu_percent), c.cpu_percent);
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

export function showContainers(part) {
  if (part === undefined) return; // history samples carry none
  $("containers-panel").hidden = false;
  panel.last = part;
  draw();
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
}
