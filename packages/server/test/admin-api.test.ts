import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import type { FastifyInstance, LightMyRequestResponse } from "fastify";
import { fixedClock } from "@ukey/policy";
import { buildApp } from "../src/app.js";
import { totpCodeAt } from "../src/admin/operator-credentials.js";
import { enrolmentServiceFor } from "../src/enrolment-service.js";
import { openServerContext, type ServerContext } from "../src/server-context.js";
import { addHolder, initialisedDataDir, keyArgs, opensslCsr, runUkeyServer, tempDir, type TempDir } from "./support/fixtures.js";

// The admin API through the real app (inject) on a real embedded database:
// sign-in, sessions, roles, every resource, the audit trail, OpenAPI.
let t: TempDir;
let ctx: ServerContext;
let app: FastifyInstance;
const clock = fixedClock(new Date("2026-06-01T02:00:00Z"));
const secrets: Record<string, string> = {};
const passwords: Record<string, string> = { root: "correct horse battery staple", olga: "olga's long passphrase 42", audrey: "audrey reads the audit log" };
let serial: string;

type Problem = { code: string; status: number };

function addOperator(dataDir: string, env: Record<string, string>, id: string, role: string) {
  const file = t.write(`${id}.password`, passwords[id] + "\n");
  const r = runUkeyServer(["operator", "add", "--data-dir", dataDir, "--id", id, "--role", role, "--password-file", file, "--json"], env);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const j = r.json<{ totpSecret: string; totpUri: string; operator: { id: string; role: string } }>();
  assert.match(j.totpUri, /^otpauth:\/\/totp\/.*secret=/);
  assert.deepEqual(j.operator.role, role);
  secrets[id] = j.totpSecret;
}

before(async () => {
  t = tempDir();
  const { dataDir, env } = initialisedDataDir(t);
  assert.equal(addHolder(t, dataDir, env, "H1").status, 0);
  const { csr } = opensslCsr(t, "h1", keyArgs.p256);
  const issued = runUkeyServer(["issue", "--data-dir", dataDir, "--holder", "H1", "--profile", "personal", "--csr", csr, "--json"], env);
  assert.equal(issued.status, 0, issued.stdout + issued.stderr);
  serial = issued.json<{ serial: string }>().serial;
  addOperator(dataDir, env, "root", "admin");
  addOperator(dataDir, env, "olga", "operator");
  addOperator(dataDir, env, "audrey", "auditor");
  ctx = await openServerContext(dataDir, env, clock);
  app = await buildApp(ctx);
});
after(async () => {
  await app?.close();
  await ctx?.close();
  t.cleanup();
});

/** Signs in at the next TOTP step (the clock moves 30 s, so no step is reused by accident). */
async function signIn(id: string, over: { password?: string; totp?: string } = {}): Promise<LightMyRequestResponse> {
  clock.advance(30_000);
  return app.inject({
    method: "POST", url: "/api/v1/admin/sign-in",
    payload: { operatorId: id, password: over.password ?? passwords[id], totp: over.totp ?? totpCodeAt(secrets[id]!, clock.now()) },
  });
}

async function tokenOf(id: string): Promise<string> {
  const r = await signIn(id);
  assert.equal(r.statusCode, 200, r.body);
  return r.json<{ token: string }>().token;
}

function call(token: string | undefined, method: "GET" | "POST" | "PATCH", url: string, payload?: unknown) {
  return app.inject({ method, url: `/api/v1/admin${url}`, headers: token ? { authorization: `Bearer ${token}` } : {}, ...(payload !== undefined ? { payload: payload as object } : {}) });
}

const problem = (r: LightMyRequestResponse) => r.json<Problem>();

test("signs in with password and TOTP; the token names the operator", async () => {
  const r = await signIn("root");
  assert.equal(r.statusCode, 200, r.body);
  const body = r.json<{ token: string; expiresAt: number; operator: Record<string, unknown> }>();
  assert.equal(body.expiresAt, clock.now().getTime() + 30 * 60_000);
  assert.deepEqual(Object.keys(body.operator).sort(), ["certificatePinned", "createdAt", "disabled", "id", "role", "updatedAt"]);
  const me = await call(body.token, "GET", "/me");
  assert.deepEqual(me.json(), { id: "root", role: "admin", expiresAt: body.expiresAt });
});

