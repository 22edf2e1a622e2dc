import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import type { FastifyInstance } from "fastify";
import { fixedClock } from "@ukey/policy";
import { buildApp } from "../src/app.js";
import { operatorServiceFor } from "../src/admin/operator-service.js";
import { raKeyFiles, readOrCreateKeyFile } from "../src/admin/secret-key-file.js";
import { signSessionToken } from "../src/admin/session-token.js";
import { LocalKmc } from "../src/kmc/key-management-centre.js";
import { createKmcMasterKeyFile } from "../src/kmc/kmc-master-key.js";
import { openServerContext, type ServerContext } from "../src/server-context.js";
import { addHolder, initialisedDataDir, openssl, tempDir, type TempDir } from "./support/fixtures.js";

// Issue 13 part 5 through the admin API (the real app, a real embedded database): the rule of dual control as the
// routes enforce it, each refusal a catalogue answer that changes nothing, and the codes of an approval working.
let t: TempDir;
let ctx: ServerContext;
let app: FastifyInstance;
const clock = fixedClock(new Date("2026-12-04T02:00:00Z"));
const tokens: Record<string, string> = {};
const escrowIds: string[] = [];

before(async () => {
  t = tempDir("ukey-admin-kmc-");
  const { dataDir, env } = initialisedDataDir(t);
  assert.equal(addHolder(t, dataDir, env, "H1").status, 0);
  ctx = await openServerContext(dataDir, env, clock);
  app = await buildApp(ctx);
  const operators = operatorServiceFor(ctx);
  const sessionKey = readOrCreateKeyFile(raKeyFiles(ctx.layout).sessionHmac);
  const at = clock.now().getTime();
  for (const [id, role] of [["olga", "operator"], ["otto", "operator"], ["audrey", "auditor"], ["root", "admin"]] as const) {
    await operators.create({ id, role, password: `${id} has a long passphrase`, actor: "test" });
    tokens[id] = signSessionToken(sessionKey, { sub: id, role, iat: at, exp: at + 3_600_000, amr: "pwd+otp" });
  }
  const kmc = new LocalKmc({ store: ctx.store, masterKey: await createKmcMasterKeyFile(t.path("kmc.json"), "the KMC's own passphrase"), clock });
  assert.equal(openssl(["genpkey", "-algorithm", "SM2", "-out", t.path("sign.pem")]).status, 0);
  assert.equal(openssl(["pkey", "-in", t.path("sign.pem"), "-pubout", "-outform", "DER", "-out", t.path("sign.der")]).status, 0);
  const spki = readFileSync(t.path("sign.der"));
  for (let i = 0; i < 2; i++) {
    clock.advance(1000);
    escrowIds.push((await kmc.issueEncryptionKey({ holderId: "H1", holderSigningSpki: spki, actor: "holder:H1" })).escrowId);
  }
});
after(async () => {
  await app?.close();
  await ctx?.close();
  t.cleanup();
});

const call = (who: string, method: "GET" | "POST", url: string, payload?: unknown) =>
  app.inject({ method, url: `/api/v1/admin${url}`, headers: { authorization: `Bearer ${tokens[who]}` }, ...(payload !== undefined ? { payload: payload as object } : {}) });

