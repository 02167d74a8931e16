// The hub's copy of the household's data: fetches its age ciphertext from the register, decrypts it here with this
// device's identities (keystore.js, the same decrypt the clips page uses) and saves the zip. The register holds only
// the ciphertext; the plaintext exists only in this page until it is saved.

import * as keys from "./keystore.js";

const table = document.getElementById("hub-exports");
const status = document.getElementById("hub-export-status");
const textsNode = document.getElementById("data-texts");
const texts = textsNode ? JSON.parse(textsNode.textContent) : {};

function say(key, extra = "") {
  status.textContent = (texts[key] || key) + (extra ? ` ${extra}` : "");
}

async function download(button) {
  const member = table.dataset.member;
  const id = button.dataset.hubExport;
  const plain = await keys.openSealed(member, `/app/data/hub-export/${encodeURIComponent(id)}/age`, say);
  if (plain === null) return;
  const url = URL.createObjectURL(new Blob([plain], { type: "application/zip" }));
  const link = document.createElement("a");
  link.href = url;
  link.download = `kotihub-hub-export-${id}.zip`;
  link.dataset.saved = id;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  say("saved");
}

if (table) {
  for (const button of table.querySelectorAll("button[data-hub-export]")) {
    button.addEventListener("click", () => download(button).catch((error) => say("fetchfailed", error.message)));
  }
}