test("refuses sign-in with a wrong password, a wrong code, a replayed code or an unknown account", async () => {
  const cases: { name: string; attempt: () => Promise<LightMyRequestResponse> }[] = [
    { name: "wrong password", attempt: () => signIn("audrey", { password: "not the password at all" }) },
    { name: "wrong TOTP code", attempt: () => signIn("audrey", { totp: String((Number(totpCodeAt(secrets.audrey!, new Date(clock.now().getTime() + 30_000))) + 1) % 1_000_000).padStart(6, "0") }) },
    { name: "TOTP code not six digits", attempt: () => signIn("audrey", { totp: "12345" }) },
    { name: "unknown account", attempt: () => signIn("mallory", { password: "whatever it is", totp: "000000" }) },
    {
      name: "replayed TOTP step", attempt: async () => {
        const ok = await signIn("audrey");
        assert.equal(ok.statusCode, 200);
        const code = totpCodeAt(secrets.audrey!, clock.now());
        return app.inject({ method: "POST", url: "/api/v1/admin/sign-in", payload: { operatorId: "audrey", password: passwords.audrey, totp: code } });
      },
    },
  ];
  for (const c of cases) {
    const r = await c.attempt();
    assert.equal(r.statusCode, 401, `${c.name}: ${r.body}`);
    assert.equal(problem(r).code, "OPERATOR_SIGN_IN_FAILED", c.name);
  }
  // Good sign-in clears the count, so audrey is not paused by these.
  assert.equal((await signIn("audrey")).statusCode, 200);
  await ctx.refusals.flush();
  const refusals = (await ctx.store.audit.list(1, 1000)).filter((e) => e.action === "operator.sign-in-refused").map((e) => e.data.reason);
  for (const reason of ["wrong-password", "wrong-totp", "unknown-account", "totp-replayed"]) assert.ok(refusals.includes(reason), reason);
});

/** A sign-in from another client address (inject's remoteAddress). */
async function signInFrom(ip: string, id: string, over: { password?: string; totp?: string } = {}): Promise<LightMyRequestResponse> {
  clock.advance(30_000);
  return app.inject({
    method: "POST", url: "/api/v1/admin/sign-in", remoteAddress: ip,
    payload: { operatorId: id, password: over.password ?? passwords[id], totp: over.totp ?? (secrets[id] ? totpCodeAt(secrets[id], clock.now()) : "000000") },
  });
}

test("five failures pause that address's sign-ins to that account only, doubling after each further one; the operator signs in from elsewhere", async () => {
  const token = await tokenOf("root");
  const created = await call(token, "POST", "/operators", { id: "lucy", role: "auditor", password: "lucy's long passphrase" });
  assert.equal(created.statusCode, 201, created.body);
  secrets.lucy = created.json<{ totpSecret: string }>().totpSecret;
  passwords.lucy = "lucy's long passphrase";
  const attacker = "203.0.113.66";
  for (let i = 1; i <= 4; i++) assert.equal(problem(await signInFrom(attacker, "lucy", { password: "wrong password number " + i })).code, "OPERATOR_SIGN_IN_FAILED");
  const fifth = await signInFrom(attacker, "lucy", { password: "wrong password number 5" });
  assert.deepEqual([fifth.statusCode, problem(fifth).code, fifth.headers["retry-after"]], [429, "OPERATOR_SIGN_IN_BACKED_OFF", "60"]);
  const right = await signInFrom(attacker, "lucy");
  assert.deepEqual([right.statusCode, problem(right).code], [429, "OPERATOR_SIGN_IN_BACKED_OFF"], "even the right password waits at that address");
  // Lucy's own address is not paused by what the attacker did.
  assert.equal((await signInFrom("198.51.100.7", "lucy")).statusCode, 200);
  clock.advance(60_000);
  const sixth = await signInFrom(attacker, "lucy", { password: "wrong password number 6" });
  assert.deepEqual([problem(sixth).code, sixth.headers["retry-after"]], ["OPERATOR_SIGN_IN_BACKED_OFF", "120"], "the pause doubles");
  clock.advance(120_000);
  assert.equal((await signInFrom(attacker, "lucy")).statusCode, 200, "the right password works once the pause is over");
});

