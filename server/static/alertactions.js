// Acknowledge and silence, in the alerts panel: an "Acknowledge" button on each firing
// alert (or who acknowledged it, and when), the silences that cover this host, and a
// form to silence it. The server says what holds: the `alerts` greeting's
// `acknowledged` and `silences`, then each `silences` event (every host's).
import { $ } from "./common.js";

const actions = {
  host: null, // this page's host id, from `static`
  acks: {}, // rule -> {host, rule, by, at}
  silences: [], // those that match this host
  redraw: () => {},
};

function globMatch(glob, text) {
  const pattern = glob.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
  return new RegExp("^" + pattern + "$").test(text);
}

function coversHost(silence) {
  return !silence.hosts.length || actions.host === null || silence.hosts.some((h) => globMatch(h, actions.host));
}

function clock(ts) {
  return new Date(ts * 1000).toLocaleTimeString();
}

function take(acknowledged, silences) {
  actions.acks = {};
  for (const a of acknowledged || []) {
    if (actions.host === null || a.host === actions.host) actions.acks[a.rule] = a;
  }
  actions.silences = (silences || []).filter(coversHost);
  showSilences();
  actions.redraw();
}

function say(text) {
  $("silence-error").textContent = text;
}

function send(method, url, body) {
  return fetch(url, {
    method,
    credentials: "same-origin",
    headers: body ? { "Content-Type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined,
  }).then((r) => r.json().then((answer) => {
    if (!r.ok) throw new Error(answer.error || r.statusText);
    return answer;
  }));
}

let endTimer = null;

function showSilences() {
  const list = $("silences");
  list.textContent = "";
  // A silence that ends by itself sends no event: its end takes it off here.
  const now = Date.now() / 1000;
  actions.silences = actions.silences.filter((s) => s.ends_at > now);
  clearTimeout(endTimer);
  if (actions.silences.length) {
    const next = Math.min(...actions.silences.map((s) => s.ends_at));
    endTimer = setTimeout(showSilences, Math.min((next - now) * 1000 + 500, 86400000));
  }
  for (const s of actions.silences) {
    const li = document.createElement("li");
    li.className = "alert silence";
    const what = [s.hosts.length ? s.hosts.join(", ") : "every host",
      s.rules.length ? s.rules.join(", ") : "every rule"].concat(s.kinds.length ? [s.kinds.join(", ")] : []);
    const text = document.createElement("span");
    text.textContent = "Silenced until " + clock(s.ends_at) + " · " + what.join(" · ") + " · by " + s.by + (s.reason ? ": " + s.reason : "");
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "small control";
    remove.textContent = "End";
    remove.setAttribute("aria-label", "End the silence of " + what.join(", "));
    remove.addEventListener("click", () => {
      remove.disabled = true;
      send("DELETE", "/api/silences/" + encodeURIComponent(s.id)).catch((e) => { remove.disabled = false; say(e.message); });
    });
    li.append(text, " ", remove);
    list.appendChild(li);
  }
  list.hidden = actions.silences.length === 0;
}

// What a firing alert's line ends with: who acknowledged it, or the button to.
export function ackControl(a) {
  const ack = actions.acks[a.rule];
  if (ack) {
    const note = document.createElement("span");
    note.className = "ack";
    note.textContent = " · acknowledged by " + ack.by + " at " + clock(ack.at);
    return note;
  }
  const button = document.createElement("button");
  button.type = "button";
  button.className = "small control ack-button";
  button.textContent = "Acknowledge";
  button.setAttribute("aria-label", "Acknowledge " + a.rule);
  button.addEventListener("click", () => {
    button.disabled = true;
    const body = { rule: a.rule };
    if (actions.host !== null) body.host = actions.host;
    send("POST", "/api/alerts/ack", body).catch((e) => { button.disabled = false; say(e.message); });
  });
  return button;
}

// The `alerts` greeting: this host's acknowledgements, and every silence.
export function takeAlertsSnapshot(snapshot) {
  if ("acknowledged" in snapshot) take(snapshot.acknowledged, snapshot.silences);
}

export function setUpAlertActions(socket, redraw) {
  actions.redraw = redraw;
  socket.on("static", (st) => { if (st.host) actions.host = st.host; });
  socket.on("silences", (payload) => take(payload.acknowledged, payload.silences));
  $("silence-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const rule = $("silence-rule").value.trim();
    const body = {
      hosts: [actions.host || "*"],
      minutes: Number($("silence-minutes").value),
      reason: $("silence-reason").value.trim(),
    };
    if (rule) body.rules = [rule];
    send("POST", "/api/silences", body).then(() => { say(""); $("silence-reason").value = ""; }).catch((e) => say(e.message));
  });
}