test("dual control over the admin API: an auditor cannot open, the requester cannot approve, a second person can, once", async () => {
  const escrows = await call("audrey", "GET", "/holders/H1/kmc-escrows");
  assert.equal(escrows.statusCode, 200, escrows.body);
  const listed = escrows.json<{ escrows: Array<Record<string, unknown>> }>().escrows;
  assert.deepEqual(listed.map((e) => e.id), escrowIds);
  assert.deepEqual(Object.keys(listed[0]!).sort(), ["algorithm", "createdAt", "holderId", "id", "masterKeyId", "spkiSha256"], "never the wrapped key");

  const byAuditor = await call("audrey", "POST", "/kmc-recoveries", { holderId: "H1", profileId: "personal", reason: "lost" });
  assert.equal(byAuditor.statusCode, 403);
  assert.equal(byAuditor.json<{ code: string }>().code, "ROLE_FORBIDDEN");

  const opened = await call("olga", "POST", "/kmc-recoveries", { holderId: "H1", profileId: "personal", escrowIds: [escrowIds[0]], reason: "UKey 丢失" });
  assert.equal(opened.statusCode, 201, opened.body);
  const rec = opened.json<{ id: string; status: string; requestedBy: string; escrowIds: string[]; expired: boolean }>();
  assert.deepEqual([rec.status, rec.requestedBy, rec.escrowIds, rec.expired], ["pending", "olga", [escrowIds[0]], false]);

  const own = await call("olga", "POST", `/kmc-recoveries/${rec.id}/approve`);
  assert.equal(own.statusCode, 403, own.body);
  const p = own.json<{ code: string; message: { "zh-CN": string; en: string }; remedy: { "zh-CN": string } }>();
  assert.equal(p.code, "KMC_RECOVERY_SAME_PERSON");
  assert.match(p.message["zh-CN"], /两个人/);
  assert.equal((await call("audrey", "GET", `/kmc-recoveries/${rec.id}`)).json<{ status: string }>().status, "pending");

  const pending = await call("audrey", "GET", "/kmc-recoveries?status=pending");
  assert.deepEqual(pending.json<{ recoveries: Array<{ id: string }> }>().recoveries.map((r) => r.id), [rec.id]);

  const approved = await call("audrey", "POST", `/kmc-recoveries/${rec.id}/approve`);
  assert.equal(approved.statusCode, 200, approved.body);
  assert.equal(approved.headers["cache-control"], "no-store");
  const codes = approved.json<{ recovery: { status: string; decidedBy: string; enrolmentId: string }; referenceNumber: string; authorizationCode: string }>();
  assert.equal(codes.recovery.status, "released");
  assert.equal(codes.recovery.decidedBy, "audrey");
  const again = await call("otto", "POST", `/kmc-recoveries/${rec.id}/approve`);
  assert.equal(again.statusCode, 409);
  assert.equal(again.json<{ code: string }>().code, "KMC_RECOVERY_NOT_PENDING");

  // The codes are a two-code download's: the holder's agent checks them as for any download.
  const check = await app.inject({ method: "POST", url: "/api/v1/downloads/check", payload: { referenceNumber: codes.referenceNumber, authorizationCode: codes.authorizationCode } });
  assert.equal(check.statusCode, 200, check.body);

  const entries = (await ctx.store.audit.list(1, 100_000)).filter((e) => e.subjectId === rec.id && e.action !== "admin.viewed").map((e) => [e.action, e.actor]);
  assert.deepEqual(entries, [
    ["kmc.recovery-requested", "operator:olga"], ["kmc.recovery-refused", "operator:olga"],
    ["kmc.recovery-approved", "operator:audrey"], ["kmc.recovery-refused", "operator:otto"],
  ]);
  assert.equal((await ctx.store.audit.verify()).ok, true);
});

test("the requester may withdraw; a rejected request cannot be approved", async () => {
  const opened = await call("otto", "POST", "/kmc-recoveries", { holderId: "H1", profileId: "personal", reason: "wrong holder" });
  const id = opened.json<{ id: string }>().id;
  const rejected = await call("otto", "POST", `/kmc-recoveries/${id}/reject`, { note: "opened for the wrong holder" });
  assert.equal(rejected.statusCode, 200, rejected.body);
  assert.equal(rejected.json<{ status: string }>().status, "rejected");
  const late = await call("root", "POST", `/kmc-recoveries/${id}/approve`);
  assert.equal(late.json<{ code: string }>().code, "KMC_RECOVERY_NOT_PENDING");
  const unknown = await call("root", "POST", "/kmc-recoveries/rec-none/approve");
  assert.equal(unknown.statusCode, 404);
  assert.equal(unknown.json<{ code: string }>().code, "KMC_RECOVERY_NOT_FOUND");
});
