// Copies the JavaScript the household's app serves from node_modules (installed by `npm ci` from
// package-lock.json) into cloud_sync/register/webapp/static/vendor/, and writes vendor/importmap.json so that the
// browser resolves bare imports ("age-encryption", "@noble/hashes/hkdf.js", "uplot") to those copies: plain ES
// modules, no bundler, no CDN. Run by ensure_npm_packages in scripts/lib.sh.
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

const root = join(dirname(new URL(import.meta.url).pathname), "..");
const vendor = join(root, "cloud_sync/register/webapp/static/vendor");
const base = "/app/static/vendor/";
const lock = JSON.parse(readFileSync(join(root, "package-lock.json"), "utf8"));

function entry(pkg) {
  if (typeof pkg.exports === "string") return pkg.exports;
  const dot = pkg.exports?.["."];
  if (typeof dot === "string") return dot;
  return dot?.import ?? dot?.default ?? pkg.module ?? pkg.main ?? "index.js";
}

rmSync(vendor, { recursive: true, force: true });
mkdirSync(vendor, { recursive: true });
const map = { imports: {}, scopes: {} };
for (const [path, info] of Object.entries(lock.packages)) {
  if (!path.startsWith("node_modules/") || info.dev) continue;
  const rel = path.slice("node_modules/".length);
  // Only what a browser loads: no TypeScript sources, declarations or source maps.
  cpSync(join(root, path), join(vendor, rel), {
    recursive: true,
    filter: (src) => !/(\.ts|\.map|\/src|\/test)$/.test(src) && !src.startsWith(join(root, path, "node_modules")),
  });
  const pkg = JSON.parse(readFileSync(join(root, path, "package.json"), "utf8"));
  const name = pkg.name;
  const main = base + rel + "/" + entry(pkg).replace(/^\.\//, "");
  const nested = rel.lastIndexOf("/node_modules/");
  if (nested < 0) {
    map.imports[name] = main;
    map.imports[name + "/"] = base + rel + "/";
  } else {
    const scope = base + rel.slice(0, nested) + "/";
    map.scopes[scope] ??= {};
    map.scopes[scope][name] = main;
    map.scopes[scope][name + "/"] = base + rel + "/";
  }
}
writeFileSync(join(vendor, "importmap.json"), JSON.stringify(map, null, 1) + "\n");
console.log(`vendored ${Object.keys(map.imports).length / 2} packages into ${vendor}`);
