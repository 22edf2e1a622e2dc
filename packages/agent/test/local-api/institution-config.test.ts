import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { generateKeyPairSync, createHash, sign } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { spawnSync, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { makeSignedDocument } from "@ukey/policy";
import { initialisedDataDir, runUkeyServer, startUkeyServer, tempDir, type RunningServer, type TempDir, freePort } from "../../../server/test/support/fixtures.js";
import { ukeyBin } from "../support/agent-world.js";
import { nextEvent, spawnAgent } from "./support.js";

// Issue 14, part 2: an agent installed from the institution's download page
// learns its server and portal from the institution's signed configuration,
// so a holder never types --server or --origin; anything that does not verify
// against the key its installer brought is refused and changes nothing.

const portalA = "https://portal.bank.example";
const portalB = "https://new-portal.bank.example";
let t: TempDir;
let server: RunningServer;
let dataDir: string;
let env: Record<string, string>;
let downloads: string;


function setPortals(origins: string[]): void {
  const cfg = JSON.parse(readFileSync(join(dataDir, "config.json"), "utf8"));
  cfg.downloads = { portalOrigins: origins };
  cfg.publicUrl = server ? server.url : cfg.publicUrl;
  writeFileSync(join(dataDir, "config.json"), JSON.stringify(cfg, null, 2));
}

function publish(): void {
  const r = runUkeyServer(["downloads", "publish", "--data-dir", dataDir, "--json"], env);
  assert.equal(r.status, 0, r.stdout + r.stderr);
}

/** Publishes again as an operator does with the embedded database: server stopped, publish, start. */
async function republish(): Promise<void> {
  const port = server.http;
  await server.stop();
  publish();
  server = await startUkeyServer(dataDir, env, ["--port", String(port)]);
}

/** An installation: the institution's key and configuration as the installer leaves them. */
function install(name: string): { dir: string; home: string } {
  const dir = t.path(`${name}-install`);
  const home = t.path(`${name}-home`);
  mkdirSync(dir);
  mkdirSync(home);
  for (const f of ["institution-key.pem", "agent-config.json"]) copyFileSync(join(downloads, f), join(dir, f));
  return { dir, home };
}

async function startAgent(inst: { dir: string; home: string }, args: string[] = []) {
  const a = spawnAgent(inst.home, ["start", "--port", "0", "--json", ...args], { UKEY_INSTITUTION_DIR: inst.dir });
  return { ...a, first: await nextEvent(a.events, a.stderr) };
}

async function stopAgent(a: { child: ChildProcess }): Promise<void> {
  await new Promise<void>((r) => { if (a.child.exitCode !== null) return r(); a.child.once("exit", () => r()); a.child.kill("SIGTERM"); });
}

async function ended(a: { child: ChildProcess }): Promise<number | null> {
  return a.child.exitCode ?? new Promise((r) => a.child.once("exit", (c) => r(c)));
}

before(async () => {
  t = tempDir();
  ({ dataDir, env } = initialisedDataDir(t));
  const port = await freePort();
  const cfg = JSON.parse(readFileSync(join(dataDir, "config.json"), "utf8"));
  cfg.publicUrl = `http://127.0.0.1:${port}`;
  cfg.downloads = { portalOrigins: [portalA] };
  writeFileSync(join(dataDir, "config.json"), JSON.stringify(cfg, null, 2));
  downloads = join(dataDir, "downloads");
  publish();
  server = await startUkeyServer(dataDir, env, ["--port", String(port)]);
  assert.equal(server.http, port);
});

after(async () => {
  await server?.stop();
  t?.cleanup();
});

test("an installed agent starts with no --server or --origin: the institution's server and portal, each still to be paired", async () => {
  const inst = install("plain");
  const a = await startAgent(inst);
  try {
    assert.equal(a.first.event, "listening", a.stderr());
    assert.deepEqual([...(a.first.origins as string[])].sort(), [portalA, server.url].sort());
    const base = a.first.url as string;
    // The portal may ask to pair, but nothing else until the holder types the code the agent shows.
    const tokens = await fetch(`${base}/v1/tokens`, { headers: { origin: portalA } });
    assert.equal(tokens.status, 403);
    assert.equal(((await tokens.json()) as { code: string }).code, "ORIGIN_NOT_PAIRED");
    const started = await fetch(`${base}/v1/pairings`, { method: "POST", headers: { origin: portalA } });
    assert.equal(started.status, 201);
    const shown = await nextEvent(a.events, a.stderr);
    assert.deepEqual({ event: shown.event, origin: shown.origin }, { event: "pairing-code", origin: portalA });
    const stranger = await fetch(`${base}/v1/pairings`, { method: "POST", headers: { origin: "https://evil.example" } });
    assert.equal(stranger.status, 403);
  } finally {
    await stopAgent(a);
  }
});

test("no institution configuration and no --server: AGENT_NOT_CONFIGURED, exit 2", async () => {
  const home = t.path("bare-home");
  mkdirSync(home);
  const a = spawnAgent(home, ["start", "--port", "0", "--json"], { UKEY_INSTITUTION_DIR: t.path("nowhere") });
  const ev = await nextEvent(a.events, a.stderr);
  assert.equal((ev.error as { code: string }).code, "AGENT_NOT_CONFIGURED");
  assert.equal(await ended(a), 2);
});

test("a tampered installed configuration: DOWNLOAD_SIGNATURE_INVALID, the agent does not start", async () => {
  const inst = install("tampered");
  const path = join(inst.dir, "agent-config.json");
  const doc = JSON.parse(readFileSync(path, "utf8"));
  const payload = JSON.parse(Buffer.from(doc.payload, "base64").toString("utf8"));
  payload.origins = ["https://evil.example"];
  doc.payload = Buffer.from(JSON.stringify(payload)).toString("base64");
  writeFileSync(path, JSON.stringify(doc));
  const a = spawnAgent(inst.home, ["start", "--port", "0", "--json"], { UKEY_INSTITUTION_DIR: inst.dir });
  const ev = await nextEvent(a.events, a.stderr);
  assert.equal((ev.error as { code: string }).code, "DOWNLOAD_SIGNATURE_INVALID");
  assert.equal(await ended(a), 1);
  assert.equal(existsSync(join(inst.home, "pairings.json")), false);
});

test("a configuration of another institution (signed by its key): INSTITUTION_MISMATCH", async () => {
  const inst = install("foreign");
  const other = generateKeyPairSync("ed25519");
  const keyId = createHash("sha256").update(other.publicKey.export({ format: "der", type: "spki" })).digest("hex");
  const doc = makeSignedDocument("agent-config", {
    kind: "agent-config", institution: "another bank", server: "https://ra.another-bank.example", origins: [], issuedAt: new Date().toISOString(),
  }, keyId, (d) => sign(null, d, other.privateKey));
  writeFileSync(join(inst.dir, "agent-config.json"), JSON.stringify(doc));
  const a = spawnAgent(inst.home, ["start", "--port", "0", "--json"], { UKEY_INSTITUTION_DIR: inst.dir });
  const ev = await nextEvent(a.events, a.stderr);
  assert.equal((ev.error as { code: string }).code, "INSTITUTION_MISMATCH");
  assert.equal(await ended(a), 1);
});

test("a newer configuration on the server is verified and kept; a tampered one (a hostile mirror) is refused and changes nothing", async () => {
  const inst = install("refresh");
  const published = readFileSync(join(downloads, "agent-config.json"), "utf8");
  try {
    // The server serves a tampered file: the installed configuration stays in force, nothing is kept.
    const doc = JSON.parse(published);
    const payload = JSON.parse(Buffer.from(doc.payload, "base64").toString("utf8"));
    payload.origins = ["https://evil.example"];
    payload.issuedAt = new Date(Date.now() + 86_400_000).toISOString();
    doc.payload = Buffer.from(JSON.stringify(payload)).toString("base64");
    writeFileSync(join(downloads, "agent-config.json"), JSON.stringify(doc));
    const a = await startAgent(inst);
    try {
      assert.deepEqual([...(a.first.origins as string[])].sort(), [portalA, server.url].sort());
      assert.match(a.stderr(), /DOWNLOAD_SIGNATURE_INVALID/);
      assert.equal(existsSync(join(inst.home, "agent-config.json")), false);
    } finally {
      await stopAgent(a);
    }

    // The institution moves its portal and publishes again: the next start learns it.
    setPortals([portalB]);
    await republish();
    const b = await startAgent(inst);
    try {
      assert.deepEqual([...(b.first.origins as string[])].sort(), [portalB, server.url].sort());
      assert.ok(existsSync(join(inst.home, "agent-config.json")), "the newer configuration is kept in the agent home");
    } finally {
      await stopAgent(b);
    }
    // Kept: it is in force even when the server cannot be reached.
    await server.stop();
    const c = spawnAgent(inst.home, ["start", "--port", "0", "--json"], { UKEY_INSTITUTION_DIR: inst.dir });
    const first = await nextEvent(c.events, c.stderr);
    await stopAgent(c);
    assert.deepEqual([...(first.origins as string[])].sort(), [portalB, server.url].sort());
  } finally {
    setPortals([portalA]);
    await republish();
  }
});

test("ukey update: the signed manifest says what is published; --verify checks a download's size and checksum", async () => {
  const inst = install("update");
  const installer = t.write("ukey-agent_9.0.0_amd64.deb", "a newer agent");
  await server.stop();
  const r = runUkeyServer(["downloads", "publish", "--data-dir", dataDir, "--file", installer, "--agent-version", "9.0.0", "--json"], env);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  server = await startUkeyServer(dataDir, env, ["--port", String(new URL(server.url).port)]);
  const ukey = (...args: string[]) => spawnSync(process.execPath, [ukeyBin, ...args], {
    env: { PATH: process.env.PATH ?? "", HOME: inst.home, UKEY_AGENT_HOME: inst.home, UKEY_INSTITUTION_DIR: inst.dir, LANG: "en_US.UTF-8" }, encoding: "utf8",
  });
  const check = ukey("update", "--json");
  assert.equal(check.status, 0, check.stderr);
  const found = JSON.parse(check.stdout) as { published: string; updateAvailable: boolean; files: Array<{ name: string }> };
  assert.equal(found.published, "9.0.0");
  assert.equal(found.updateAvailable, true);
  assert.deepEqual(found.files.map((f) => f.name), ["ukey-agent_9.0.0_amd64.deb"]);
  assert.equal(ukey("update", "--verify", installer, "--json").status, 0);
  // One byte changed, or a file the institution never published: DOWNLOAD_CHECKSUM_MISMATCH.
  const altered = t.path("altered");
  mkdirSync(altered);
  writeFileSync(join(altered, "ukey-agent_9.0.0_amd64.deb"), "a newer agenT");
  for (const file of [join(altered, "ukey-agent_9.0.0_amd64.deb"), t.write("ukey-agent_9.9.9_amd64.deb", "x")]) {
    const bad = ukey("update", "--verify", file, "--json");
    assert.equal(bad.status, 1);
    assert.equal((JSON.parse(bad.stdout.trim().split("\n").pop()!) as { error: { code: string } }).error.code, "DOWNLOAD_CHECKSUM_MISMATCH");
  }
  // A manifest altered on its way (a hostile mirror): DOWNLOAD_SIGNATURE_INVALID, and no update is offered.
  const path = join(downloads, "manifest.json");
  const genuine = readFileSync(path, "utf8");
  try {
    const doc = JSON.parse(genuine);
    const payload = JSON.parse(Buffer.from(doc.payload, "base64").toString("utf8"));
    payload.files[0].sha256 = "0".repeat(64);
    doc.payload = Buffer.from(JSON.stringify(payload)).toString("base64");
    writeFileSync(path, JSON.stringify(doc));
    const tampered = ukey("update", "--json");
    assert.equal(tampered.status, 1);
    assert.equal((JSON.parse(tampered.stdout.trim().split("\n").pop()!) as { error: { code: string } }).error.code, "DOWNLOAD_SIGNATURE_INVALID");
  } finally {
    writeFileSync(path, genuine);
  }
});
