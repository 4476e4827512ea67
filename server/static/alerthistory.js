// The alerts' history, in the alerts panel: every change of this host's alerts and of
// their notifications (fired, held, sent, ...), newest first, from
// /api/alerts/history; filtered by rule and event, and as CSV. Read when opened and
// when a filter changes: it is a record, not a live view.
import { $ } from "./common.js";

const LIMIT = 200; // rows shown; the CSV has them all

function url(format) {
  const rule = $("alert-history-rule").value.trim();
  const event = $("alert-history-event").value;
  const query = new URLSearchParams({ start: String(Date.now() / 1000 - 7 * 86400), format });
  if (rule) query.set("rule", rule);
  if (event) query.set("event", event);
  return document.body.dataset.alertHistory + "?" + query;
}

function row(e) {
  const li = document.createElement("li");
  li.className = "alert history-" + e.event + (e.level ? " alert-" + e.level : "");
  const when = new Date(e.ts * 1000).toLocaleString();
  li.textContent = when + " · " + e.event + " · " + e.rule + (e.detail ? " · " + e.detail : "");
  return li;
}

function load() {
  $("alert-history-csv").href = url("csv");
  const list = $("alert-history");
  fetch(url("json"), { credentials: "same-origin" })
    .then((r) => (r.ok ? r.json() : Promise.reject(new Error("HTTP " + r.status))))
    .then((body) => {
      list.textContent = "";
      for (const e of body.events.slice(0, LIMIT)) list.appendChild(row(e));
      const shown = Math.min(body.events.length, LIMIT);
      $("alert-history-note").textContent = body.events.length
        ? shown + " of " + body.events.length + (body.complete ? "" : "+") + " events, the last 7 days"
        : "no events in the last 7 days";
    })
    .catch((e) => { $("alert-history-note").textContent = "could not read the history: " + e.message; });
}

export function setUpAlertHistory() {
  const panel = $("alert-history-panel");
  if (!panel) return;
  panel.addEventListener("toggle", () => { if (panel.open) load(); });
  $("alert-history-form").addEventListener("submit", (e) => { e.preventDefault(); load(); });
  let typing = 0;
  $("alert-history-rule").addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(load, 400);
  });
  $("alert-history-event").addEventListener("change", load);
}
