import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import type { FastifyInstance } from "fastify";
import { fixedClock } from "@ukey/policy";
import { buildApp } from "../src/app.js";
import { formatCertId } from "../src/cert-id.js";
import { openServerContext, type ServerContext } from "../src/server-context.js";
import type { OrderView } from "../src/renewal-order-service.js";
import { addHolder, initialisedDataDir, keyArgs, openssl, opensslCsr, runUkeyServer, tempDir, type TempDir, signPossession } from "./support/fixtures.js";

// A whole renewal through the HTTP API, with the current key held by the
// test in place of the agent (the agent and real tokens come with their own
// issue); real server app, real database, real CA, CSRs from openssl.
const day = 86_400_000;
let t: TempDir;
let ctx: ServerContext;
let app: FastifyInstance;
let dataDir: string;
const clock = fixedClock(new Date());
let old: { serial: string; certId: string; notAfter: number; keyFile: string };

before(async () => {
  t = tempDir();
  let env: Record<string, string>;
  ({ dataDir, env } = initialisedDataDir(t));
  const cfg = JSON.parse(readFileSync(`${dataDir}/config.json`, "utf8"));
  cfg.profiles.push({ id: "gov", preset: "gov-supervision" });
  writeFileSync(`${dataDir}/config.json`, JSON.stringify(cfg, null, 2));
  assert.equal(addHolder(t, dataDir, env, "G1").status, 0);
  const { csr, key } = opensslCsr(t, "old", keyArgs.p256);
  const r = runUkeyServer(["issue", "--data-dir", dataDir, "--holder", "G1", "--profile", "gov", "--csr", csr, "--json"], env);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const out = r.json<{ serial: string; certId: string; notAfter: string }>();
  old = { serial: out.serial, certId: out.certId, notAfter: Date.parse(out.notAfter), keyFile: key };
  ctx = await openServerContext(dataDir, env, clock);
  app = await buildApp(ctx);
});
after(async () => {
  await app?.close();
  await ctx?.close();
  t.cleanup();
});

async function call<T = OrderView>(method: "GET" | "POST", url: string, payload?: unknown): Promise<{ status: number; body: T & { code?: string; message?: { en: string } } }> {
  const res = await app.inject({ method, url, ...(payload === undefined ? {} : { payload: payload as object }) });
  return { status: res.statusCode, body: res.json() };
}

const proof = (orderId: string, challenge: string, keyFile = old.keyFile) => signPossession(orderId, challenge, keyFile);

test("outside the window the refusal gives the date it opens", async () => {
  clock.set(new Date(old.notAfter - 200 * day));
  const r = await call("POST", "/api/v1/orders", { certId: old.certId });
  assert.equal(r.status, 409);
  assert.equal(r.body.code, "RENEWAL_NOT_YET_OPEN");
  assert.match(r.body.message!.en, /\d{4}-\d{2}-\d{2}/);
  // The date also as a value, for the agent and the portal to act on.
  const opensAt = (r.body as { params?: { opensAt?: string } }).params?.opensAt ?? "";
  assert.match(opensAt, /^\d{4}-\d{2}-\d{2}/);
  assert.ok(r.body.message!.en.includes(opensAt));
});

