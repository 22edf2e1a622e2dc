import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import type { FastifyInstance } from "fastify";
import { fixedClock } from "@ukey/policy";
import { buildApp } from "../src/app.js";
import { formatCertId } from "../src/cert-id.js";
import { openServerContext, type ServerContext } from "../src/server-context.js";
import type { OrderView } from "../src/renewal/renewal-order-service.js";
import { OrderApi } from "./support/order-api.js";
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
  cfg.profiles.push({ id: "gov", preset: "gov-supervision", keyAlgorithms: ["rsa2048", "p256"], certificates: null });
  writeFileSync(`${dataDir}/config.json`, JSON.stringify(cfg, null, 2));
  assert.equal(addHolder(t, dataDir, env, "G1").status, 0);
  const { csr, key } = opensslCsr(t, "old", keyArgs.p256);
  const r = runUkeyServer(["issue", "--data-dir", dataDir, "--holder", "G1", "--profile", "gov", "--csr", csr, "--json"], env);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const out = r.json<{ serial: string; certId: string; notAfter: string }>();
  old = { serial: out.serial, certId: out.certId, notAfter: Date.parse(out.notAfter), keyFile: key };
  ctx = await openServerContext(dataDir, env, clock);
  app = await buildApp(ctx);
  api = OrderApi.of(app);
});
after(async () => {
  await app?.close();
  await ctx?.close();
  t.cleanup();
});

let api: OrderApi;
const call = <T = OrderView>(method: "GET" | "POST", url: string, payload?: unknown) => api.call<T>(method, url, payload);

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

test("the renewal API refuses the est channel: only EST, authenticated by the certificate over TLS, renews on its window (issue 16, seed 002)", async () => {
  clock.set(new Date(old.notAfter - 20 * day));
  const r = await call("POST", "/api/v1/orders", { certId: old.certId, channel: "est" });
  assert.equal(r.status, 400);
  assert.equal(r.body.code, "REQUEST_INVALID");
  assert.deepEqual(await ctx.store.orders.findOpenForCertificate(old.serial), undefined, "no order was made");
});

