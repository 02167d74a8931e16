// Follows the hubs while they erase: polls the erasure's status until every hub has answered, and updates the
// table's words (translated by the server, in the table's data-word-* attributes) and the live status line.
const table = document.getElementById("erase-hubs");
const line = document.getElementById("erase-progress");

async function poll() {
  const response = await fetch(table.dataset.status, { credentials: "same-origin", cache: "no-store" });
  if (!response.ok) return false;
  const status = await response.json();
  for (const hub of status.hubs) {
    const cell = table.querySelector(`tr[data-hub="${CSS.escape(hub.hub_id)}"] .state`);
    if (cell && cell.dataset.state !== hub.state) {
      cell.dataset.state = hub.state;
      cell.textContent = table.dataset["word" + hub.state[0].toUpperCase() + hub.state.slice(1)];
    }
  }
  if (status.done) {
    line.textContent = line.dataset.done;
    line.dataset.finished = "yes";
  }
  return status.done;
}

async function follow() {
  while (!(await poll().catch(() => false))) {
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

if (table && line && line.dataset.finished !== "yes") follow();
