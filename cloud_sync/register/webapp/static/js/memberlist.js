// The signed member list checked in the browser, as cloud_sync/memberlist.py checks it: the whole log from
// version 1 (every signature and link) and a proposed next version against the change the member asked for.
// The register proposes the bytes; this code signs them only if they are exactly the bytes it expects.

import { hex, unhex, pairingCode } from "./keystore.js";

export const DOMAIN = "kotihub member list v1\n";

// A refusal with a stable code the page shows in the member's language.
export class Refused extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}
const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });

export const fromBase64 = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
export const toBase64 = (bytes) => btoa(String.fromCharCode(...bytes));
export const signedBytes = (body) => new Uint8Array([...enc.encode(DOMAIN), ...body]);
export const digest = async (bytes) => hex(await crypto.subtle.digest("SHA-256", bytes));

// The canonical encoding: keys in this order, no whitespace, members sorted by id. Every field is ASCII by its
// pattern, so JSON.stringify gives byte for byte what msgspec gives.
export function canonical(household, version, prev, members) {
  const sorted = [...members].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return JSON.stringify({
    household, version, prev, members: sorted.map((m) => ({ id: m.id, age: m.age, ed25519: m.ed25519 })),
  });
}

export function parseBody(bytes) {
  const text = dec.decode(bytes);
  const body = JSON.parse(text);
  if (!Array.isArray(body.members) || canonical(body.household, body.version, body.prev, body.members) !== text) {
    throw new Refused("forged", "member list body is not canonical");
  }
  return body;
}

async function verifySignature(entry, sigHex, bodyBytes) {
  if (!entry) return false;
  const key = await crypto.subtle.importKey("raw", unhex(entry.ed25519), { name: "Ed25519" }, false, ["verify"]);
  return crypto.subtle.verify({ name: "Ed25519" }, key, unhex(sigHex), signedBytes(bodyBytes));
}

// Checks every version from 1: version 1 signed by a member it lists, each later one numbered one higher,
// naming the digest of the one before and signed by a member of the one before; and that it still holds the
// version this device saw last (`seen`). Returns the newest ({body, bytes, digest}) or null for an empty log.
export async function audit(household, versions, seen) {
  let prev = null;
  const digests = new Map();
  for (const signed of versions) {
    const bytes = fromBase64(signed.body);
    const body = parseBody(bytes);
    const ok = body.household === household
      && body.version === (prev ? prev.body.version + 1 : 1)
      && body.prev === (prev ? prev.digest : "");
    const signers = prev ? prev.body.members : body.members;
    if (!ok || !(await verifySignature(signers.find((m) => m.id === signed.signer), signed.sig, bytes))) {
      throw new Refused("forged", `version ${body.version} of the member list does not verify`);
    }
    prev = { body, bytes, digest: await digest(bytes) };
    digests.set(body.version, prev.digest);
  }
  if (seen && digests.get(seen.version) !== seen.digest) {
    throw new Refused("rolledback", "the register shows another history of the member list than this device saw");
  }
  return prev;
}

// The members the next version must list for the change asked for; the register's proposal must be exactly
// the canonical body of these, following `latest`.
export async function expectedMembers(latest, change) {
  const current = latest ? latest.body.members : [];
  switch (change.action) {
    case "genesis":
      return [change.entry];
    case "add":
      // The keys the register relays are the new member's only if their pairing code is the one their own
      // device shows: a register that swapped them would have to find a second preimage.
      if ((await pairingCode(change.entry.ed25519)) !== change.code) throw new Refused("codemismatch", "code differs");
      return [...current, change.entry];
    case "remove":
      return current.filter((m) => m.id !== change.member);
    case "rotate":
      return current.map((m) => (m.id === change.entry.id ? change.entry : m));
    default:
      throw new Error(`unknown change ${change.action}`);
  }
}

export async function checkProposal(household, latest, proposal, change) {
  const prevBytes = fromBase64(proposal.prev_body);
  if (latest ? toBase64(latest.bytes) !== toBase64(prevBytes) : prevBytes.length !== 0) {
    throw new Refused("tampered", "the proposal does not follow the newest version this device verified");
  }
  const bytes = fromBase64(proposal.body);
  const want = canonical(
    household, latest ? latest.body.version + 1 : 1, latest ? latest.digest : "", await expectedMembers(latest, change));
  if (dec.decode(bytes) !== want) throw new Refused("tampered", "the proposed list is not the change asked for");
  return bytes;
}
