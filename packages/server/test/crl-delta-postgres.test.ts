import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import type { FastifyInstance } from "fastify";
import { derToPem } from "@ukey/ca";
import { fixedClock } from "@ukey/policy";
import { createTestDatabase } from "../../store/test/support/postgres.js";
import { buildApp } from "../src/app.js";
import { openServerContext, type ServerContext } from "../src/server-context.js";
import { addHolder, keyArgs, openssl, opensslCsr, runUkeyServer, tempDir, type TempDir } from "./support/fixtures.js";

// Delta CRLs with two instances on one real PostgreSQL: a revocation made on one instance is in the
// other's delta (its cache compares a stamp read from the database), CRL numbers never repeat across
// instances, and a complete CRL from one instance combines with a delta from the other as RFC 5280
// 5.2.4 allows (base number <= complete CRL's number < delta's number), checked by the real openssl.
let t: TempDir;
let db: { url: string; drop(): Promise<void> };
const contexts: ServerContext[] = [];
const apps: FastifyInstance[] = [];
const clock = fixedClock(new Date());
const certs: Array<{ serial: string; pem: string }> = [];
let root: string;
let issuing: string;

before(async () => {
  t = tempDir();
  db = await createTestDatabase();
  const pass = t.write("ca-passphrase", "two instances, delta CRLs\n");
  const env = { UKEY_CA_PASSPHRASE_FILE: pass, UKEY_DATABASE_URL: db.url };
  const dir = t.path("pgdata");
  const init = runUkeyServer(["init", "--data-dir", dir, "--json"], env);
  assert.equal(init.status, 0, init.stdout + init.stderr);
  const cfg = JSON.parse(readFileSync(`${dir}/config.json`, "utf8"));
  cfg.ca = { ...cfg.ca, deltaCrl: { enabled: true, everyMinutes: 15 } };
  writeFileSync(`${dir}/config.json`, JSON.stringify(cfg, null, 2));
  assert.equal(addHolder(t, dir, env, "P1").status, 0);
  root = `${dir}/ca/root.cer.pem`;
  issuing = `${dir}/ca/issuing.cer.pem`;
  for (let i = 0; i < 2; i++) {
    const ctx = await openServerContext(dir, env, clock);
    assert.equal(ctx.store.db.engine, "postgres");
    contexts.push(ctx);
    apps.push(await buildApp(ctx));
  }
  const csr = readFileSync(opensslCsr(t, "p", keyArgs.p256).csr);
  for (let i = 0; i < 2; i++) {
    const c = await contexts[0]!.issuance.issue({ holderId: "P1", profileId: "personal", csr, actor: "test" });
    certs.push({ serial: c.serial, pem: t.write(`c${i}.pem`, derToPem(c.der!, "CERTIFICATE")) });
  }
});
after(async () => {
  for (const a of apps) await a.close();
  for (const c of contexts) await c.close();
  await db?.drop();
  t?.cleanup();
});

let n = 0;
async function fetchPem(instance: number, url: string): Promise<{ file: string; text: string }> {
  const r = await apps[instance]!.inject({ method: "GET", url });
  assert.equal(r.statusCode, 200, r.body);
  const file = t.write(`crl${n++}.pem`, r.body);
  return { file, text: openssl(["crl", "-in", file, "-noout", "-text"]).out };
}

function numberUnder(text: string, heading: string): number {
  const m = new RegExp(`${heading}:(?: critical)?\\s+(\\d+)`).exec(text);
  assert.ok(m, `${heading} in\n${text}`);
  return Number(m[1]);
}

function verify(cert: string, crls: string[]): { status: number; out: string } {
  return openssl(["verify", "-crl_check", "-extended_crl", "-use_deltas", "-attime", String(Math.floor(clock.now().getTime() / 1000) + 1),
    "-CAfile", root, "-untrusted", issuing, ...crls.flatMap((c) => ["-CRLfile", c]), cert]);
}

test("a revocation on one instance is in the other's delta; bases and deltas of both instances combine by their numbers", async () => {
  const baseA = await fetchPem(0, "/crl/issuing.pem");
  const baseB = await fetchPem(1, "/crl/issuing.pem");
  const nA = numberUnder(baseA.text, "X509v3 CRL Number");
  const nB = numberUnder(baseB.text, "X509v3 CRL Number");
  assert.ok(nB > nA, "one sequence for both instances");
  // Instance B revokes; instance A never hears of it but through the database.
  const first = await fetchPem(0, "/crl/issuing-delta.pem");
  clock.advance(60_000);
  await contexts[1]!.revocation.revoke(certs[0]!.serial, "keyCompromise", "test");
  const deltaA = await fetchPem(0, "/crl/issuing-delta.pem");
  assert.notEqual(deltaA.text, first.text, "instance A re-signed its delta");
  assert.equal(numberUnder(deltaA.text, "X509v3 Delta CRL Indicator"), nA);
  const dA = numberUnder(deltaA.text, "X509v3 CRL Number");
  assert.ok(dA > nB, "after every number handed out before it");
  assert.ok(deltaA.text.toUpperCase().includes(certs[0]!.serial.toUpperCase()), deltaA.text);
  // B's complete CRL (nA <= nB < dA) with A's delta: openssl applies it.
  const revoked = verify(certs[0]!.pem, [baseB.file, deltaA.file]);
  assert.match(revoked.out, /certificate revoked/);
  const good = verify(certs[1]!.pem, [baseB.file, deltaA.file]);
  assert.equal(good.status, 0, good.out);
  // B's own delta names B's base and lists the same revocation.
  const deltaB = await fetchPem(1, "/crl/issuing-delta.pem");
  assert.equal(numberUnder(deltaB.text, "X509v3 Delta CRL Indicator"), nB);
  assert.ok(numberUnder(deltaB.text, "X509v3 CRL Number") > dA);
  assert.match(verify(certs[0]!.pem, [baseB.file, deltaB.file]).out, /certificate revoked/);
  // A's complete CRL is older than B's delta's base (nA < nB): RFC 5280 forbids combining them, openssl leaves
  // the delta aside and knows only that base, in which the certificate is not revoked. A relying party holding
  // it fetches the complete CRL again (docs/ocsp-crl.md, several instances).
  const stale = verify(certs[0]!.pem, [baseA.file, deltaB.file]);
  assert.equal(stale.status, 0, stale.out);
});
