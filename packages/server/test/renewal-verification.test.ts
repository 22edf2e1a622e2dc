import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import type { FastifyInstance } from "fastify";
import { fixedClock } from "@ukey/policy";
import { buildApp } from "../src/app.js";
import { openServerContext, type ServerContext } from "../src/server-context.js";
import type { OrderView } from "../src/renewal/renewal-order-service.js";
import { OrderApi } from "./support/order-api.js";
import { initialisedDataDir, keyArgs, opensslCsr, runUkeyServer, tempDir, type TempDir } from "./support/fixtures.js";

// Seed 000's verification (ID number, then a code sent to the phone on
// record) through the HTTP API, with the demo outbox as the phone; then a
// grep of the database and the logs for the secrets.
const idNumber = "31010419851231002X";
let t: TempDir;
let ctx: ServerContext;
let app: FastifyInstance;
let dataDir: string;
const logLines: string[] = [];
const clock = fixedClock(new Date());
const certs: Array<{ certId: string; notAfter: number; key: string }> = [];

before(async () => {
  t = tempDir();
  let env: Record<string, string>;
  ({ dataDir, env } = initialisedDataDir(t));
  const idFile = t.write("id", `${idNumber}\n`);
  const added = runUkeyServer(["holder", "add", "--data-dir", dataDir, "--id", "V1", "--name", "李四", "--id-type", "resident-id", "--id-number-file", idFile, "--phone", "15900000005", "--json"], env);
  assert.equal(added.status, 0, added.stdout + added.stderr);
  for (const name of ["a", "b", "c"]) {
    const { csr, key } = opensslCsr(t, name, keyArgs.p256);
    const r = runUkeyServer(["issue", "--data-dir", dataDir, "--holder", "V1", "--profile", "personal", "--csr", csr, "--json"], env);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const out = r.json<{ certId: string; notAfter: string }>();
    certs.push({ certId: out.certId, notAfter: Date.parse(out.notAfter), key });
  }
  ctx = await openServerContext(dataDir, env, clock);
  app = await buildApp(ctx, { logStream: { write: (l: string) => { logLines.push(l); } } });
  api = OrderApi.of(app);
  clock.set(new Date(certs[0]!.notAfter - 30 * 86_400_000));
});
after(async () => {
  await app?.close();
  await ctx?.close();
  t.cleanup();
});

let api: OrderApi;
const call = <T = OrderView>(url: string, payload?: unknown) => api.call<T>("POST", url, payload);

async function startAndProve(i: number): Promise<string> {
  const { certId, key } = certs[i]!;
  const { id, proved } = await api.startAndProve(certId, key);
  assert.equal(proved.body.nextStep, "id-number");
  assert.equal(proved.body.idType, "resident-id", "the ID type on record, so the holder is asked only for the number");
  return id;
}

function lastCodeSent(): string {
  const lines = readFileSync(`${dataDir}/outbox.jsonl`, "utf8").trim().split("\n");
  const text = (JSON.parse(lines[lines.length - 1]!) as { text: string }).text;
  return /\b(\d{6})\b/.exec(text)![1]!;
}

test("ID number, then a code to the phone on record, then verified", async () => {
  const id = await startAndProve(0);
  assert.equal((await call(`/api/v1/orders/${id}/identity`, { idType: "resident-id", idNumber: "310104198512310000" })).body.code, "IDENTITY_MISMATCH");
  const afterId = (await call(`/api/v1/orders/${id}/identity`, { idType: "resident-id", idNumber: idNumber.toLowerCase() })).body;
  assert.equal(afterId.nextStep, "one-time-code");
  const sent = (await call(`/api/v1/orders/${id}/code`)).body;
  assert.equal(sent.codeSentTo, "159*****005");
  assert.equal((await call(`/api/v1/orders/${id}/code`)).body.code, "CODE_RESEND_TOO_SOON");
  const code = lastCodeSent();
  const wrong = code === "000000" ? "000001" : "000000";
  assert.equal((await call(`/api/v1/orders/${id}/code/verify`, { code: wrong })).body.code, "CODE_INVALID");
  const verified = (await call(`/api/v1/orders/${id}/code/verify`, { code })).body;
  assert.equal(verified.state, "verified");
  assert.equal(verified.nextStep, "csr");
  assert.equal((await call(`/api/v1/orders/${id}/code/verify`, { code })).body.code, "ORDER_STEP_OUT_OF_ORDER", "a code works once");
});

