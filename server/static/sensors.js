// The host page's sensors and GPUs: each sample's `sensors` and `gpus`
// (docs/contract.md, "Sensors and GPUs"). A Sensors card with the temperature
// nearest its level, the CPU's temperature in the CPU card's heading, and a
// card per GPU. Where a host has none, none of it is there: the server renders
// the cards a host has, so nothing moves when the socket's data arrives.
import { $, num, bytes, pct, pctWhole } from "./common.js";

const RANK = { unknown: -1, ok: 0, warn: 1, crit: 2 };
// The chips that measure the CPU itself (Intel, AMD, ARM boards).
const CPU_CHIPS = new Set(["coretemp", "k10temp", "zenpower", "cpu_thermal", "cpu-thermal", "x86_pkg_temp", "soc_thermal"]);

export const celsius = (t) => (num(t) ? t.toFixed(1) + "\u00a0°C" : "–");

// A sensor's levels, as the alert rule judges it: its own, or the rule's where
// lower (`levels.temperature` in `static`, server/alerts/settings.py).
function levelOf(t, ceiling) {
  if (!num(t.current)) return "unknown";
  const top = Math.min(num(t.critical) ? t.critical : Infinity, ceiling ? ceiling.critical : Infinity);
  const high = Math.min(num(t.high) ? t.high : Infinity, ceiling ? ceiling.warning : Infinity, top);
  return t.current >= top ? "crit" : t.current >= high ? "warn" : "ok";
}

function setLevel(card, level) {
  card.classList.remove("ok", "warn", "crit", "unknown");
  card.classList.add(level);
}

function setText(el, text) {
  if (el && el.textContent !== text) el.textContent = text;
}

function newCard(id, className, html, after) {
  const card = document.createElement("article");
  card.id = id;
  card.className = className;
  card.innerHTML = html;
  after.after(card);
  return card;
}

// Under the figure, a line each: the sensor shown, the fans, the battery (the last two
// where the host has them; index.html renders the same lines).
const SENSORS_CARD = '<h2>Sensors</h2><p class="big"><span id="sensors-value">–</span></p><div class="meter"><span id="sensors-meter"></span></div><p class="sub" id="sensors-name">–</p>';

// A line of the card, made where it is missing; gone where there is nothing to say.
function line(card, id, text) {
  let el = $(id);
  if (text === null) {
    if (el) el.remove();
    return;
  }
  if (!el) {
    el = document.createElement("p");
    el.className = "sub";
    el.id = id;
    card.appendChild(el);
  }
  setText(el, text);
}

// 9120 s: "2:32" (hours and minutes).
const hoursMinutes = (s) => Math.floor(s / 3600) + ":" + String(Math.floor((s % 3600) / 60)).padStart(2, "0");

function sensorsCard() {
  return $("card-sensors") || newCard("card-sensors", "card sensors-card", SENSORS_CARD, $("card-swap"));
}

// The CPU's own temperature in the CPU card's heading: its hottest CPU sensor.
function showCpuTemperature(temperatures) {
  const cpu = temperatures.filter((t) => CPU_CHIPS.has(t.sensor.split("#")[0]) && num(t.current));
  const hottest = cpu.reduce((a, t) => (a && a.current >= t.current ? a : t), null);
  setText($("cpu-temperature"), hottest ? celsius(hottest.current) : "");
}