test("an id that names no account is paused exactly like an existing one, and audited only as a keyed hash", async () => {
  const attacker = "203.0.113.67";
  const typedPassword = "a password typed into the id field";
  const transcript = async (id: string) => {
    const out: string[] = [];
    for (let i = 0; i < 7; i++) {
      const r = await signInFrom(attacker, id, { password: "wrong", totp: "000000" });
      out.push(`${r.statusCode} ${problem(r).code} ${r.headers["retry-after"] ?? "-"}`);
    }
    return out;
  };
  const known = await transcript("audrey");
  const unknown = await transcript(typedPassword.slice(0, 64));
  assert.deepEqual(unknown, known);
  await ctx.refusals.flush();
  const audit = await ctx.store.audit.list(1, 100_000);
  assert.ok(!JSON.stringify(audit).includes(typedPassword), "what was typed as the id is nowhere in the audit log");
  assert.ok(audit.some((e) => e.action === "operator.sign-in-refused" && /^id-hmac:[0-9a-f]{40}$/.test(e.subjectId) && e.data.ip === attacker));
  assert.equal((await signIn("audrey")).statusCode, 200, "audrey signs in from her own address all along");
});

test("an admin lifts an operator's pauses, audited; an operator may not; the list shows who is paused", async () => {
  const attacker = "203.0.113.68";
  // Seven failures: a four-minute pause, longer than the sign-ins below take on the test clock.
  for (let i = 0; i < 7; i++) await signInFrom(attacker, "olga", { password: "wrong", totp: "000000" });
  assert.equal(problem(await signInFrom(attacker, "olga")).code, "OPERATOR_SIGN_IN_BACKED_OFF");
  const admin = await tokenOf("root");
  const list = (await call(admin, "GET", "/operators")).json<{ operators: Array<{ id: string; signInPaused: { clients: number; until: number } | null }> }>().operators;
  assert.equal(list.find((o) => o.id === "olga")?.signInPaused?.clients, 1);
  assert.equal(list.find((o) => o.id === "root")?.signInPaused, null);
  const byOperator = await call(await tokenOf("olga"), "POST", "/operators/olga/unlock");
  assert.deepEqual([byOperator.statusCode, problem(byOperator).code], [403, "ROLE_FORBIDDEN"]);
  assert.equal(problem(await call(admin, "POST", "/operators/nobody/unlock")).code, "RECORD_NOT_FOUND");
  const unlocked = await call(admin, "POST", "/operators/olga/unlock");
  assert.equal(unlocked.statusCode, 200, unlocked.body);
  assert.equal(unlocked.json<{ clientsCleared: number }>().clientsCleared, 1);
  assert.equal((await signInFrom(attacker, "olga")).statusCode, 200, "the address may sign in again at once");
  const audit = await ctx.store.audit.list(1, 100_000);
  assert.ok(audit.some((e) => e.action === "operator.unlocked" && e.actor === "operator:root" && e.subjectId === "olga" && e.data.clientsCleared === 1));
});

test("an operator lifts the renewal pause of a certificate, audited; an auditor may not", async () => {
  const failedAt = clock.now().getTime() - 1000;
  const c = (await ctx.store.certificates.get(serial))!;
  await ctx.store.orders.insert({
    id: "failed-order-1", certificateSerial: serial, holderId: c.holderId, profileId: c.profileId, state: "failed", channel: "web", newSerial: null, data: {},
    createdAt: failedAt, updatedAt: failedAt,
  });
  const start = () => app.inject({ method: "POST", url: "/api/v1/orders", payload: { serial } });
  assert.equal(problem(await start()).code, "RENEWAL_LOCKED");
  // Issue 16: the lists say where a pause runs (the console offers "解除更新暂停" there only).
  const audrey = await tokenOf("audrey");
  const pausedUntil = async () => ({
    cert: (await call(audrey, "GET", `/certificates?holderId=${c.holderId}`)).json<{ certificates: Array<{ serial: string; renewalLockedUntil: number | null }> }>().certificates.find((x) => x.serial === serial)!.renewalLockedUntil,
    order: (await call(audrey, "GET", "/orders?state=failed")).json<{ orders: Array<{ id: string; renewalLockedUntil: number | null }> }>().orders.find((o) => o.id === "failed-order-1")!.renewalLockedUntil,
  });
  assert.deepEqual(await pausedUntil(), { cert: failedAt + 24 * 3_600_000, order: failedAt + 24 * 3_600_000 });
  const auditor = await call(audrey, "POST", `/certificates/${serial}/renewal-unlock`);
  assert.deepEqual([auditor.statusCode, problem(auditor).code], [403, "ROLE_FORBIDDEN"]);
  assert.equal(problem(await call(await tokenOf("olga"), "POST", "/certificates/00ff/renewal-unlock")).code, "CERT_NOT_FOUND");
  const r = await call(await tokenOf("olga"), "POST", `/certificates/${serial}/renewal-unlock`);
  assert.equal(r.statusCode, 200, r.body);
  assert.equal(r.json<{ lastFailureAt: number }>().lastFailureAt, failedAt);
  assert.notEqual(problem(await start()).code, "RENEWAL_LOCKED");
  assert.deepEqual(await pausedUntil(), { cert: null, order: null }, "lifted: nothing left to unlock");
  const audit = await ctx.store.audit.list(1, 100_000);
  assert.ok(audit.some((e) => e.action === "certificate.renewal-unlocked" && e.actor === "operator:olga" && e.subjectId === serial));
});

