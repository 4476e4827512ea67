// The host page's Drives card: each sample's `disk_health`, what every drive says of
// itself through S.M.A.R.T. (docs/contract.md, "Disk health"). Quiet while all is
// well ("healthy", the hottest drive); a drive in trouble takes the card: its device
// and what is wrong, amber or red. Where a host has no drive with S.M.A.R.T. (no
// smartctl, a VM's virtio disk), there is no card: the server renders it where the
// latest sample has one, so nothing moves when the socket's data arrives.
import { $, num } from "./common.js";
import { celsius } from "./sensors.js";

const RANK = { unknown: -1, ok: 0, warn: 1, crit: 2 };
const ALERT_LEVEL = { warning: "warn", critical: "crit" };
// As the disk_health rule judges a drive (server/alerts/settings.py: WEAR_WARNING); a
// rise in its bad sectors the page cannot see comes as the rule's active alert.
const WEAR_WARNING = 90;

// Under the figure: the drive and what is wrong with it (or, all well, how many drives
// and the hottest one's temperature), then its model and device (index.html renders
// the same lines). The meter: the most worn drive's wear (NVMe, SCSI SSDs).
const CARD = '<h2>Drives</h2><p class="big"><span id="drives-value">–</span></p><div class="meter"><span id="drives-meter"></span></div><p class="sub" id="drives-state">–</p><p class="sub" id="drives-name">–</p>';

function setText(el, text) {
  if (el && el.textContent !== text) el.textContent = text;
}

function levelOf(d, alerts) {
  if (d.supported !== true) return "unknown";
  let level = "ok";
  if (d.health === "failed") level = "crit";
  else if ((num(d.pending) && d.pending > 0) || (num(d.wear_percent) && d.wear_percent >= WEAR_WARNING)) level = "warn";
  const alert = alerts["disk_health:" + d.device];
  const alerted = alert ? ALERT_LEVEL[alert.level] : null;
  return alerted && RANK[alerted] > RANK[level] ? alerted : level;
}

// What is wrong with a drive, in words, most telling first ("8 pending · 1975
// reallocated"); the figure above already says "failed" or "warning".
function trouble(d) {
  const counts = [["pending", "pending"], ["reallocated", "reallocated"], ["uncorrectable", "uncorrectable"], ["media_errors", "media errors"]];
  const parts = [];
  for (const [key, words] of counts) if (num(d[key]) && d[key] > 0) parts.push(d[key] + " " + words);
  if (num(d.wear_percent) && d.wear_percent >= WEAR_WARNING) parts.push(d.wear_percent + " % worn");
  return parts.join(" · ") || (d.health === "failed" ? "S.M.A.R.T. failed" : "see the alerts");
}

// Every drive, for a pointer that rests on the card.
function summary(d) {
  if (d.supported === false) return d.device + ": no S.M.A.R.T.";
  if (d.supported !== true) return d.device + ": not read";
  const figures = [d.health || "–", celsius(d.temperature)];
  if (num(d.power_on_hours)) figures.push(d.power_on_hours + " h");
  if (num(d.wear_percent)) figures.push(d.wear_percent + " % worn");
  if (d.standby) figures.push("asleep");
  return d.device + " " + (d.model || "") + ": " + figures.join(", ");
}

function card() {
  let found = $("card-drives");
  if (!found) {
    found = document.createElement("article");
    found.id = "card-drives";
    found.className = "card drives-card";
    found.innerHTML = CARD;
    const gpus = document.querySelectorAll(".gpu-card");
    (gpus.length ? gpus[gpus.length - 1] : $("card-sensors") || $("card-swap")).after(found);
  }
  return found;
}

function setLevel(el, level) {
  el.classList.remove("ok", "warn", "crit", "unknown");
  el.classList.add(level);
}

export function showDiskHealth(drives, alerts) {
  if (drives === undefined) return; // a host without smartctl, or a downsampled point
  if (drives === null) {
    // smartctl cannot be run (or its first reading is under way): a card there says so.
    const el = $("card-drives");
    if (el) {
      setText($("drives-value"), "–");
      setText($("drives-state"), "cannot be read");
      setLevel(el, "unknown");
    }
    return;
  }
  const judged = drives.filter((d) => d.supported === true);
  if (!judged.length && !$("card-drives")) return; // none with S.M.A.R.T.: no card
  const el = card();
  let shown = null;
  let worst = "unknown";
  for (const d of judged) {
    const level = levelOf(d, alerts || {});
    const hotter = shown && num(d.temperature) && (!num(shown.temperature) || d.temperature > shown.temperature);
    if (!shown || RANK[level] > RANK[worst] || (level === worst && hotter)) {
      shown = d;
      worst = level;
    }
  }
  if (!shown) {
    setText($("drives-value"), "–");
    setText($("drives-state"), "not read");
    setText($("drives-name"), "–");
  } else {
    setText($("drives-value"), worst === "crit" ? "failed" : worst === "warn" ? "warning" : "healthy");
    const count = judged.length + (judged.length === 1 ? " drive" : " drives");
    // The card is narrow: the device first, then what is wrong (the title has it all).
    setText($("drives-state"), worst === "ok" ? count + " · " + celsius(shown.temperature) : shown.device + " · " + trouble(shown));
    setText($("drives-name"), (shown.model ? shown.model + " · " : "") + shown.device);
  }
  const wear = Math.max(0, ...judged.map((d) => (num(d.wear_percent) ? d.wear_percent : 0)));
  $("drives-meter").style.width = Math.min(wear, 100) + "%";
  el.title = drives.map(summary).join("\n");
  setLevel(el, worst);
}