export function showSensors(part, levels) {
  if (part === undefined) return; // a host without sensors, or a downsampled point
  const card = sensorsCard();
  if (part === null) {
    setText($("sensors-value"), "–");
    setText($("sensors-name"), "not answering");
    setLevel(card, "unknown");
    return;
  }
  const ceiling = (levels || {}).temperature;
  const temperatures = part.temperatures || [];
  showCpuTemperature(temperatures);
  // The one to show: the worst off against its levels, then the hottest.
  let shown = null;
  let worst = "unknown";
  for (const t of temperatures) {
    const level = levelOf(t, ceiling);
    if (!shown || RANK[level] > RANK[worst] || (level === worst && (num(t.current) ? t.current : -Infinity) > (num(shown.current) ? shown.current : -Infinity))) {
      shown = t;
      worst = level;
    }
  }
  const battery = part.battery;
  if (shown) {
    // The meter: how near its critical level (or its high one, or 100 °C).
    setText($("sensors-value"), celsius(shown.current));
    const scale = num(shown.critical) ? shown.critical : num(shown.high) ? shown.high : 100;
    $("sensors-meter").style.width = (num(shown.current) ? Math.min(Math.max((100 * shown.current) / scale, 0), 100) : 0) + "%";
    setText($("sensors-name"), shown.label + " · " + shown.sensor);
  } else if (battery) {
    setText($("sensors-value"), pct(battery.percent));
    $("sensors-meter").style.width = (num(battery.percent) ? battery.percent : 0) + "%";
    setText($("sensors-name"), "battery");
    worst = num(battery.percent) ? "ok" : "unknown";
  } else {
    setText($("sensors-name"), "–");
  }
  const fans = (part.fans || []).filter((f) => num(f.rpm));
  const fastest = fans.length ? Math.max(...fans.map((f) => f.rpm)) + "\u00a0rpm" : null;
  line(card, "sensors-fans", !(part.fans || []).length ? null : fans.length > 1 ? "fans up to " + fastest : fans.length ? "fan " + fastest : "fan –");
  let power = null;
  if (battery && shown) {
    const left = battery.plugged === false ? (num(battery.seconds_left) ? " · " + hoursMinutes(battery.seconds_left) + " left" : " · on battery") : "";
    power = "battery " + pctWhole(battery.percent) + left;
  }
  line(card, "sensors-battery", power);
  // Every reading, for a pointer that rests on the card.
  card.title = temperatures.map((t) => t.sensor + " " + t.label + ": " + celsius(t.current)).concat(
    (part.fans || []).map((f) => f.sensor + " " + f.label + ": " + (num(f.rpm) ? f.rpm + " rpm" : "–"))).join("\n");
  setLevel(card, worst);
}

// ---------------------------------------------------------------- GPUs

// Under the figure: its memory, its temperature and power, its model.
const GPU_CARD = '<h2></h2><p class="big"><span class="value">–</span></p><div class="meter"><span></span></div><p class="sub gpu-memory">–</p><p class="sub gpu-heat">–</p><p class="sub gpu-name"></p>';

export function showGpus(gpus) {
  if (gpus === undefined) return; // a host without GPUs, or a downsampled point
  if (gpus === null) {
    // Their driver does not answer: the cards stay, saying so.
    for (const card of document.querySelectorAll(".gpu-card")) {
      setText(card.querySelector(".value"), "–");
      setText(card.querySelector(".gpu-heat"), "not answering");
      setLevel(card, "unknown");
    }
    return;
  }
  const wanted = new Set();
  let after = $("card-sensors") || $("card-swap");
  for (const g of gpus) {
    const id = "card-gpu-" + g.index;
    wanted.add(id);
    const card = $(id) || newCard(id, "card gpu-card", GPU_CARD, after);
    after = card;
    setText(card.querySelector("h2"), "GPU " + g.index);
    const busy = g.utilization_percent;
    setText(card.querySelector(".value"), g.suspended ? "asleep" : pct(busy));
    card.querySelector(".meter span").style.width = (num(busy) ? busy : 0) + "%";
    const memory = num(g.memory_total) ? bytes(g.memory_used) + " of " + bytes(g.memory_total) : bytes(g.memory_used);
    setText(card.querySelector(".gpu-memory"), memory);
    const heat = [num(g.temperature) ? celsius(g.temperature) : null, num(g.power) ? g.power.toFixed(0) + "\u00a0W" : null];
    setText(card.querySelector(".gpu-heat"), heat.filter(Boolean).join(" · ") || "–");
    setText(card.querySelector(".gpu-name"), g.name);
    card.title = g.name;
    setLevel(card, g.suspended || num(busy) ? "ok" : "unknown");
  }
  for (const card of document.querySelectorAll(".gpu-card")) {
    if (!wanted.has(card.id)) card.remove();
  }
}