test("refuses a missing, forged, tampered or expired token", async () => {
  const token = await tokenOf("olga");
  const [prefix, body, sig] = token.split(".") as [string, string, string];
  const claims = JSON.parse(Buffer.from(body, "base64url").toString()) as Record<string, unknown>;
  const promoted = Buffer.from(JSON.stringify({ ...claims, role: "admin", sub: "root" })).toString("base64url");
  const cases: { name: string; token: string | undefined }[] = [
    { name: "none", token: undefined },
    { name: "garbage", token: "not-a-token" },
    { name: "signature changed", token: `${prefix}.${body}.${sig.slice(0, -2)}${sig.endsWith("AA") ? "AB" : "AA"}` },
    { name: "claims changed to root", token: `${prefix}.${promoted}.${sig}` },
  ];
  for (const c of cases) {
    const r = await call(c.token, "GET", "/holders");
    assert.deepEqual([r.statusCode, problem(r).code], [401, "SESSION_INVALID"], c.name);
  }
  assert.equal((await call(token, "GET", "/holders")).statusCode, 200);
  clock.advance(30 * 60_000);
  const expired = await call(token, "GET", "/holders");
  assert.deepEqual([expired.statusCode, problem(expired).code], [401, "SESSION_INVALID"]);
});

test("roles: auditors read, operators also act on holders, enrolments and certificates, admins also manage operators", async () => {
  const tokens = { auditor: await tokenOf("audrey"), operator: await tokenOf("olga"), admin: await tokenOf("root") };
  let n = 0;
  const cases: { name: string; method: "GET" | "POST" | "PATCH"; url: () => string; body?: () => unknown; weakest: "auditor" | "operator" | "admin"; ok: number }[] = [
    { name: "list holders", method: "GET", url: () => "/holders", weakest: "auditor", ok: 200 },
    { name: "get holder", method: "GET", url: () => "/holders/H1", weakest: "auditor", ok: 200 },
    { name: "search holder by ID number", method: "POST", url: () => "/holders/search", body: () => ({ idType: "resident-id", idNumber: "11010119900307123x" }), weakest: "auditor", ok: 200 },
    { name: "search certificates", method: "GET", url: () => "/certificates?holderId=H1", weakest: "auditor", ok: 200 },
    { name: "list enrolments", method: "GET", url: () => "/enrolments", weakest: "auditor", ok: 200 },
    { name: "list orders", method: "GET", url: () => "/orders?state=completed", weakest: "auditor", ok: 200 },
    { name: "list outbox", method: "GET", url: () => "/outbox", weakest: "auditor", ok: 200 },
    { name: "read audit log", method: "GET", url: () => "/audit?limit=5", weakest: "auditor", ok: 200 },
    { name: "verify audit log", method: "GET", url: () => "/audit/verify", weakest: "auditor", ok: 200 },
    { name: "create holder", method: "POST", url: () => "/holders", body: () => ({ id: `R${++n}`, name: "李四", idType: "resident-id", idNumber: `11010119800101${String(1000 + n)}` }), weakest: "operator", ok: 201 },
    { name: "create enrolment", method: "POST", url: () => "/enrolments", body: () => ({ holderId: "H1", profileId: "personal" }), weakest: "operator", ok: 201 },
    { name: "list operators", method: "GET", url: () => "/operators", weakest: "admin", ok: 200 },
    { name: "create operator", method: "POST", url: () => "/operators", body: () => ({ id: `op${++n}`, role: "auditor", password: "a long enough passphrase" }), weakest: "admin", ok: 201 },
  ];
  const rank = { auditor: 0, operator: 1, admin: 2 };
  for (const c of cases) {
    for (const [role, token] of Object.entries(tokens) as ["auditor" | "operator" | "admin", string][]) {
      const r = await call(token, c.method, c.url(), c.body?.());
      const allowed = rank[role] >= rank[c.weakest];
      assert.equal(r.statusCode, allowed ? c.ok : 403, `${c.name} as ${role}: ${r.body}`);
      if (!allowed) assert.equal(problem(r).code, "ROLE_FORBIDDEN");
    }
  }
  await ctx.refusals.flush();
  const refused = (await ctx.store.audit.list(1, 10_000)).filter((e) => e.action === "admin.refused" && e.data.reason === "role");
  assert.ok(refused.some((e) => e.actor === "operator:audrey" && e.subjectId === "POST /api/v1/admin/holders"));
  assert.ok(refused.some((e) => e.actor === "operator:olga" && e.subjectId === "GET /api/v1/admin/operators"));
});

