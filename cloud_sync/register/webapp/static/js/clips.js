// Plays a clip: fetches its age ciphertext from the register, decrypts it here with this device's identities
// (keystore.js) and hands the plaintext to the <video> element as a Blob URL. Nothing but the clip's id goes to
// the server; the plaintext never leaves this page.

import * as keys from "./keystore.js";

const root = document.getElementById("clips");
const member = root.dataset.member;
const player = document.getElementById("clip-player");
const status = document.getElementById("clip-status");
const texts = JSON.parse(document.getElementById("clips-texts").textContent);
let current = null;

function say(key, extra = "") {
  status.textContent = texts[key] + (extra ? ` ${extra}` : "");
}

// What the decrypted bytes are, from their first bytes: the hub seals fragmented MP4, which plays; clips sealed
// before it did are MPEG-TS, which browsers do not play directly (offered to save instead).
function mediaType(bytes) {
  const ascii = (from, to) => String.fromCharCode(...bytes.slice(from, to));
  if (ascii(4, 8) === "ftyp") return "video/mp4";
  if (bytes[0] === 0x1a && bytes[1] === 0x45 && bytes[2] === 0xdf && bytes[3] === 0xa3) return "video/webm";
  if (bytes[0] === 0x47 && (bytes.length < 189 || bytes[188] === 0x47)) return "video/mp2t";
  return "application/octet-stream";
}

async function play(button) {
  const clip = button.dataset.clip;
  const download = document.getElementById("clip-download");
  download.hidden = true;
  const plain = await keys.openSealed(member, `${root.dataset.base}/${encodeURIComponent(clip)}/age`, say);
  if (plain === null) return;
  const type = mediaType(plain);
  if (current) URL.revokeObjectURL(current);
  current = URL.createObjectURL(new Blob([plain], { type }));
  download.href = current;
  download.download = `${clip}.${type === "video/mp4" ? "mp4" : type === "video/webm" ? "webm" : "ts"}`;
  download.hidden = false;
  if (!player.canPlayType(type)) {
    say("cannotplay");
    return;
  }
  player.src = current;
  player.dataset.clip = clip;
  player.hidden = false;
  say("playing", button.dataset.label);
  player.focus();
}

for (const button of document.querySelectorAll("button[data-clip]")) {
  // Decryption failures are told inside play(); what is left is the network.
  button.addEventListener("click", () => play(button).catch((error) => say("fetchfailed", error.message)));
}
