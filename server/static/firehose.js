// The firehose panel: live log lines from a host's sources (the fleet page:
// from every host), a colour per source. A line is always text, never HTML.
import { $, shared } from "./common.js";

const panel = $("firehose");
const socket = shared.socket;
if (panel && socket) startLogs();

function startLogs() {
  const box = $("firehose-lines");
  const more = $("firehose-more");
  const toggle = $("firehose-toggle");
  const pause = $("firehose-pause");
  const filterInput = $("firehose-filter");
  const status = $("firehose-status");
  const fleetView = panel.dataset.view === "fleet";
  const MAX_LINES = 5000;
  const COLOURS = 8;
  const colourOf = new Map(); // "host source" -> palette index, in order of appearance
  const subscribed = new Set(); // hosts
  // What changes while the panel runs; the rest is in the DOM.
  const logs = {
    on: false,
    paused: false,
    held: [], // lines that came while paused
    unseen: 0, // lines below the view while the user reads above
    match: () => true, // the filter
  };
  // A line shows when the filter matches its text or its source's name.
  const shown = (row) => logs.match(row.lastChild.textContent) || logs.match(row.firstChild.textContent);

  function setStatus(text) {
    status.textContent = text;
  }

  function subscribe(host) {
    if (subscribed.has(host)) return;
    subscribed.add(host);
    socket.emit("firehose_subscribe", host ? { host: host } : {}, (answer) => {
      if (answer && answer.error) {
        subscribed.delete(host);
        setStatus("logs: " + answer.error);
      } else {
        setStatus("");
      }
    });
  }

  function subscribeAll() {
    if (!fleetView) { subscribe(panel.dataset.host || ""); return; }
    for (const h of shared.fleetHosts()) subscribe(h.id);
  }

  function setOn(value) {
    logs.on = value;
    toggle.setAttribute("aria-pressed", String(logs.on));
    toggle.textContent = logs.on ? "Hide logs" : "Show logs";
    box.hidden = !logs.on;
    pause.hidden = !logs.on;
    filterInput.closest("label").hidden = !logs.on;
    try { localStorage.setItem("dashboard.firehose", logs.on ? "on" : "off"); } catch { /* private mode */ }
    if (logs.on) subscribeAll();
    else {
      for (const host of subscribed) socket.emit("firehose_unsubscribe", host ? { host: host } : {});
      subscribed.clear();
    }
  }

  const atBottom = () => box.scrollTop + box.clientHeight >= box.scrollHeight - 4;

  function lineElement(host, source, line) {
    const key = host + " " + source;
    if (!colourOf.has(key)) colourOf.set(key, colourOf.size % COLOURS);
    const row = document.createElement("div");
    row.className = "fh-line fh-src-" + colourOf.get(key);
    const tag = document.createElement("span");
    tag.className = "fh-source";
    tag.textContent = fleetView ? host + " " + source : source;
    const text = document.createElement("span");
    text.className = "fh-text";
    text.textContent = line.text; // text, never markup
    if (/\b(ERROR|CRITICAL|FATAL|PANIC)\b/i.test(line.text)) row.classList.add("fh-error");
    else if (/\bWARN(ING)?\b/i.test(line.text)) row.classList.add("fh-warn");
    row.append(tag, text);
    row.hidden = !shown(row);
    return row;
  }

  function append(rows) {
    const follow = atBottom();
    const fragment = document.createDocumentFragment();
    for (const row of rows) fragment.append(row);
    box.append(fragment);
    while (box.childElementCount > MAX_LINES) box.firstElementChild.remove();
    if (follow) box.scrollTop = box.scrollHeight;
    else {
      logs.unseen += rows.length;
      more.textContent = logs.unseen + (logs.unseen === 1 ? " new line" : " new lines");
      more.hidden = false;
    }
  }

  socket.on("firehose", (batch) => {
    if (!logs.on || !batch || !Array.isArray(batch.lines)) return;
    const rows = batch.lines.map((l) => lineElement(String(batch.host), String(batch.source), l));
    if (logs.paused) {
      logs.held = logs.held.concat(rows).slice(-MAX_LINES);
      pause.textContent = "Resume (" + logs.held.length + ")";
      return;
    }
    append(rows);
  });

  box.addEventListener("scroll", () => {
    if (atBottom()) { logs.unseen = 0; more.hidden = true; }
  });
  more.addEventListener("click", () => {
    box.scrollTop = box.scrollHeight;
    logs.unseen = 0;
    more.hidden = true;
  });
  pause.addEventListener("click", () => {
    logs.paused = !logs.paused;
    pause.setAttribute("aria-pressed", String(logs.paused));
    pause.textContent = logs.paused ? "Resume" : "Pause";
    if (!logs.paused && logs.held.length) { append(logs.held); logs.held = []; }
  });
  toggle.addEventListener("click", () => setOn(!logs.on));

  // A substring, or /a regex/, case-insensitive; a regex that does not parse is a substring.
  filterInput.addEventListener("input", () => {
    const wanted = filterInput.value.trim();
    const regex = /^\/(.+)\/$/.exec(wanted);
    let test = (text) => text.toLowerCase().includes(wanted.toLowerCase());
    if (regex) {
      try { const re = new RegExp(regex[1], "i"); test = (text) => re.test(text); } catch { /* substring */ }
    }
    logs.match = wanted ? test : () => true;
    for (const row of box.children) row.hidden = !shown(row);
  });

  // The server forgets a page's subscriptions when its socket closes.
  socket.on("connect", () => { if (logs.on) { subscribed.clear(); subscribeAll(); } });
  if (fleetView) socket.on("fleet", () => { if (logs.on) subscribeAll(); });

  let saved = "off";
  try { saved = localStorage.getItem("dashboard.firehose") || "off"; } catch { /* private mode */ }
  setOn(saved === "on");
}