test("a demoted operator loses rights at once and a disabled one loses the session", async () => {
  const admin = await tokenOf("root");
  const created = await call(admin, "POST", "/operators", { id: "dora", role: "operator", password: "dora's long passphrase" });
  secrets.dora = created.json<{ totpSecret: string }>().totpSecret;
  passwords.dora = "dora's long passphrase";
  const dora = await tokenOf("dora");
  assert.equal((await call(dora, "POST", "/enrolments", { holderId: "H1", profileId: "personal" })).statusCode, 201);
  const demoted = await call(admin, "PATCH", "/operators/dora", { role: "auditor" });
  assert.equal(demoted.json<{ role: string }>().role, "auditor");
  assert.equal(problem(await call(dora, "POST", "/enrolments", { holderId: "H1", profileId: "personal" })).code, "ROLE_FORBIDDEN");
  assert.equal((await call(admin, "PATCH", "/operators/dora", { disabled: true })).statusCode, 200);
  assert.equal(problem(await call(dora, "GET", "/holders")).code, "SESSION_INVALID");
  assert.equal(problem(await signIn("dora")).code, "OPERATOR_SIGN_IN_FAILED");
  const missing = await call(admin, "PATCH", "/operators/nobody", { role: "auditor" });
  assert.deepEqual([missing.statusCode, problem(missing).code], [404, "RECORD_NOT_FOUND"]);
});

test("holders: created with the ID number hashed and masked, found by the number, never shown whole", async () => {
  const token = await tokenOf("olga");
  const created = await call(token, "POST", "/holders", { id: "W9", name: "王五", idType: "resident-id", idNumber: "370101199001011234", phone: "15912345675" });
  assert.equal(created.statusCode, 201, created.body);
  assert.deepEqual(created.json(), { id: "W9", kind: "person", name: "王五", idType: "resident-id", idMasked: "3701**********1234", phone: "15912345675", email: null, organisationId: null, createdAt: clock.now().getTime() });
  const found = await call(token, "POST", "/holders/search", { idType: "resident-id", idNumber: "3701 0119 9001 0112 34" });
  assert.deepEqual(found.json<{ holders: { id: string }[] }>().holders.map((h) => h.id), ["W9"]);
  const none = await call(token, "POST", "/holders/search", { idType: "passport", idNumber: "370101199001011234" });
  assert.deepEqual(none.json(), { holders: [] });
  const dup = await call(token, "POST", "/holders", { id: "W9", name: "x", idType: "resident-id", idNumber: "370101199001011234" });
  assert.deepEqual([dup.statusCode, problem(dup).code], [409, "RECORD_DUPLICATE"]);
  const missing = await call(token, "GET", "/holders/nobody");
  assert.deepEqual([missing.statusCode, problem(missing).code], [404, "HOLDER_NOT_FOUND"]);
});

