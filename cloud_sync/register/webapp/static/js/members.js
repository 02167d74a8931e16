// The members page: make this device's keys, start the member list, add, remove, rotate. Every change is
// proposed by the register as exact bytes, checked here against the change asked for and the whole log this
// device audits (memberlist.js), and signed here with the member's Ed25519 key. Only public keys and signatures
// are sent.

import * as keys from "./keystore.js";
import { Refused, audit, checkProposal, digest, signedBytes, toBase64 } from "./memberlist.js";

const root = document.getElementById("members");
const { member, household, base } = root.dataset;
const csrf = root.dataset.csrf;
const status = document.getElementById("members-status");
const texts = JSON.parse(document.getElementById("members-texts").textContent);

function say(key, extra = "") {
  status.textContent = texts[key] + (extra ? ` ${extra}` : "");
}

async function call(path, body, method = "POST") {
  const response = await fetch(`${base}/${path}`, {
    method,
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = response.headers.get("content-type")?.includes("json") ? await response.json() : {};
  if (!response.ok) throw Object.assign(new Error(data.error || String(response.status)), { code: data.error });
  return data;
}

// The whole log, audited; what it shows is then what this device has seen (a later rollback is caught).
async function verifiedLog() {
  const latest = await audit(household, await call("log", undefined, "GET"), await keys.seen(member));
  if (latest) await keys.setSeen(member, latest.body.version, latest.digest);
  return latest;
}

// Asks the register for the next version, checks it is exactly `change`, signs it with this device's key.
async function change(request, expected) {
  const latest = await verifiedLog();
  const mine = await keys.publicKeys(member);
  if (latest && latest.body.members.find((m) => m.id === member)?.ed25519 !== mine.ed25519) {
    throw new Refused("notlisted", "this device's signing key is not in the member list");
  }
  const proposal = await call("propose", request);
  const bytes = await checkProposal(household, latest, proposal, expected);
  const sig = await keys.sign(member, signedBytes(bytes));
  await call("sign", { body: toBase64(bytes), signer: member, sig });
  await keys.setSeen(member, proposal.version, await digest(bytes));
}

async function showOwnKeys() {
  const mine = await keys.publicKeys(member);
  document.getElementById("own-none").hidden = Boolean(mine);
  document.getElementById("own-keys").hidden = !mine;
  if (mine) document.getElementById("own-code").textContent = await keys.pairingCode(mine.ed25519);
  const stale = Boolean(mine) && root.dataset.listedKey !== "" && root.dataset.listedKey !== mine.ed25519;
  document.getElementById("own-stale").hidden = !stale;
  for (const el of document.querySelectorAll("[data-needs-keys]")) el.disabled = !mine;
}

const actions = {
  async create() {
    const mine = await keys.create(member, household);
    // Not yet in the list: the public keys wait for a member's signature (the first member signs them in
    // themselves with "start").
    if (root.dataset.listed !== "true" && root.dataset.version !== "0") await call("keys", mine);
    return "created";
  },
  async request() {
    await call("keys", await keys.publicKeys(member));
    return "requested";
  },
  async genesis() {
    const mine = await keys.publicKeys(member);
    const entry = { id: member, ...mine };
    await change({ action: "genesis", age: mine.age, ed25519: mine.ed25519 }, { action: "genesis", entry });
    return "signed";
  },
  async add(button) {
    const form = button.closest("form");
    const code = keys.normaliseCode(form.elements.code.value);
    const entry = { id: button.dataset.id, age: button.dataset.age, ed25519: button.dataset.ed25519 };
    if (!code || code !== (await keys.pairingCode(entry.ed25519))) return "codemismatch";
    await change({ action: "add", request: button.dataset.request }, { action: "add", entry, code });
    return "signed";
  },
  async remove(button) {
    await change({ action: "remove", member: button.dataset.id }, { action: "remove", member: button.dataset.id });
    return "signed";
  },
  async rotate() {
    const next = await keys.prepareRotation(member);
    const entry = { id: member, ...next };
    // Signed with the current key, which the hubs still trust; the new one becomes current once accepted.
    await change({ action: "rotate", age: next.age, ed25519: next.ed25519 }, { action: "rotate", entry });
    await keys.commitRotation(member);
    return "rotated";
  },
  async forget() {
    // eslint-disable-next-line no-alert -- a native dialog is keyboard- and screen-reader-usable as it is
    if (!window.confirm(texts.forget_confirm)) return "kept";
    await keys.forget(member);
    return "forgotten";
  },
  async decline(button) {
    await call(`requests/${encodeURIComponent(button.dataset.request)}/decline`, {});
    return "declined";
  },
};

// The browser's own refusals in the member's language; anything else with the register's error code.
function report(error) {
  if (texts[error.code]) say(error.code);
  else say("failed", error.message);
}

for (const button of document.querySelectorAll("button[data-action]")) {
  button.addEventListener("click", async (event) => {
    event.preventDefault();
    say("working");
    try {
      const outcome = await actions[button.dataset.action](button);
      say(outcome);
      if (outcome !== "codemismatch" && outcome !== "kept") {
        // The page is rendered by the server: reload it to show the new state, and say the outcome again there.
        sessionStorage.setItem("members-said", outcome);
        window.location.assign(base);
      }
    } catch (error) {
      report(error);
    }
  });
}

// The invitation's answer is this page at the POST's URL: make a reload fetch the page, not invite again.
if (window.location.pathname !== base) window.history.replaceState(null, "", base);

const said = sessionStorage.getItem("members-said");
sessionStorage.removeItem("members-said");
if (said && texts[said]) say(said);
// A rotation the register accepted but this page did not finish (closed in between): the list names the new
// keys, so they become current here too.
async function finishRotation() {
  const pending = await keys.pendingRotation(member);
  if (!pending || root.dataset.listed !== "true") return false;
  const latest = await verifiedLog();
  const entry = latest?.body.members.find((m) => m.id === member);
  if (!entry || entry.age !== pending.age || entry.ed25519 !== pending.ed25519) return false;
  await keys.commitRotation(member);
  return true;
}

showOwnKeys()
  .then(finishRotation)
  .then((changed) => changed && showOwnKeys())
  .catch(report);
