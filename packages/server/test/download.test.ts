import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import type { FastifyInstance } from "fastify";
import { fixedClock } from "@ukey/policy";
import { buildApp } from "../src/app.js";
import { openServerContext, type ServerContext } from "../src/server-context.js";
import { addHolder, initialisedDataDir, keyArgs, openssl, opensslCsr, tempDir, type TempDir } from "./support/fixtures.js";

// Seed 004's remote download: an operator creates an enrolment, the holder
// downloads onto an empty key with the reference number and the code.
let t: TempDir;
let ctx: ServerContext;
let app: FastifyInstance;
let dataDir: string;
const clock = fixedClock(new Date());

before(async () => {
  t = tempDir();
  let env: Record<string, string>;
  ({ dataDir, env } = initialisedDataDir(t));
  assert.equal(addHolder(t, dataDir, env, "D1").status, 0);
  ctx = await openServerContext(dataDir, env, clock);
  app = await buildApp(ctx);
});
after(async () => {
  await app?.close();
  await ctx?.close();
  t.cleanup();
});

async function download(payload: Record<string, unknown>) {
  const res = await app.inject({ method: "POST", url: "/api/v1/downloads", payload });
  return { status: res.statusCode, body: res.json() as { code?: string; serial?: string; pem?: string; chainPem?: string; subject?: string } };
}

test("download with two codes; the code works once (the same key gets its certificate again); wrong codes are counted", async () => {
  const e = await ctx.enrolments.create({ holderId: "D1", profileId: "personal", actor: "operator:test" });
  const key = opensslCsr(t, "k1", keyArgs.p256, "/");
  const csr = readFileSync(key.csr, "utf8");

  const wrong = await download({ referenceNumber: e.referenceNumber, authorizationCode: "2222-2222-2222", csr });
  assert.equal(wrong.status, 401);
  assert.equal(wrong.body.code, "DOWNLOAD_CODE_INVALID");
  assert.match(String((wrong.body as { message?: { "zh-CN"?: string } }).message?.["zh-CN"]), /还可以再试 \d+ 次/, "issue 16 (8): the tries left");

  const ok = await download({ referenceNumber: e.referenceNumber, authorizationCode: e.authorizationCode, csr, tokenSerial: "PF20FA000123" });
  assert.equal(ok.status, 201, JSON.stringify(ok.body));
  writeFileSync(t.path("d.pem"), ok.body.pem!);
  writeFileSync(t.path("chain.pem"), ok.body.chainPem!);
  assert.equal(openssl(["verify", "-CAfile", `${dataDir}/ca/root.cer.pem`, "-untrusted", t.path("chain.pem"), t.path("d.pem")]).status, 0);
  assert.match(ok.body.subject!, /CN=Holder D1/);
  const stored = await ctx.store.certificates.get(ok.body.serial!);
  assert.equal(stored?.tokenSerial, "PF20FA000123");

  // The answer was lost (crash, key pulled): the same codes and the same key get the same certificate again.
  const again = await download({ referenceNumber: e.referenceNumber, authorizationCode: e.authorizationCode, csr });
  assert.equal(again.status, 201, JSON.stringify(again.body));
  assert.equal(again.body.serial, ok.body.serial);
  // Another key with the spent codes gets nothing.
  const other = opensslCsr(t, "k1b", keyArgs.p256, "/");
  const refused = await download({ referenceNumber: e.referenceNumber, authorizationCode: e.authorizationCode, csr: readFileSync(other.csr, "utf8") });
  assert.equal(refused.body.code, "CODE_ALREADY_USED");
  const audit = (await ctx.store.audit.list(0, 1000)).map((x) => x.action);
  assert.ok(audit.includes("enrolment.redeemed") && audit.includes("enrolment.code-refused"));
});

test("a malformed CSR spends no attempt, a CSR for another subject is refused and the code stays usable", async () => {
  const e = await ctx.enrolments.create({ holderId: "D1", profileId: "personal", actor: "operator:test" });
  const bad = await download({ referenceNumber: e.referenceNumber, authorizationCode: e.authorizationCode, csr: "not a csr" });
  assert.equal(bad.body.code, "CSR_MALFORMED");
  const other = opensslCsr(t, "k2", keyArgs.p256, "/CN=Somebody Else");
  const mismatch = await download({ referenceNumber: e.referenceNumber, authorizationCode: e.authorizationCode, csr: readFileSync(other.csr, "utf8") });
  assert.equal(mismatch.body.code, "CSR_SUBJECT_MISMATCH");
  const good = opensslCsr(t, "k3", keyArgs.p256, "/");
  const ok = await download({ referenceNumber: e.referenceNumber, authorizationCode: e.authorizationCode, csr: readFileSync(good.csr, "utf8") });
  assert.equal(ok.status, 201, JSON.stringify(ok.body));
  const weak = opensslCsr(t, "k4", keyArgs.rsa1024, "/");
  const e2 = await ctx.enrolments.create({ holderId: "D1", profileId: "personal", actor: "operator:test" });
  assert.equal((await download({ referenceNumber: e2.referenceNumber, authorizationCode: e2.authorizationCode, csr: readFileSync(weak.csr, "utf8") })).body.code, "KEY_TOO_WEAK");
});

test("while the holder's certificate of the profile is on hold (冻结) a download is refused with CERT_ON_HOLD and the code stays usable", async () => {
  const first = await ctx.enrolments.create({ holderId: "D1", profileId: "personal", actor: "operator:test" });
  const k = opensslCsr(t, "h1", keyArgs.p256, "/");
  const got = await download({ referenceNumber: first.referenceNumber, authorizationCode: first.authorizationCode, csr: readFileSync(k.csr, "utf8") });
  assert.equal(got.status, 201, JSON.stringify(got.body));
  await ctx.revocation.revoke(got.body.serial!, "certificateHold", "operator:test");
  const e = await ctx.enrolments.create({ holderId: "D1", profileId: "personal", actor: "operator:test" });
  const csr = readFileSync(opensslCsr(t, "h2", keyArgs.p256, "/").csr, "utf8");
  const refused = await download({ referenceNumber: e.referenceNumber, authorizationCode: e.authorizationCode, csr });
  assert.equal(refused.status, 409);
  assert.equal(refused.body.code, "CERT_ON_HOLD");
  await ctx.revocation.releaseHold(got.body.serial!, "operator:test");
  const ok = await download({ referenceNumber: e.referenceNumber, authorizationCode: e.authorizationCode, csr });
  assert.equal(ok.status, 201, JSON.stringify(ok.body));
});