test("a renewal from start to completion, resumable and idempotent at each step", async () => {
  clock.set(new Date(old.notAfter - 30 * day));
  const started = await call("POST", "/api/v1/orders", { certId: old.certId });
  assert.equal(started.status, 201);
  assert.equal(started.body.nextStep, "possession");
  assert.equal(started.body.requirements.idNumber, false);
  assert.equal(started.body.idType, undefined, "the ID type is shown only when the ID number is asked");
  const id = started.body.id;
  const again = await call("POST", "/api/v1/orders", { certId: old.certId });
  assert.equal(again.body.id, id, "starting again resumes the open order");

  // Proof of possession: a wrong key, then a replayed challenge, then the right key.
  const c1 = (await call<{ challenge: string }>("POST", `/api/v1/orders/${id}/challenge`)).body.challenge;
  const { key: otherKey } = opensslCsr(t, "other", keyArgs.p256);
  const wrong = await call("POST", `/api/v1/orders/${id}/possession`, { signature: proof(id, c1, otherKey) });
  assert.equal(wrong.body.code, "POSSESSION_PROOF_FAILED");
  const replay = await call("POST", `/api/v1/orders/${id}/possession`, { signature: proof(id, c1) });
  assert.equal(replay.body.code, "CHALLENGE_INVALID", "a challenge is used once, whatever the outcome");
  const c2 = (await call<{ challenge: string }>("POST", `/api/v1/orders/${id}/challenge`)).body.challenge;
  const proved = await call("POST", `/api/v1/orders/${id}/possession`, { signature: proof(id, c2) });
  assert.equal(proved.status, 200, JSON.stringify(proved.body));
  assert.equal(proved.body.state, "verified");
  assert.equal(proved.body.nextStep, "csr");

  // The CSR: same key refused, other subject refused, then a new key with an empty subject.
  const sameKey = t.path("same.csr.pem");
  openssl(["req", "-new", "-key", old.keyFile, "-subj", "/", "-out", sameKey]);
  assert.equal((await call("POST", `/api/v1/orders/${id}/csr`, { csr: readFileSync(sameKey, "utf8") })).body.code, "KEY_NOT_RENEWED");
  const evil = opensslCsr(t, "evil", keyArgs.p256, "/CN=Someone Else");
  assert.equal((await call("POST", `/api/v1/orders/${id}/csr`, { csr: readFileSync(evil.csr, "utf8") })).body.code, "CSR_SUBJECT_MISMATCH");
  const fresh = opensslCsr(t, "new", keyArgs.p256, "/");
  const issued = await call("POST", `/api/v1/orders/${id}/csr`, { csr: readFileSync(fresh.csr, "utf8"), tokenSerial: "PF20FA0001" });
  assert.equal(issued.status, 200, JSON.stringify(issued.body));
  assert.equal(issued.body.state, "issued");
  const first = issued.body.newCertificate!;
  writeFileSync(t.path("issued.pem"), first.pem);
  writeFileSync(t.path("chain.pem"), first.chainPem);
  // openssl checks at the test's clock: the certificate starts on the renewal day.
  const v = openssl(["verify", "-attime", String(Math.floor(clock.now().getTime() / 1000)), "-CAfile", `${dataDir}/ca/root.cer.pem`, "-untrusted", t.path("chain.pem"), t.path("issued.pem")]);
  assert.equal(v.status, 0, v.out);
  assert.match(openssl(["x509", "-in", t.path("issued.pem"), "-noout", "-subject"]).out, /CN ?= ?Holder G1/);

  // Re-delivery: the same CSR gives the same certificate.
  const redelivered = await call("POST", `/api/v1/orders/${id}/csr`, { csr: readFileSync(fresh.csr, "utf8") });
  assert.equal(redelivered.body.newCertificate!.serial, first.serial);

  // Re-key before installation (the token was pulled and re-initialised): the undelivered certificate is revoked.
  const rekey = opensslCsr(t, "rekey", keyArgs.p256, "/");
  const second = await call("POST", `/api/v1/orders/${id}/csr`, { csr: readFileSync(rekey.csr, "utf8") });
  assert.notEqual(second.body.newCertificate!.serial, first.serial);
  assert.ok((await ctx.store.certificates.get(first.serial))!.revokedAt !== null);

  // Complete: the old certificate is superseded (gov-supervision revokes it as superseded).
  assert.equal((await call("POST", `/api/v1/orders/${id}/installed`)).body.state, "installed");
  const done = await call("POST", `/api/v1/orders/${id}/complete`);
  assert.equal(done.body.state, "completed");
  assert.equal((await call("POST", `/api/v1/orders/${id}/complete`)).body.state, "completed", "complete is idempotent");
  const oldRec = await ctx.store.certificates.get(old.serial);
  assert.equal(oldRec!.status, "superseded");
  assert.equal(oldRec!.revocationReason, "superseded");
  const next = await call("POST", "/api/v1/orders", { certId: old.certId });
  assert.equal(next.body.code, "CERT_SUPERSEDED");
  const audit = await ctx.store.audit.verify();
  assert.equal(audit.ok, true);
  const actions = (await ctx.store.audit.list(0, 10_000)).filter((e) => e.subjectId === id).map((e) => e.action);
  assert.deepEqual(actions.slice(0, 4), ["order.created", "order.possession.refused", "order.possession.refused", "order.possession"]);
  assert.ok(actions.includes("order.issued") && actions.includes("order.completed"));
  void formatCertId;
});

test("bad input: unknown order, malformed certId, steps out of order, oversized body", async () => {
  assert.equal((await call("GET", "/api/v1/orders/00000000-0000-0000-0000-000000000000")).body.code, "ORDER_NOT_FOUND");
  assert.equal((await call("GET", "/api/v1/orders/../../etc")).status, 404);
  assert.equal((await call("POST", "/api/v1/orders", { certId: "%%%" })).body.code, "CERT_ID_MALFORMED");
  assert.equal((await call("POST", "/api/v1/orders", { certId: old.certId, extra: 1 })).body.code, "REQUEST_INVALID");
  const big = await app.inject({ method: "POST", url: "/api/v1/orders", payload: { certId: "x".repeat(100_000) } });
  assert.equal(big.statusCode, 413);
});