test("a renewal from start to completion, resumable and idempotent at each step", async () => {
  clock.set(new Date(old.notAfter - 30 * day));
  const started = await api.start(old.certId);
  assert.equal(started.status, 201);
  assert.equal(started.body.nextStep, "possession");
  assert.equal(started.body.resumed, false);
  assert.equal(started.body.certificateSerial, old.serial);
  assert.deepEqual(started.body.signers, ["certificate"]);
  const id = started.body.id;
  const again = await api.start(old.certId);
  assert.equal(again.status, 200);
  assert.equal(again.body.id, id, "starting again resumes the open order");
  assert.equal(again.body.resumed, true);
  assert.notEqual(again.body.challenge.value, started.body.challenge.value, "each answer brings a fresh challenge");

  // Proof of possession: a wrong key, then the right key; the challenge that proved cannot prove again.
  const c1 = started.body.challenge.value;
  const { key: otherKey } = opensslCsr(t, "other", keyArgs.p256);
  const wrong = await api.call("POST", `/api/v1/orders/${id}/possession`, { challenge: c1, signature: proof(id, c1, otherKey) });
  assert.equal(wrong.body.code, "POSSESSION_PROOF_FAILED");
  assert.equal(wrong.body.credential, undefined);
  const signature = proof(id, c1);
  const proved = await api.call("POST", `/api/v1/orders/${id}/possession`, { challenge: c1, signature });
  assert.equal(proved.status, 200, JSON.stringify(proved.body));
  assert.equal(proved.body.state, "verified");
  assert.equal(proved.body.nextStep, "csr");
  assert.match(proved.body.credential!.token, /^uko1\.[A-Za-z0-9_-]{43}$/);
  assert.equal(proved.headers["cache-control"], "no-store");
  const replay = await api.call("POST", `/api/v1/orders/${id}/possession`, { challenge: c1, signature });
  assert.equal(replay.body.code, "CHALLENGE_INVALID", "a challenge proves once");
  assert.equal(replay.body.credential, undefined);

  // The CSR: same key refused, other subject refused, then a new key with an empty subject.
  const sameKey = t.path("same.csr.pem");
  openssl(["req", "-new", "-key", old.keyFile, "-subj", "/", "-out", sameKey]);
  assert.equal((await api.call("POST", `/api/v1/orders/${id}/csr`, { csr: readFileSync(sameKey, "utf8") })).body.code, "KEY_NOT_RENEWED");
  const evil = opensslCsr(t, "evil", keyArgs.p256, "/CN=Someone Else");
  assert.equal((await api.call("POST", `/api/v1/orders/${id}/csr`, { csr: readFileSync(evil.csr, "utf8") })).body.code, "CSR_SUBJECT_MISMATCH");
  const fresh = opensslCsr(t, "new", keyArgs.p256, "/");
  const issued = await api.call("POST", `/api/v1/orders/${id}/csr`, { csr: readFileSync(fresh.csr, "utf8"), tokenSerial: "PF20FA0001" });
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
  const redelivered = await api.call("POST", `/api/v1/orders/${id}/csr`, { csr: readFileSync(fresh.csr, "utf8") });
  assert.equal(redelivered.body.newCertificate!.serial, first.serial);

  // The agent crashed and lost its credential: it proves possession again (now the new key may too) and goes on.
  api.credentials.delete(id);
  assert.equal((await api.call("GET", `/api/v1/orders/${id}`)).body.code, "ORDER_CREDENTIAL_REQUIRED");
  assert.deepEqual((await api.call<{ signers: string[] }>("POST", `/api/v1/orders/${id}/challenge`)).body.signers, ["certificate", "new-key"]);
  const reproved = await api.prove(id, fresh.key, "new-key");
  assert.equal(reproved.status, 200, JSON.stringify(reproved.body));
  assert.equal(reproved.body.state, "issued", "proving again changes nothing but the credential");

  // Re-key before installation (the new key was lost): the undelivered certificate is revoked.
  const rekey = opensslCsr(t, "rekey", keyArgs.p256, "/");
  const second = await api.call("POST", `/api/v1/orders/${id}/csr`, { csr: readFileSync(rekey.csr, "utf8") });
  assert.notEqual(second.body.newCertificate!.serial, first.serial);
  assert.ok((await ctx.store.certificates.get(first.serial))!.revokedAt !== null);

  // Complete: the old certificate is superseded (gov-supervision revokes it as superseded).
  assert.equal((await api.call("POST", `/api/v1/orders/${id}/installed`)).body.state, "installed");
  const done = await api.call("POST", `/api/v1/orders/${id}/complete`);
  assert.equal(done.body.state, "completed");
  assert.equal((await api.call("POST", `/api/v1/orders/${id}/complete`)).body.state, "completed", "complete is idempotent");
  const oldRec = await ctx.store.certificates.get(old.serial);
  assert.equal(oldRec!.status, "superseded");
  assert.equal(oldRec!.revocationReason, "superseded");
  const next = await api.start(old.certId);
  assert.equal(next.body.code, "CERT_SUPERSEDED");
  // The old key cannot prove possession any more (its certificate is revoked); the new one reads the completed order.
  const closed = (await api.call<{ open: boolean; signers: string[] }>("POST", `/api/v1/orders/${id}/challenge`)).body;
  assert.equal(closed.open, false);
  assert.deepEqual(closed.signers, ["new-key"]);
  api.credentials.delete(id);
  const afterwards = await api.prove(id, rekey.key, "new-key");
  assert.equal(afterwards.body.state, "completed");
  assert.equal(afterwards.body.credential, undefined, "an order that ended gives no credential");
  const audit = await ctx.store.audit.verify();
  assert.equal(audit.ok, true);
  const actions = (await ctx.store.audit.list(0, 10_000)).filter((e) => e.subjectId === id).map((e) => e.action);
  assert.deepEqual(actions.slice(0, 2), ["order.created", "order.possession"]);
  assert.ok(actions.includes("order.issued") && actions.includes("order.completed"));
  void formatCertId;
});

test("bad input: unknown order, malformed certId, steps out of order, oversized body", async () => {
  assert.equal((await call("POST", "/api/v1/orders/00000000-0000-0000-0000-000000000000/challenge")).body.code, "ORDER_NOT_FOUND");
  assert.equal((await call("GET", "/api/v1/orders/../../etc")).status, 404);
  assert.equal((await call("POST", "/api/v1/orders", { certId: "%%%" })).body.code, "CERT_ID_MALFORMED");
  assert.equal((await call("POST", "/api/v1/orders", { certId: old.certId, extra: 1 })).body.code, "REQUEST_INVALID");
  const big = await app.inject({ method: "POST", url: "/api/v1/orders", payload: { certId: "x".repeat(100_000) } });
  assert.equal(big.statusCode, 413);
});