test("certificates: searched by holder, status, subject and expiry; revoked with a reason", async () => {
  const token = await tokenOf("olga");
  const search = async (q: string) => (await call(token, "GET", `/certificates?${q}`)).json<{ certificates: { serial: string }[] }>().certificates.map((c) => c.serial);
  assert.deepEqual(await search("holderId=H1"), [serial]);
  assert.deepEqual(await search("status=active&subject=Holder%20H1"), [serial]);
  assert.deepEqual(await search(`expiringBefore=${encodeURIComponent(new Date(Date.now() + 20 * 365 * 86_400_000).toISOString())}&holderId=H1`), [serial]);
  assert.deepEqual(await search("expiringBefore=2000-01-01T00:00:00Z&holderId=H1"), []);
  const one = await call(token, "GET", `/certificates/${serial}`);
  assert.match(one.json<{ pem: string }>().pem, /^-----BEGIN CERTIFICATE-----/);
  const bad = await call(token, "POST", `/certificates/${serial}/revoke`, { reason: "because" });
  assert.deepEqual([bad.statusCode, problem(bad).code], [400, "REQUEST_INVALID"]);
  const revoked = await call(token, "POST", `/certificates/${serial}/revoke`, { reason: "keyCompromise" });
  assert.equal(revoked.statusCode, 200, revoked.body);
  assert.deepEqual([revoked.json<{ status: string }>().status, revoked.json<{ revocationReason: string }>().revocationReason], ["revoked", "keyCompromise"]);
  const again = await call(token, "POST", `/certificates/${serial}/revoke`, { reason: "keyCompromise" });
  assert.deepEqual([again.statusCode, problem(again).code], [409, "CERT_ALREADY_REVOKED"]);
  const entry = (await ctx.store.audit.list(1, 10_000)).find((e) => e.action === "certificate.revoked" && e.subjectId === serial);
  assert.equal(entry?.actor, "operator:olga");
});

test("enrolments: the code is in the creating answer only; it redeems once; revoked ones refuse it", async () => {
  const token = await tokenOf("olga");
  const created = await call(token, "POST", "/enrolments", { holderId: "H1", profileId: "personal", ttlDays: 3 });
  assert.equal(created.statusCode, 201, created.body);
  assert.equal(created.headers["cache-control"], "no-store");
  const c = created.json<{ enrolment: { id: string; expiresAt: number }; referenceNumber: string; authorizationCode: string }>();
  assert.equal(c.enrolment.expiresAt, clock.now().getTime() + 3 * 86_400_000);
  const listed = await call(token, "GET", "/enrolments?holderId=H1&status=open");
  assert.ok(listed.body.includes(c.enrolment.id) && !listed.body.includes(c.authorizationCode) && !listed.body.includes("hmac"));
  const got = await call(token, "GET", `/enrolments/${c.enrolment.id}`);
  assert.equal(got.json<{ referenceNumber: string }>().referenceNumber, c.referenceNumber);
  const used = await enrolmentServiceFor(ctx).redeem(c.referenceNumber, c.authorizationCode, "holder:H1");
  assert.equal(used.status, "used");

  const second = (await call(token, "POST", "/enrolments", { holderId: "H1", profileId: "personal" })).json<{ enrolment: { id: string }; referenceNumber: string; authorizationCode: string }>();
  const revoked = await call(token, "POST", `/enrolments/${second.enrolment.id}/revoke`);
  assert.equal(revoked.json<{ status: string }>().status, "revoked");
  await assert.rejects(enrolmentServiceFor(ctx).redeem(second.referenceNumber, second.authorizationCode, "holder:H1"), /CODE_REVOKED/);
  const twice = await call(token, "POST", `/enrolments/${second.enrolment.id}/revoke`);
  assert.deepEqual([twice.statusCode, problem(twice).code], [409, "ENROLMENT_NOT_OPEN"]);
  const unknownProfile = await call(token, "POST", "/enrolments", { holderId: "H1", profileId: "nope" });
  assert.deepEqual([unknownProfile.statusCode, problem(unknownProfile).code], [404, "PROFILE_NOT_FOUND"]);
});

test("orders and outbox list; an unknown order is not found", async () => {
  const token = await tokenOf("audrey");
  const orders = await call(token, "GET", "/orders");
  assert.deepEqual(Object.keys(orders.json()), ["orders"]);
  const missing = await call(token, "GET", "/orders/nope");
  assert.deepEqual([missing.statusCode, problem(missing).code], [404, "RECORD_NOT_FOUND"]);
  assert.deepEqual(Object.keys((await call(token, "GET", "/outbox?status=sent")).json()), ["messages"]);
});

