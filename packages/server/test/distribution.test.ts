import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash, createPublicKey, verify } from "node:crypto";
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { fixedClock, openSignedDocument, UkeyError } from "@ukey/policy";
import { buildApp } from "../src/app.js";
import { nodeEd25519Verify } from "../src/distribution/distribution-key.js";
import { openServerContext, type ServerContext } from "../src/server-context.js";
import { initialisedDataDir, openssl, runUkeyServer, tempDir, type TempDir } from "./support/fixtures.js";

// Issue 14, part 2: `ukey-server downloads publish` fills the downloads folder
// with signed documents; GET /downloads/{file} serves that folder and nothing else.

let t: TempDir;
let dataDir: string;
let env: Record<string, string>;
let ctx: ServerContext;
let app: FastifyInstance;
const deb = Buffer.from("!<arch>\nnot really a deb, but bytes with a checksum\n");
let published: { keyId: string; manifest: { files: Array<{ name: string; platform: string; size: number; sha256: string }> } };

before(async () => {
  t = tempDir();
  ({ dataDir, env } = initialisedDataDir(t));
  const cfg = JSON.parse(readFileSync(join(dataDir, "config.json"), "utf8"));
  cfg.publicUrl = "https://ukey.bank.example/";
  cfg.downloads = { portalOrigins: ["https://www.bank.example"] };
  writeFileSync(join(dataDir, "config.json"), JSON.stringify(cfg));
  const installer = t.write("ukey-agent_0.1.0_amd64.deb", deb);
  const msi = t.write("ukey-agent-0.1.0-x64.msi", "msi bytes");
  const r = runUkeyServer(["downloads", "publish", "--data-dir", dataDir, "--file", installer, "--file", msi, "--agent-version", "0.1.0", "--json"], env);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  published = r.json();
  // A file outside the folder that a link inside points to, and a dot file: neither is served.
  writeFileSync(t.path("secret.txt"), "not published");
  symlinkSync(t.path("secret.txt"), join(dataDir, "downloads", "linked.txt"));
  writeFileSync(join(dataDir, "downloads", ".hidden"), "not published");
  mkdirSync(join(dataDir, "downloads", "sub"));
  ctx = await openServerContext(dataDir, env, fixedClock(new Date()));
  app = await buildApp(ctx);
});

after(async () => {
  await app?.close();
  await ctx?.close();
  t?.cleanup();
});

const keyOf = () => {
  const spkiDer = createPublicKey(readFileSync(join(dataDir, "downloads", "institution-key.pem"), "utf8")).export({ format: "der", type: "spki" });
  return { spkiDer, keyId: createHash("sha256").update(spkiDer).digest("hex") };
};

test("publish signs the agent configuration and the manifest with the institution's key (checked by openssl)", () => {
  const dir = join(dataDir, "downloads");
  for (const name of ["agent-config.json", "manifest.json"]) {
    const doc = JSON.parse(readFileSync(join(dir, name), "utf8")) as { payload: string; signature: string; keyId: string };
    assert.equal(doc.keyId, published.keyId);
    const payload = t.write(`${name}.payload`, Buffer.from(doc.payload, "base64"));
    const sig = t.write(`${name}.sig`, Buffer.from(doc.signature, "base64"));
    const r = openssl(["pkeyutl", "-verify", "-pubin", "-inkey", join(dir, "institution-key.pem"), "-rawin", "-in", payload, "-sigfile", sig]);
    assert.match(r.out, /Signature Verified Successfully/, r.out);
  }
  const key = keyOf();
  const config = openSignedDocument(JSON.parse(readFileSync(join(dir, "agent-config.json"), "utf8")), "agent-config", key, nodeEd25519Verify);
  assert.deepEqual({ server: config.server, origins: config.origins }, { server: "https://ukey.bank.example", origins: ["https://www.bank.example"] });
  const manifest = openSignedDocument(JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8")), "downloads-manifest", key, nodeEd25519Verify);
  const entry = manifest.files.find((f) => f.name === "ukey-agent_0.1.0_amd64.deb");
  assert.deepEqual(entry, { name: "ukey-agent_0.1.0_amd64.deb", platform: "linux-x64", version: "0.1.0", size: deb.length, sha256: createHash("sha256").update(deb).digest("hex") });
  assert.equal(manifest.files.find((f) => f.name.endsWith(".msi"))?.platform, "win32-x64");
  assert.match(readFileSync(join(dir, "SHA256SUMS"), "utf8"), new RegExp(`^${entry!.sha256}  ukey-agent_0.1.0_amd64.deb$`, "m"));
});

test("a manifest passed off as a configuration, or a changed byte, does not verify", () => {
  const dir = join(dataDir, "downloads");
  const key = keyOf();
  const manifest = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8"));
  assert.throws(() => openSignedDocument(manifest, "agent-config", key, nodeEd25519Verify), (e: unknown) => e instanceof UkeyError && e.code === "DOWNLOAD_SIGNATURE_INVALID");
  const sig = Buffer.from(manifest.signature, "base64");
  sig[0]! ^= 1;
  assert.throws(() => openSignedDocument({ ...manifest, signature: sig.toString("base64") }, "downloads-manifest", key, nodeEd25519Verify),
    (e: unknown) => e instanceof UkeyError && e.code === "DOWNLOAD_SIGNATURE_INVALID");
  assert.equal(verify(null, Buffer.from("x"), createPublicKey(readFileSync(join(dir, "institution-key.pem"), "utf8")), sig), false);
});

test("publish is in the audit log, and the chain still verifies", async () => {
  await app.close();
  await ctx.close();
  const r = runUkeyServer(["audit", "verify", "--data-dir", dataDir, "--json"], env);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  ctx = await openServerContext(dataDir, env, fixedClock(new Date()));
  const entry = (await ctx.store.audit.list()).find((e) => e.action === "downloads.published");
  app = await buildApp(ctx);
  assert.ok(entry, "downloads.published is audited");
  assert.equal(entry.actor, "cli");
  assert.equal(entry.subjectId, published.keyId);
});

test("GET /downloads/{file} serves the published files, and nothing outside them", async () => {
  const config = await app.inject({ method: "GET", url: "/downloads/agent-config.json" });
  assert.equal(config.statusCode, 200);
  assert.match(String(config.headers["content-type"]), /^application\/json/);
  assert.equal(config.headers["cache-control"], "no-cache");
  const installer = await app.inject({ method: "GET", url: "/downloads/ukey-agent_0.1.0_amd64.deb" });
  assert.equal(installer.statusCode, 200);
  assert.deepEqual(installer.rawPayload, deb);
  assert.equal(installer.headers["content-type"], "application/vnd.debian.binary-package");
  assert.match(String(installer.headers["content-disposition"]), /^attachment; filename="ukey-agent_0.1.0_amd64.deb"$/);
  for (const url of ["/downloads/linked.txt", "/downloads/sub", "/downloads/missing.deb"]) {
    const r = await app.inject({ method: "GET", url });
    assert.equal(r.statusCode, 404, url);
    assert.equal(r.json().code, "ROUTE_NOT_FOUND", url);
  }
  for (const url of ["/downloads/.hidden", "/downloads/..%2Fconfig.json", "/downloads/%2e%2e%2fconfig.json"]) {
    const r = await app.inject({ method: "GET", url });
    assert.ok(r.statusCode === 400 || r.statusCode === 404, `${url}: ${r.statusCode}`);
    assert.doesNotMatch(r.body, /publicUrl|secrets/, url);
  }
  const post = await app.inject({ method: "POST", url: "/downloads/agent-config.json", payload: {} });
  assert.equal(post.statusCode, 404);
});
