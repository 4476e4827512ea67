// The host page's Services panel: systemd's units, from each sample's `services`
// (docs/contract.md, "Services"). Quiet while all is well ("all 143 units ok",
// no table); a row per unit that failed, restarts or is starting, its state in
// words and in colour. The server renders the panel, summary and rows where the
// host has systemd (index.html, the same words): nothing moves when data comes.
import { $, num, cell } from "./common.js";

// A unit's state as the page says it, and its colour class (never colour alone).
const WORDS = {
  failed: ["failed", "crit"],
  "auto-restart": ["restarting", "warn"],
  activating: ["starting", "warn"],
  deactivating: ["stopping", "warn"],
  reloading: ["reloading", "warn"],
};
const FINE = new Set(["active", "inactive"]); // listed for their restarts only

function summary(part) {
  if (part === null) return "systemd not answering";
  const counts = [[part.failed, "failed"], [part.restarting, "restarting"], [part.activating, "starting"]].filter(([n]) => n);
  if (!counts.length) return "all " + part.ok + " units ok";
  return [...counts, [part.ok, "ok"]].map(([n, word]) => n + " " + word).join(" · ");
}

export function showServices(part) {
  const panel = $("services-panel");
  if (!panel || part === undefined) return; // no systemd here; history samples carry none
  const text = summary(part);
  const head = $("services-summary");
  if (head.textContent !== text) head.textContent = text;
  const rows = ((part && part.units) || []).filter((u) => !FINE.has(u.state));
  $("services-table").hidden = !rows.length;
  const body = $("services");
  body.textContent = "";
  for (const u of rows) {
    const row = document.createElement("tr");
    cell(row, u.name, "name").title = u.name;
    const [word, level] = WORDS[u.state] || [u.state, "warn"];
    cell(row, u.sub && u.sub !== u.state ? word + " (" + u.sub + ")" : word, level);
    cell(row, u.result && u.result !== "success" ? u.result : "–", "wide");
    cell(row, num(u.restarts) ? String(u.restarts) : "–", "num");
    body.appendChild(row);
  }
}
