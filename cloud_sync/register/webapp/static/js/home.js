// Home keeps itself current while it is on screen: every 10 s, and at once when the tab is shown again, it loads
// the page anew and swaps in the sections that change (alarms, hubs, devices). Each load also keeps the household
// watched, so its hubs send readings within seconds (cloud_sync/register/watching.py). Nothing happens while the
// tab is hidden, and a failed or signed-out load leaves the page as it was.
const REFRESH_MS = 10_000;
const SECTIONS = ["alarms-h", "hub-h", "devices-h"];
let busy = false;

async function refresh() {
  if (busy || document.visibilityState !== "visible") return;
  busy = true;
  try {
    const response = await fetch(location.href, { credentials: "same-origin", cache: "no-store" });
    if (!response.ok || response.redirected) return;
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    for (const id of SECTIONS) {
      const now = fresh.querySelector(`section[aria-labelledby="${id}"]`);
      const shown = document.querySelector(`section[aria-labelledby="${id}"]`);
      // Not the section the keyboard is in (an Acknowledge button in focus): replacing it would drop the focus.
      if (now && shown && !shown.contains(document.activeElement)) shown.replaceWith(document.adoptNode(now));
    }
    document.querySelector("main").dataset.refreshed = String(Date.now());
  } catch {
    // Offline for a moment: the next turn tries again.
  } finally {
    busy = false;
  }
}

setInterval(refresh, REFRESH_MS);
document.addEventListener("visibilitychange", refresh);