test("a code expires after 5 minutes, and five wrong codes spend it", async () => {
  const id = await startAndProve(1);
  await call(`/api/v1/orders/${id}/identity`, { idType: "resident-id", idNumber });
  await call(`/api/v1/orders/${id}/code`);
  const first = lastCodeSent();
  clock.advance(5 * 60_000 + 1);
  assert.equal((await call(`/api/v1/orders/${id}/code/verify`, { code: first })).body.code, "CODE_EXPIRED");
  await call(`/api/v1/orders/${id}/code`);
  const second = lastCodeSent();
  const wrong = second === "123456" ? "654321" : "123456";
  const codes: string[] = [];
  for (let i = 0; i < 5; i++) codes.push((await call(`/api/v1/orders/${id}/code/verify`, { code: wrong })).body.code!);
  assert.deepEqual(codes, ["CODE_INVALID", "CODE_INVALID", "CODE_INVALID", "CODE_INVALID", "CODE_ATTEMPTS_EXCEEDED"]);
  // The order has failed: neither the right code nor a resent one brings more guesses.
  assert.equal((await call(`/api/v1/orders/${id}/code/verify`, { code: second })).body.code, "ORDER_STEP_OUT_OF_ORDER");
  assert.equal((await call(`/api/v1/orders/${id}/code`)).body.code, "ORDER_STEP_OUT_OF_ORDER");
  // And the certificate rests a day before a new order can start.
  const locked = await call("/api/v1/orders", { certId: certs[1]!.certId });
  assert.equal(locked.body.code, "RENEWAL_LOCKED");
  clock.advance(24 * 3_600_000 + 1);
  const again = await call("/api/v1/orders", { certId: certs[1]!.certId });
  assert.equal(again.status, 201, JSON.stringify(again.body));
});

test("issue 16 (3): wrong ID numbers say the tries left; the fifth ends the order with its own code and when the pause ends, which renewal-info shows", async () => {
  const id = await startAndProve(2);
  const wrong = { idType: "resident-id", idNumber: "310104198512310000" };
  type Problem = { code: string; params?: { triesLeft?: number; until?: string; attempts?: number }; message: { "zh-CN": string } };
  for (const left of [4, 3, 2, 1]) {
    const r = (await api.call<Problem>("POST", `/api/v1/orders/${id}/identity`, wrong)).body;
    assert.equal(r.code, "IDENTITY_MISMATCH");
    assert.equal(r.params?.triesLeft, left);
    assert.match(r.message["zh-CN"], new RegExp(`还可以再试 ${left} 次`));
  }
  const fifth = (await api.call<Problem>("POST", `/api/v1/orders/${id}/identity`, wrong)).body;
  assert.equal(fifth.code, "IDENTITY_ATTEMPTS_EXCEEDED", "no code was involved: not CODE_ATTEMPTS_EXCEEDED");
  const until = new Date(clock.now().getTime() + 24 * 3_600_000).toISOString();
  assert.equal(fifth.params?.until, until);
  assert.match(fifth.message["zh-CN"], /\d{4}-\d{2}-\d{2} \d{2}:\d{2}（北京时间）/, "the day the pause ends, in China time");
  assert.doesNotMatch(fifth.message["zh-CN"], /Z\b|T\d{2}:/);
  // The failed order says why and until when, so that a client resuming it names the same refusal.
  const failed = (await api.call<{ state: string; failure?: string; failedAttempts?: number; failedUntil?: string }>("GET", `/api/v1/orders/${id}`)).body;
  assert.deepEqual([failed.state, failed.failure, failed.failedAttempts, failed.failedUntil], ["failed", "IDENTITY_MISMATCH", 5, until]);
  const info = await app.inject({ method: "GET", url: `/api/v1/renewal-info/${certs[2]!.certId}?channel=web` });
  assert.equal(info.json<{ lockedUntil: string | null }>().lockedUntil, until);
  const locked = await api.call<Problem>("POST", "/api/v1/orders", { certId: certs[2]!.certId });
  assert.equal(locked.body.code, "RENEWAL_LOCKED");
  clock.advance(24 * 3_600_000 + 1);
  const later = await app.inject({ method: "GET", url: `/api/v1/renewal-info/${certs[2]!.certId}?channel=web` });
  assert.equal(later.json<{ lockedUntil: string | null }>().lockedUntil, null);
});

test("no ID number or one-time code in clear in any database file or log line", async () => {
  await ctx.store.db.query("SELECT 1");
  const codes = readFileSync(`${dataDir}/outbox.jsonl`, "utf8").trim().split("\n").map((l) => /\b(\d{6})\b/.exec((JSON.parse(l) as { text: string }).text)![1]!);
  assert.ok(codes.length >= 3);
  const dbFiles = readdirSync(`${dataDir}/db`).map((f) => readFileSync(`${dataDir}/db/${f}`).toString("latin1"));
  const logs = logLines.join("");
  assert.ok(logs.length > 0, "the app logged something");
  // A code counts only standing alone: timestamps are long runs of digits that may contain any six.
  for (const secret of [idNumber, idNumber.toLowerCase(), ...codes]) {
    const alone = new RegExp(`(?<![0-9])${secret}(?![0-9])`);
    for (const f of dbFiles) assert.ok(!alone.test(f), `database holds ${secret}`);
    assert.ok(!alone.test(logs), `logs hold ${secret}`);
  }
});
