import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import type { FastifyInstance } from "fastify";
import { fixedClock, formatPolicyDate } from "@ukey/policy";
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
  assert.equal(addHolder(t, dataDir, env, "D2", ["--phone", "15900000009", "--email", "d2@example.cn"]).status, 0);
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

test("issue 16 (seed 004 §4.5): downloads/check previews exactly the certificate the download writes and nothing else of the holder; a wrong code learns nothing", async () => {
  const e = await ctx.enrolments.create({ holderId: "D2", profileId: "personal", actor: "operator:test" });
  const check = async (authorizationCode: string) => app.inject({ method: "POST", url: "/api/v1/downloads/check", payload: { referenceNumber: e.referenceNumber, authorizationCode } });
  const wrong = await check("2222-2222-2222");
  assert.equal(wrong.statusCode, 401);
  assert.doesNotMatch(wrong.body, /Holder D2|D2|certificate|1590|example\.cn/, "a wrong code says nothing of whose codes they are");

  const ok = await check(e.authorizationCode);
  assert.equal(ok.statusCode, 200, ok.body);
  const preview = ok.json<{ valid: true; certificate: { subject: string; notBefore: string; notAfter: string; keyAlgorithms: string[]; pair: boolean; profile: { "zh-CN": string } } }>();
  assert.deepEqual(Object.keys(preview).sort(), ["certificate", "recoveredKeys", "valid"]);
  assert.equal((preview as unknown as { recoveredKeys: number }).recoveredKeys, 0, "an ordinary enrolment carries no recovered keys");
  assert.deepEqual(Object.keys(preview.certificate).sort(), ["keyAlgorithms", "notAfter", "notBefore", "pair", "profile", "subject"]);
  assert.doesNotMatch(ok.body, /1590|example\.cn|11010119900307123X/, "no phone, e-mail or ID number");
  assert.equal(preview.certificate.profile["zh-CN"], "个人证书");
  assert.equal(preview.certificate.pair, false);

  const key = opensslCsr(t, "k-preview", keyArgs.p256, "/");
  const got = await download({ referenceNumber: e.referenceNumber, authorizationCode: e.authorizationCode, csr: readFileSync(key.csr, "utf8") });
  assert.equal(got.status, 201, JSON.stringify(got.body));
  assert.equal(preview.certificate.subject, got.body.subject, "the subject shown is the one written");
  const issued = got.body as { notBefore?: string; notAfter?: string };
  // The same days (the CA may clamp the instant to its own validity, as here where it was made after the test's clock was fixed).
  const day = (iso?: string) => formatPolicyDate(Date.parse(iso ?? ""));
  assert.equal(day(preview.certificate.notAfter), day(issued.notAfter), "the validity shown is the one issued");
  assert.equal(day(preview.certificate.notBefore), day(issued.notBefore));
});
