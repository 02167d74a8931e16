// The member's keys on this device (docs/app.md, "Where the keys live").
//
// IndexedDB holds, per member: an AES-GCM key made by WebCrypto as non-extractable, the member's age identities
// (X25519, made here with age-encryption) each sealed by that key, and an Ed25519 signing key made by WebCrypto as
// non-extractable. A dump of storage therefore shows no identity in the clear; the identity is unsealed in memory
// only for the moment a clip is decrypted, and no request ever carries it. Earlier identities are kept after a
// rotation: clips recorded before it were encrypted to them.

import * as age from "age-encryption";

const DB_NAME = "kotihub-keys";
const STORE = "members";
const enc = new TextEncoder();
const dec = new TextDecoder();

function done(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function withStore(mode, fn) {
  const open = indexedDB.open(DB_NAME, 1);
  open.onupgradeneeded = () => open.result.createObjectStore(STORE, { keyPath: "member" });
  const db = await done(open);
  try {
    const tx = db.transaction(STORE, mode);
    const finished = new Promise((resolve, reject) => {
      tx.oncomplete = resolve;
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
    const result = await fn(tx.objectStore(STORE));
    await finished;
    return result;
  } finally {
    db.close();
  }
}

const load = (member) => withStore("readonly", (s) => done(s.get(member)));
const save = (record) => withStore("readwrite", (s) => done(s.put(record)));

export function hex(bytes) {
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
}

export function unhex(text) {
  return new Uint8Array(text.match(/../g).map((h) => parseInt(h, 16)));
}

// The additional data binds a sealed identity to its member and recipient: a sealed blob moved to another
// record does not open.
const aad = (member, recipient) => enc.encode(`kotihub identity v1\n${member}\n${recipient}`);

async function seal(wrap, member, identity) {
  const recipient = await age.identityToRecipient(identity);
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const sealed = await crypto.subtle.encrypt(
    { name: "AES-GCM", iv, additionalData: aad(member, recipient) }, wrap, enc.encode(identity));
  return { recipient, iv, sealed };
}

async function unseal(wrap, member, item) {
  const plain = await crypto.subtle.decrypt(
    { name: "AES-GCM", iv: item.iv, additionalData: aad(member, item.recipient) }, wrap, item.sealed);
  return dec.decode(plain);
}

async function freshKeys(wrap, member) {
  const sealed = await seal(wrap, member, await age.generateX25519Identity());
  const pair = await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
  const ed25519 = hex(await crypto.subtle.exportKey("raw", pair.publicKey));
  return { sealed, signing: pair.privateKey, ed25519 };
}

// The member's public keys on this device, or null if it holds none.
export async function publicKeys(member) {
  const rec = await load(member);
  if (!rec) return null;
  return { age: rec.identities[rec.identities.length - 1].recipient, ed25519: rec.ed25519 };
}

// Makes the member's keys on this device (once); returns their public halves, the only part that is sent.
export async function create(member, household) {
  const existing = await publicKeys(member);
  if (existing) return existing;
  const wrap = await crypto.subtle.generateKey({ name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"]);
  const keys = await freshKeys(wrap, member);
  await save({
    member, household, wrap, identities: [keys.sealed], signing: keys.signing, ed25519: keys.ed25519,
    pending: null, seen: null,
  });
  return { age: keys.sealed.recipient, ed25519: keys.ed25519 };
}

// Deletes the member's keys from this device (a device given away or sold): clips encrypted only to them can no
// longer be opened here.
export async function forget(member) {
  await withStore("readwrite", (s) => done(s.delete(member)));
}

// Ed25519 signature (hex) over bytes, with the member's current signing key.
export async function sign(member, bytes) {
  const rec = await load(member);
  if (!rec) throw new Error("no keys on this device");
  return hex(await crypto.subtle.sign({ name: "Ed25519" }, rec.signing, bytes));
}

// Decrypts an age file with every identity this device holds for the member (newest first).
export async function decrypt(member, ciphertext) {
  const rec = await load(member);
  if (!rec) throw new Error("no keys on this device");
  const d = new age.Decrypter();
  for (const item of [...rec.identities].reverse()) d.addIdentity(await unseal(rec.wrap, member, item));
  return d.decrypt(ciphertext);
}

// Rotation in two steps, so a refused list never strands the member: new keys wait as "pending" until the
// register has accepted the version that names them, then become current; the old identity stays to open
// the clips recorded before.
// Fetches an age file of the household's (a clip, the hub's copy) from our own register and opens it here with this
// device's identities: the plaintext, or null after telling the member why (say(key, extra): nokeys, loading,
// fetchfailed, decryptfailed). Only the file's address goes to the server.
export async function openSealed(member, url, say) {
  if (!(await publicKeys(member))) {
    say("nokeys");
    return null;
  }
  say("loading");
  const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
  if (!response.ok) {
    say("fetchfailed", String(response.status));
    return null;
  }
  try {
    return await decrypt(member, new Uint8Array(await response.arrayBuffer()));
  } catch {
    say("decryptfailed");
    return null;
  }
}

export async function prepareRotation(member) {
  const rec = await load(member);
  if (!rec) throw new Error("no keys on this device");
  if (!rec.pending) {
    rec.pending = await freshKeys(rec.wrap, member);
    await save(rec);
  }
  return { age: rec.pending.sealed.recipient, ed25519: rec.pending.ed25519 };
}

export async function pendingRotation(member) {
  const rec = await load(member);
  return rec && rec.pending ? { age: rec.pending.sealed.recipient, ed25519: rec.pending.ed25519 } : null;
}

export async function commitRotation(member) {
  const rec = await load(member);
  if (!rec || !rec.pending) return;
  rec.identities.push(rec.pending.sealed);
  rec.signing = rec.pending.signing;
  rec.ed25519 = rec.pending.ed25519;
  rec.pending = null;
  await save(rec);
}

// The newest version of the member list this device has verified: a register that later shows an older or a
// different history is caught (as `seen` in the CLI's key directory).
export async function seen(member) {
  const rec = await load(member);
  return rec ? rec.seen : null;
}

export async function setSeen(member, version, digest) {
  const rec = await load(member);
  if (!rec) return;
  rec.seen = { version, digest };
  await save(rec);
}

// The pairing code of an Ed25519 public key (hex), as cloud_sync/memberlist.py computes it.
export async function pairingCode(ed25519Hex) {
  const data = new Uint8Array([...enc.encode("kotihub pairing code v1\n"), ...unhex(ed25519Hex)]);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", data)).slice(0, 13);
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = 0;
  let value = 0;
  let out = "";
  for (const byte of digest) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    value &= (1 << bits) - 1;
  }
  out = out.slice(0, 20);
  return out.match(/.{4}/g).join("-");
}

export function normaliseCode(code) {
  const letters = code.toUpperCase().replace(/[^A-Z0-9]/g, "");
  return letters.length === 20 ? letters.match(/.{4}/g).join("-") : "";
}