test("bad bodies are refused before anything happens: unknown fields, wrong types, too large", async () => {
  const token = await tokenOf("olga");
  const cases: { name: string; payload: string; status: number; code: string }[] = [
    { name: "unknown field", payload: JSON.stringify({ holderId: "H1", profileId: "personal", code: "mine" }), status: 400, code: "REQUEST_INVALID" },
    { name: "ttl as text", payload: JSON.stringify({ holderId: "H1", profileId: "personal", ttlDays: "many" }), status: 400, code: "REQUEST_INVALID" },
    { name: "not JSON", payload: "{holderId", status: 400, code: "REQUEST_INVALID" },
    { name: "too large", payload: JSON.stringify({ holderId: "H".repeat(20_000), profileId: "personal" }), status: 413, code: "REQUEST_TOO_LARGE" },
  ];
  const before = (await ctx.store.enrolments.list({ limit: 1000 })).length;
  for (const c of cases) {
    const r = await app.inject({ method: "POST", url: "/api/v1/admin/enrolments", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, payload: c.payload });
    assert.deepEqual([r.statusCode, problem(r).code], [c.status, c.code], `${c.name}: ${r.body}`);
  }
  assert.equal((await ctx.store.enrolments.list({ limit: 1000 })).length, before);
});

test("every admin action is in the audit log under operator:<id>, and the chain verifies", async () => {
  const token = await tokenOf("root");
  await ctx.refusals.flush();
  const page = await call(token, "GET", "/audit?fromSeq=1&limit=1000");
  const entries = page.json<{ entries: { actor: string; action: string }[] }>().entries;
  const by = (actor: string, action: string) => entries.some((e) => e.actor === actor && e.action === action);
  const expected: [string, string][] = [
    ["cli", "operator.created"], ["operator:root", "operator.created"], ["operator:root", "operator.signed-in"], ["operator:olga", "holder.created"],
    ["operator:olga", "enrolment.created"], ["operator:olga", "enrolment.revoked"], ["operator:olga", "certificate.revoked"],
    ["operator:audrey", "admin.viewed"], ["operator:audrey", "operator.sign-in-refused"], ["operator:lucy", "operator.sign-in-refused"],
    ["operator:audrey", "admin.refused"], ["unknown", "admin.refused"],
  ];
  for (const [actor, action] of expected) assert.ok(by(actor, action), `${actor} ${action}`);
  const verified = await call(token, "GET", "/audit/verify");
  assert.equal(verified.json<{ ok: boolean }>().ok, true);
});

test("the OpenAPI document is OpenAPI 3 and lists the admin, renewal and PKI paths", async () => {
  const r = await app.inject({ method: "GET", url: "/api/v1/openapi.json" });
  assert.equal(r.statusCode, 200);
  const doc = JSON.parse(r.body) as { openapi: string; paths: Record<string, Record<string, { tags?: string[]; security?: unknown[] }>>; components: { securitySchemes: Record<string, unknown> } };
  assert.match(doc.openapi, /^3\.\d+\.\d+$/);
  for (const path of [
    "/api/v1/admin/sign-in", "/api/v1/admin/holders", "/api/v1/admin/holders/{id}", "/api/v1/admin/certificates/{serial}/revoke",
    "/api/v1/admin/enrolments", "/api/v1/admin/enrolments/{id}/revoke", "/api/v1/admin/orders", "/api/v1/admin/outbox", "/api/v1/admin/audit",
    "/api/v1/admin/operators", "/api/v1/renewal-info/{certId}", "/api/v1/key-vendors", "/ocsp", "/crl/issuing.crl", "/ca/root.pem",
  ]) assert.ok(doc.paths[path], `missing ${path}`);
  // Every template parameter is declared by every operation of its path.
  for (const [path, ops] of Object.entries(doc.paths)) {
    const names = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]).sort();
    for (const [method, op] of Object.entries(ops as Record<string, { parameters?: { in: string; name: string }[] }>)) {
      assert.deepEqual((op.parameters ?? []).filter((p) => p.in === "path").map((p) => p.name).sort(), names, `${method} ${path}`);
    }
  }
  assert.ok(doc.paths["/ocsp/{rest}"]);
  assert.deepEqual(doc.paths["/api/v1/admin/enrolments"]!.post!.security, [{ operatorSession: [] }]);
  assert.ok(doc.components.securitySchemes.operatorSession);
  assert.equal(doc.paths["/api/v1/openapi.json"], undefined);
});
