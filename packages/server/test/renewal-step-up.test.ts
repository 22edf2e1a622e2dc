import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import type { FastifyInstance } from "fastify";
import { fixedClock } from "@ukey/policy";
import { buildApp } from "../src/app.js";
import { openServerContext, type ServerContext } from "../src/server-context.js";
import type { OrderView } from "../src/renewal/renewal-order-service.js";
import { OrderApi } from "./support/order-api.js";
import { initialisedDataDir, keyArgs, opensslCsr, runUkeyServer, tempDir, type TempDir } from "./support/fixtures.js";

// Long expired (seed 000: over a year; the built-in profile: over 90 days):
// proof of possession still works while the window is open, and a second
// device approves with a one-time link; a revoked certificate proves nothing.
const day = 86_400_000;
const idNumber = "440305199001011234";
let t: TempDir;
let ctx: ServerContext;
let app: FastifyInstance;
const clock = fixedClock(new Date());
const certs: Array<{ certId: string; serial: string; notAfter: number; key: string }> = [];

before(async () => {
  t = tempDir();
  const { dataDir, env } = initialisedDataDir(t);
  const idFile = t.write("id", `${idNumber}\n`);
  assert.equal(runUkeyServer(["holder", "add", "--data-dir", dataDir, "--id", "S1", "--name", "王五", "--id-type", "resident-id", "--id-number-file", idFile, "--phone", "13800000000", "--json"], env).status, 0);
  for (const name of ["a", "b"]) {
    const { csr, key } = opensslCsr(t, name, keyArgs.p256);
    const r = runUkeyServer(["issue", "--data-dir", dataDir, "--holder", "S1", "--profile", "personal", "--csr", csr, "--json"], env);
    const out = r.json<{ certId: string; serial: string; notAfter: string }>();
    certs.push({ certId: out.certId, serial: out.serial, notAfter: Date.parse(out.notAfter), key });
  }
  ctx = await openServerContext(dataDir, env, clock);
  app = await buildApp(ctx);
  api = OrderApi.of(app);
  clock.set(new Date(certs[0]!.notAfter + 120 * day));
});
after(async () => {
  await app?.close();
  await ctx?.close();
  t.cleanup();
});

let api: OrderApi;
const call = <T = OrderView>(url: string, payload?: unknown) => api.call<T>("POST", url, payload);
const prove = (id: string, key: string) => api.prove(id, key);

test("expired 120 days: possession, then step-up approved on a second device with a one-time link", async () => {
  const order = (await api.start(certs[0]!.certId)).body;
  const proved = (await prove(order.id, certs[0]!.key)).body;
  assert.equal(proved.requirements.stepUp, true);
  assert.equal(proved.nextStep, "step-up");
  const { approvalUrl } = (await call<{ approvalUrl: string }>(`/api/v1/orders/${order.id}/step-up`)).body;
  const link = approvalUrl.split("/step-up/")[1]!;
  assert.equal((await call(`/api/v1/step-up/${link}`, { idType: "resident-id", idNumber: "440305199001010000" })).body.code, "IDENTITY_MISMATCH");
  assert.equal((await call(`/api/v1/step-up/${link.replace(/.$/, (c) => (c === "A" ? "B" : "A"))}`, { idType: "resident-id", idNumber })).body.code, "CHALLENGE_INVALID");
  const approved = (await call(`/api/v1/step-up/${link}`, { idType: "resident-id", idNumber })).body;
  assert.equal(approved.nextStep, "id-number");
  assert.equal((await call(`/api/v1/step-up/${link}`, { idType: "resident-id", idNumber })).body.code, "CHALLENGE_INVALID", "the link works once");
});

test("a certificate revoked after the order started cannot prove possession", async () => {
  const order = (await api.start(certs[1]!.certId)).body;
  await ctx.revocation.revoke(certs[1]!.serial, "keyCompromise", "operator:test");
  const r = await prove(order.id, certs[1]!.key);
  assert.equal(r.status, 409);
  assert.equal(r.body.code, "CERT_REVOKED");
});
