// Add host: asks the hub for a new agent's token (POST /api/agents) and shows the one
// line that installs the agent on the new machine, token in it, shown once. The page
// has this only for a logged-in user; the server checks again.
import { $ } from "./common.js";

const dialog = $("add-host-dialog");

function reset() {
  $("add-host-form").hidden = false;
  $("add-host-result").hidden = true;
  $("add-host-error").textContent = "";
  $("add-host-line").textContent = "";
  $("add-host-copy").textContent = "Copy";
}

async function make(event) {
  event.preventDefault();
  $("add-host-error").textContent = "";
  const body = { name: $("add-host-name").value.trim() };
  const ca = $("add-host-ca").value.trim();
  if (ca) body.ca_file = ca;
  try {
    const response = await fetch("/api/agents", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error || response.statusText);
    $("add-host-line").textContent = answer.line;
    $("add-host-form").hidden = true;
    $("add-host-result").hidden = false;
  } catch (error) {
    $("add-host-error").textContent = error.message;
  }
}

async function copy() {
  const line = $("add-host-line").textContent;
  try {
    await navigator.clipboard.writeText(line); // a secure context only (https, localhost)
    $("add-host-copy").textContent = "Copied";
  } catch {
    // Plain http on a LAN: select it for the user's own copy.
    window.getSelection().selectAllChildren($("add-host-line"));
    $("add-host-copy").textContent = "Selected: copy it";
  }
}

$("add-host").addEventListener("click", () => {
  reset();
  dialog.showModal();
  $("add-host-name").focus();
});
$("add-host-close").addEventListener("click", () => dialog.close());
$("add-host-form").addEventListener("submit", make);
$("add-host-copy").addEventListener("click", copy);
