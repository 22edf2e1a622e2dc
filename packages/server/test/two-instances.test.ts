import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import type { FastifyInstance } from "fastify";
import { fixedClock } from "@ukey/policy";
import { createTestDatabase } from "../../store/test/support/postgres.js";
import { buildApp } from "../src/app.js";
import { openServerContext, type ServerContext } from "../src/server-context.js";
import type { OrderStarted, OrderView } from "../src/renewal/renewal-order-service.js";
import { OrderApi } from "./support/order-api.js";
import { addHolder, keyArgs, opensslCsr, runUkeyServer, tempDir, type TempDir, signPossession } from "./support/fixtures.js";

// Two server instances on one real PostgreSQL: a renewal whose steps
// alternate between them finishes, because nothing a renewal needs lives
// in one instance's memory.
const day = 86_400_000;
let t: TempDir;
let db: { url: string; drop(): Promise<void> };
const contexts: ServerContext[] = [];
const apps: FastifyInstance[] = [];
const clock = fixedClock(new Date());
let old: { certId: string; notAfter: number; keyFile: string };

before(async () => {
  t = tempDir();
  db = await createTestDatabase();
  const pgEnv = { UKEY_DATABASE_URL: db.url };
  const pass = t.write("ca-passphrase", "two instances, one database\n");
  const pgDir = t.path("pgdata");
  const init = runUkeyServer(["init", "--data-dir", pgDir, "--json"], { UKEY_CA_PASSPHRASE_FILE: pass, ...pgEnv });
  assert.equal(init.status, 0, init.stdout + init.stderr);
  const cfg = JSON.parse(readFileSync(`${pgDir}/config.json`, "utf8"));
  cfg.profiles.push({ id: "gov", preset: "gov-supervision", keyAlgorithms: ["rsa2048", "p256"], certificates: null });
  writeFileSync(`${pgDir}/config.json`, JSON.stringify(cfg, null, 2));
  const fullEnv = { UKEY_CA_PASSPHRASE_FILE: pass, ...pgEnv };
  assert.equal(addHolder(t, pgDir, fullEnv, "P1").status, 0);
  const { csr, key } = opensslCsr(t, "old", keyArgs.p256);
  const r = runUkeyServer(["issue", "--data-dir", pgDir, "--holder", "P1", "--profile", "gov", "--csr", csr, "--json"], fullEnv);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const out = r.json<{ certId: string; notAfter: string }>();
  old = { certId: out.certId, notAfter: Date.parse(out.notAfter), keyFile: key };
  for (let i = 0; i < 2; i++) {
    const ctx = await openServerContext(pgDir, fullEnv, clock);
    assert.equal(ctx.store.db.engine, "postgres");
    contexts.push(ctx);
    apps.push(await buildApp(ctx));
  }
});
after(async () => {
  for (const a of apps) await a.close();
  for (const c of contexts) await c.close();
  await db?.drop();
  t?.cleanup();
});

let turn = 0;
const api = OrderApi.of(() => apps[turn++ % 2]!);
async function next<T = OrderView>(method: "GET" | "POST", url: string, payload?: unknown): Promise<T> {
  const r = await api.call<T>(method, url, payload);
  assert.ok(r.status < 300, `${url} on instance ${(turn - 1) % 2}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

test("a renewal whose steps alternate between two instances completes; a credential from one works on the other", async () => {
  clock.set(new Date(old.notAfter - 20 * day));
  const order = await next<OrderStarted>("POST", "/api/v1/orders", { certId: old.certId });
  const resumed = await next<OrderStarted>("POST", "/api/v1/orders", { certId: old.certId });
  assert.equal(resumed.id, order.id);
  // The challenge from one instance proves on the other: challenges are not kept in memory.
  const signature = signPossession(order.id, resumed.challenge.value, old.keyFile);
  assert.equal((await next("POST", `/api/v1/orders/${order.id}/possession`, { challenge: resumed.challenge.value, signature })).state, "verified");
  const fresh = opensslCsr(t, "new", keyArgs.p256, "/");
  const issued = await next("POST", `/api/v1/orders/${order.id}/csr`, { csr: readFileSync(fresh.csr, "utf8") });
  assert.equal(issued.state, "issued");
  assert.equal((await next("GET", `/api/v1/orders/${order.id}`)).newCertificate?.serial, issued.newCertificate?.serial);
  // A second proof on the other instance replaces the credential on both.
  const first = api.credentials.get(order.id)!;
  await api.prove(order.id, old.keyFile);
  assert.notEqual(api.credentials.get(order.id), first);
  for (let i = 0; i < 2; i++) {
    assert.equal((await api.call("GET", `/api/v1/orders/${order.id}`, undefined, { credential: first })).body.code, "ORDER_CREDENTIAL_INVALID");
  }
  assert.equal((await next("POST", `/api/v1/orders/${order.id}/installed`)).state, "installed");
  assert.equal((await next("POST", `/api/v1/orders/${order.id}/complete`)).state, "completed");
  assert.ok(turn >= 8);
  const audit = await contexts[0]!.store.audit.verify();
  assert.equal(audit.ok, true);
});

test("a revocation on one instance is in the other instance's next CRL", async () => {
  const [a, b] = contexts as [ServerContext, ServerContext];
  const before = await a.revocation.crl("issuing");
  assert.deepEqual(await a.revocation.crl("issuing"), before, "unchanged: the cached CRL is served");
  const [victim] = await b.store.certificates.search({ holderId: "P1", status: "active" });
  await b.revocation.revoke(victim!.serial, "keyCompromise", "operator:test");
  const after = await a.revocation.crl("issuing");
  assert.notDeepEqual(after, before);
  assert.ok(after.includes(Buffer.from(victim!.serial, "hex")), "the new CRL lists the serial revoked elsewhere");
});
