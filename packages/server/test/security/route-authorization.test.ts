import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import type { FastifyInstance, LightMyRequestResponse } from "fastify";
import { fixedClock, type ErrorCode } from "@ukey/policy";
import type { OperatorRole } from "@ukey/store";
import { buildApp } from "../../src/app.js";
import { openServerContext, type ServerContext } from "../../src/server-context.js";
import { operatorServiceFor } from "../../src/admin/operator-service.js";
import { raKeyFiles, readOrCreateKeyFile } from "../../src/admin/secret-key-file.js";
import { signSessionToken } from "../../src/admin/session-token.js";
import { holderSessionKeyFile, signHolderSession } from "../../src/holder-session/holder-session-token.js";
import { initialisedDataDir, keyArgs, opensslCsr, runUkeyServer, tempDir, type TempDir } from "../support/fixtures.js";
import { OrderApi } from "../support/order-api.js";

// Every route of the OpenAPI document (plain HTTP and the client-certificate
// listener, where EST lives), driven as each actor of docs/security.md that
// is not allowed to use it: nobody at all, someone holding a forged or
// another kind's token, an operator of a lower role, someone holding the
// credential of another order, a hostile web page. Each is refused with its
// catalogue code, and nothing but counted refusals reaches the audit log.
// A route this file does not name fails the first test: a new route needs
// its authorization case here before it lands.

/** Who may call a route, and what the answer to anyone else is. */
type Access =
  | { kind: "public"; why: string }
  | { kind: "possession"; why: string }
  | { kind: "order-credential" }
  | { kind: "step-up-link"; why: string }
  | { kind: "codes"; why: string }
  | { kind: "sign-in"; why: string }
  | { kind: "client-certificate"; why: string }
  | { kind: "holder-session" }
  | { kind: "operator"; role: OperatorRole };

/**
 * The routes that take no session, credential or role in the OpenAPI
 * document: each with why it is open, or what authorizes it instead.
 * Routes with `security` in the document are classed by it.
 */
const unauthenticated: Record<string, Access> = {
  "GET /healthz": { kind: "public", why: "liveness for load balancers; says only that the process answers" },
  "GET /readyz": { kind: "public", why: "readiness; says only whether storage works, with a catalogue code" },
  "GET /metrics": { kind: "public", why: "Prometheus; counts only, and an operator restricts it with metrics.bearerTokenFile or metrics.listeners (metrics-access.test.ts)" },
  "GET /ca/root.cer": { kind: "public", why: "CA certificates are public by nature" },
  "GET /ca/root.pem": { kind: "public", why: "CA certificates are public by nature" },
  "GET /ca/issuing.cer": { kind: "public", why: "CA certificates are public by nature" },
  "GET /ca/issuing.pem": { kind: "public", why: "CA certificates are public by nature" },
  "GET /crl/root.crl": { kind: "public", why: "CRLs are public (RFC 5280)" },
  "GET /crl/root.pem": { kind: "public", why: "CRLs are public (RFC 5280)" },
  "GET /crl/issuing.crl": { kind: "public", why: "CRLs are public (RFC 5280)" },
  "GET /crl/issuing.pem": { kind: "public", why: "CRLs are public (RFC 5280)" },
  "GET /crl/issuing-delta.crl": { kind: "public", why: "delta CRLs are public (RFC 5280 5.2.4); 404 while ca.deltaCrl is off" },
  "GET /crl/issuing-delta.pem": { kind: "public", why: "delta CRLs are public (RFC 5280 5.2.4); 404 while ca.deltaCrl is off" },
  "GET /crl/issuing/{file}": { kind: "public", why: "the shards of a partitioned CRL and their deltas are public (RFC 5280)" },
  "POST /ocsp": { kind: "public", why: "OCSP is public (RFC 6960); relying parties ask at every login" },
  "GET /ocsp/{rest}": { kind: "public", why: "OCSP is public (RFC 6960)" },
  "GET /downloads/{file}": { kind: "public", why: "published installers and the institution's signed agent configuration; the agent verifies what it uses against the key its installer brought (distribution.test.ts)" },
  "GET /api/v1/key-vendors": { kind: "public", why: "the institution's vendor table, no personal data" },
  "GET /api/v1/renewal-info/{certId}": { kind: "public", why: "renewal advice (dates a relying party already reads in the certificate), no name or order" },
  "GET /api/v1/login-check/{certId}": { kind: "public", why: "seed 004's login rule: allowed or not and from when, what OCSP and the certificate's own dates already say; no name, order or pause" },
  "GET /.well-known/est/renewal-info/{certId}": { kind: "public", why: "renewal advice for EST clients" },
  "POST /api/v1/orders": { kind: "public", why: "starts or finds the order: answers its id and the proof it takes, nothing that acts (order-takeover.test.ts)" },
  "POST /api/v1/orders/{id}/challenge": { kind: "public", why: "a fresh challenge and whether the order is open; challenges are not stored, so asking spoils nothing" },
  "POST /api/v1/orders/{id}/possession": { kind: "possession", why: "the proof of possession itself: a signature by the certificate's key, or the certificate as TLS client certificate" },
  "POST /api/v1/step-up/{link}": { kind: "step-up-link", why: "the one-time link's token, made by a step that needed the order credential" },
  "POST /api/v1/downloads": { kind: "codes", why: "the reference number and authorization code the institution gave the holder" },
  "POST /api/v1/downloads/check": { kind: "codes", why: "the same two codes, checked before the holder's key is used; a wrong one counts as in a download" },
  "POST /api/v1/admin/sign-in": { kind: "sign-in", why: "password and TOTP code" },
  "POST /api/v1/admin/sign-in/certificate": { kind: "client-certificate", why: "a client certificate pinned on an operator account" },
  "POST /api/v1/holder/sign-in": { kind: "sign-in", why: "sends a code to the phone on record; answers the same whether the number exists or not" },
  "POST /api/v1/holder/sign-in/verify": { kind: "sign-in", why: "the code sent to the phone on record" },
  "POST /api/v1/redownload": { kind: "sign-in", why: "customer number and ID number; sends a code only to the phone on record, and answers the same whatever is typed (self-service-redownload.test.ts)" },
  "POST /api/v1/redownload/verify": { kind: "sign-in", why: "the SMS code sent after the ID number matched; answers the two codes of a download to whoever holds it (self-service-redownload.test.ts)" },
  "GET /.well-known/est/cacerts": { kind: "public", why: "EST: the CA certificates" },
  "GET /.well-known/est/csrattrs": { kind: "public", why: "EST: the CSR attributes (algorithms), no personal data" },
  "POST /.well-known/est/simpleenroll": { kind: "codes", why: "EST: HTTP Basic with the reference number and authorization code" },
  "POST /.well-known/est/simplereenroll": { kind: "client-certificate", why: "EST: the current certificate as TLS client certificate" },
};

/** Sample bodies that pass each route's schema, so that what refuses the request is its authorization, not its shape. */
const bodies: Record<string, unknown> = {
  "POST /api/v1/orders/{id}/identity": { idType: "resident-id", idNumber: "110101190001010000" },
  "POST /api/v1/orders/{id}/code/verify": { code: "123456" },
  "POST /api/v1/orders/{id}/csr": { csr: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n" },
  "POST /api/v1/step-up/{link}": { idType: "resident-id", idNumber: "110101190001010000" },
  // The CSR is checked before the codes (a malformed one spends no attempt): a real one, filled in before the tests.
  "POST /api/v1/downloads": { referenceNumber: "1234567897", authorizationCode: "ABCD-EFGH-JKLM", csr: "" },
  "POST /api/v1/downloads/check": { referenceNumber: "1234567897", authorizationCode: "ABCD-EFGH-JKLM" },
  "POST /api/v1/admin/sign-in": { operatorId: "admin1", password: "not the password at all", totp: "000000" },
  "POST /api/v1/holder/sign-in/verify": { challengeId: "00000000-0000-0000-0000-000000000000", code: "123456" },
  "POST /api/v1/redownload": { holderId: "H1", idNumber: "11010119900307123X" },
  "POST /api/v1/redownload/verify": { challengeId: "00000000-0000-0000-0000-000000000000", code: "123456" },
  "POST /api/v1/admin/operators": { id: "newcomer", role: "auditor", password: "a long enough passphrase" },
  "PATCH /api/v1/admin/operators/{id}": { disabled: true },
  "POST /api/v1/admin/holders": { id: "NEW1", name: "新持有人", idType: "resident-id", idNumber: "110101199001011234" },
  "POST /api/v1/admin/holders/search": { idType: "resident-id", idNumber: "11010119900307123X" },
  "POST /api/v1/admin/certificates/{serial}/revoke": { reason: "keyCompromise" },
  "POST /api/v1/admin/enrolments": { holderId: "H1", profileId: "personal" },
  "POST /api/v1/admin/kmc-recoveries": { holderId: "H1", profileId: "personal", reason: "lost key" },
  "POST /api/v1/admin/kmc-recoveries/{id}/reject": { note: "no" },
  "POST /api/v1/holder/bell/read": { ids: ["x"] },
  "PUT /api/v1/holder/preferences": { sms: false, email: false },
  "PUT /api/v1/admin/holders/{id}/preferences": { sms: false, email: false },
};

const roles: OperatorRole[] = ["auditor", "operator", "admin"];
const day = 86_400_000;
let t: TempDir;
let ctx: ServerContext;
let http: FastifyInstance;
let clientCert: FastifyInstance;
const clock = fixedClock(new Date());
let victim: { serial: string; certId: string; key: string; order: string };
let other: { order: string; credential: string };
/** A real PKCS#10 in base64 (RFC 8951): EST checks the request before the codes. */
let estCsr: string;
const tokens: Record<string, string> = {};

before(async () => {
  t = tempDir();
  const { dataDir, env } = initialisedDataDir(t);
  const cfg = JSON.parse(readFileSync(`${dataDir}/config.json`, "utf8"));
  cfg.profiles.push({ id: "gov", preset: "gov-supervision", keyAlgorithms: ["rsa2048", "p256"], certificates: null });
  // The suite sends hundreds of refused requests from one address: the per-client limits are tested elsewhere (rate-limits.test.ts).
  cfg.rateLimits = { enabled: false };
  writeFileSync(`${dataDir}/config.json`, JSON.stringify(cfg, null, 2));
  const idFile = t.write("id", "11010119900307123X\n");
  const issued: Array<{ serial: string; certId: string; key: string; notAfter: number }> = [];
  for (const h of ["H1", "H2"]) {
    assert.equal(runUkeyServer(["holder", "add", "--data-dir", dataDir, "--id", h, "--name", `持有人 ${h}`, "--id-type", "resident-id", "--id-number-file", idFile, "--phone", "15900000005", "--json"], env).status, 0);
    const { csr, key } = opensslCsr(t, h, keyArgs.p256);
    const r = runUkeyServer(["issue", "--data-dir", dataDir, "--holder", h, "--profile", "gov", "--csr", csr, "--json"], env);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const out = r.json<{ serial: string; certId: string; notAfter: string }>();
    issued.push({ serial: out.serial, certId: out.certId, key, notAfter: Date.parse(out.notAfter) });
  }
  const downloadCsr = readFileSync(opensslCsr(t, "download", keyArgs.p256, "/").csr, "utf8");
  (bodies["POST /api/v1/downloads"] as { csr: string }).csr = downloadCsr;
  estCsr = downloadCsr.replace(/-----[^-]+-----|\s/g, "");
  ctx = await openServerContext(dataDir, env, clock);
  clock.set(new Date(issued[0]!.notAfter - 30 * day));
  http = await buildApp(ctx);
  clientCert = await buildApp(ctx, { https: { key: readFileSync(ctx.layout.tlsKey), cert: readFileSync(ctx.layout.tlsCert) }, clientCertificates: true });
  const api = OrderApi.of(http);
  // The victim's order is open and waits for its CSR; the attacker holds a credential of an order of their own.
  victim = { ...issued[0]!, order: (await api.startAndProve(issued[0]!.certId, issued[0]!.key)).id };
  const mine = await api.startAndProve(issued[1]!.certId, issued[1]!.key);
  other = { order: mine.id, credential: mine.proved.body.credential!.token };
  const operators = operatorServiceFor(ctx);
  const sessionKey = readOrCreateKeyFile(raKeyFiles(ctx.layout).sessionHmac);
  const at = clock.now().getTime();
  for (const role of roles) {
    await operators.create({ id: `${role}1`, role, password: `${role} has a long passphrase`, actor: "test" });
    tokens[role] = signSessionToken(sessionKey, { sub: `${role}1`, role, iat: at, exp: at + 3_600_000, amr: "pwd+otp" });
  }
  tokens.holder = signHolderSession(readOrCreateKeyFile(holderSessionKeyFile(ctx.layout)), { sub: "H2", kind: "person", iat: at, exp: at + 1_800_000 });
});
after(async () => {
  await http?.close();
  await clientCert?.close();
  await ctx?.close();
  t?.cleanup();
});

/** Every operation of the OpenAPI documents of both listeners, as "METHOD /path/{param}", with its security and description. */
async function documentedRoutes(): Promise<Map<string, { app: FastifyInstance; security: string[]; description: string }>> {
  const routes = new Map<string, { app: FastifyInstance; security: string[]; description: string }>();
  for (const app of [http, clientCert]) {
    const doc = (await app.inject({ method: "GET", url: "/api/v1/openapi.json" })).json<{ paths: Record<string, Record<string, { security?: Array<Record<string, unknown>>; description?: string }>> }>();
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const key = `${method.toUpperCase()} ${path}`;
        if (!routes.has(key)) routes.set(key, { app, security: (op.security ?? []).flatMap((s) => Object.keys(s)), description: op.description ?? "" });
      }
    }
  }
  return routes;
}

/** The class of a documented route: from its security scheme, else from the table above. */
function accessOf(key: string, r: { security: string[]; description: string }): Access | undefined {
  if (r.security.includes("orderCredential")) return { kind: "order-credential" };
  if (r.security.includes("holderSession")) return { kind: "holder-session" };
  if (r.security.includes("operatorSession")) {
    const role = /Role: (\w+) or higher/.exec(r.description)?.[1] as OperatorRole | undefined;
    assert.ok(role && roles.includes(role), `${key}: an operator route names its weakest role in its description`);
    return { kind: "operator", role };
  }
  return unauthenticated[key];
}

/** A concrete URL for a documented path: the victim's order, a live certificate, an operator that exists. */
function urlOf(key: string): string {
  const path = key.slice(key.indexOf(" ") + 1);
  return path
    .replace("{rest}", "MEUwQzBBMD8wPTAJBgUrDgMCGgUA")
    .replace("{link}", `${victim.order}.${"A".repeat(32)}`)
    .replace("{certId}", victim.certId)
    .replace("{serial}", victim.serial)
    .replace(/\/orders\/\{id\}/, `/orders/${victim.order}`)
    .replace(/\/operators\/\{id\}/, "/operators/admin1")
    .replace(/\/holders\/\{id\}/, "/holders/H1")
    .replace(/\{id\}/, "enr-00000000-0000-0000-0000-000000000000");
}

async function send(app: FastifyInstance, key: string, headers: Record<string, string> = {}, body: unknown = bodies[key]): Promise<LightMyRequestResponse> {
  const method = key.slice(0, key.indexOf(" ")) as "GET";
  return app.inject({ method, url: urlOf(key), headers, ...(body === undefined ? {} : { payload: body as object }) });
}

/** The actors who may not use a route of this class, with the status and code each gets. */
function intruders(access: Access): Array<{ who: string; headers: Record<string, string>; body?: unknown; status: number; code: ErrorCode }> {
  const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
  const forged = {
    order: `uko1.${randomBytes(32).toString("base64url")}`,
    operator: `uks1.${Buffer.from(JSON.stringify({ sub: "admin1", role: "admin", iat: 0, exp: 9e15, amr: "pwd+otp" })).toString("base64url")}.${randomBytes(32).toString("base64url")}`,
    holder: `ukh1.${Buffer.from(JSON.stringify({ sub: "H1", kind: "person", iat: 0, exp: 9e15 })).toString("base64url")}.${randomBytes(32).toString("base64url")}`,
  };
  switch (access.kind) {
    case "order-credential":
      return [
        { who: "nobody (knows the serial and the order id)", headers: {}, status: 401, code: "ORDER_CREDENTIAL_REQUIRED" },
        { who: "a forged order credential", headers: bearer(forged.order), status: 401, code: "ORDER_CREDENTIAL_INVALID" },
        { who: "the credential of another order", headers: bearer(other.credential), status: 401, code: "ORDER_CREDENTIAL_INVALID" },
        { who: "an admin's session", headers: bearer(tokens.admin!), status: 401, code: "ORDER_CREDENTIAL_REQUIRED" },
        { who: "the holder's own session (sign-in is not possession)", headers: bearer(tokens.holder!), status: 401, code: "ORDER_CREDENTIAL_REQUIRED" },
      ];
    case "holder-session":
      return [
        { who: "nobody", headers: {}, status: 401, code: "HOLDER_SIGN_IN_REQUIRED" },
        { who: "a forged holder session", headers: bearer(forged.holder), status: 401, code: "HOLDER_SIGN_IN_REQUIRED" },
        { who: "an admin's session", headers: bearer(tokens.admin!), status: 401, code: "HOLDER_SIGN_IN_REQUIRED" },
        { who: "an order credential", headers: bearer(other.credential), status: 401, code: "HOLDER_SIGN_IN_REQUIRED" },
      ];
    case "operator": {
      const below = roles.slice(0, roles.indexOf(access.role));
      return [
        { who: "nobody", headers: {}, status: 401, code: "SESSION_INVALID" },
        { who: "a forged admin session", headers: bearer(forged.operator), status: 401, code: "SESSION_INVALID" },
        { who: "a holder's session", headers: bearer(tokens.holder!), status: 401, code: "SESSION_INVALID" },
        { who: "an order credential", headers: bearer(other.credential), status: 401, code: "SESSION_INVALID" },
        ...below.map((role) => ({ who: `an ${role} (needs ${access.role})`, headers: bearer(tokens[role]!), status: 403, code: "ROLE_FORBIDDEN" as const })),
      ];
    }
    case "possession":
      return [
        { who: "a signature by another key", headers: {}, body: { challenge: "c1.0.AAAAAAAAAAAAAAAAAAAAAA.x", signature: randomBytes(70).toString("base64") }, status: 401, code: "CHALLENGE_INVALID" },
        { who: "a TLS proof on plain HTTP", headers: {}, body: {}, status: 403, code: "CLIENT_CERT_PORT_NOT_CONFIGURED" },
      ];
    case "step-up-link":
      return [{ who: "a guessed link", headers: {}, status: 401, code: "CHALLENGE_INVALID" }];
    case "codes":
      return [{ who: "guessed codes", headers: { authorization: `Basic ${Buffer.from("1234567897:ABCDEFGHJKLM").toString("base64")}`, "content-type": "application/json" }, status: 401, code: "CODE_INVALID" }];
    case "sign-in":
    case "client-certificate":
    case "public":
      return [];
  }
}

test("every route of the OpenAPI documents has an authorization case, and every case a route", async () => {
  const routes = await documentedRoutes();
  const missing = [...routes].filter(([key, r]) => !accessOf(key, r)).map(([key]) => key);
  assert.deepEqual(missing, [], "routes with no authorization case: add each to this file (and to docs/security.md)");
  const stale = Object.keys(unauthenticated).filter((key) => !routes.has(key));
  assert.deepEqual(stale, [], "cases for routes that no longer exist");
  // No route takes a PIN: it stays in the agent. No request body of any route has a property that names one.
  for (const app of [http, clientCert]) {
    const doc = (await app.inject({ method: "GET", url: "/api/v1/openapi.json" })).body;
    assert.doesNotMatch(doc, /"[A-Za-z]*(pin|Pin|PIN)(Code)?":\{"type"/, "a request or answer schema with a PIN in it");
  }
  // The walk covers what matters: the renewal API, the admin and holder APIs, EST.
  for (const key of ["POST /api/v1/orders/{id}/csr", "POST /api/v1/admin/certificates/{serial}/revoke", "GET /api/v1/holder/certificates", "POST /.well-known/est/simplereenroll"]) {
    assert.ok(routes.has(key), key);
  }
});

test("each route refuses every actor it is not for, with its catalogue code, and changes nothing", async () => {
  const routes = await documentedRoutes();
  await ctx.refusals.flush();
  const before = (await ctx.store.audit.list(1, 100_000)).length;
  const orderBefore = await ctx.store.orders.get(victim.order);
  let tried = 0;
  for (const [key, r] of routes) {
    const access = accessOf(key, r)!;
    for (const actor of intruders(access)) {
      // The step-up link and the download codes are tried on plain HTTP; EST's Basic codes on the client-certificate listener.
      const app = key.startsWith("POST /.well-known/est/") ? clientCert : r.app;
      const body = actor.body ?? bodies[key];
      const res = key === "POST /.well-known/est/simpleenroll"
        ? await app.inject({ method: "POST", url: urlOf(key), headers: { ...actor.headers, "content-type": "application/pkcs10" }, payload: estCsr })
        : await send(app, key, actor.headers, body);
      tried++;
      const p = res.json<{ code?: string; message?: { "zh-CN": string; en: string }; remedy?: { "zh-CN": string; en: string } }>();
      assert.equal(res.statusCode, actor.status, `${key} as ${actor.who}: ${res.statusCode} ${res.body.slice(0, 300)}`);
      assert.equal(p.code, actor.code, `${key} as ${actor.who}`);
      assert.ok(p.message?.["zh-CN"] && p.message.en && p.remedy?.["zh-CN"] && p.remedy.en, `${key} as ${actor.who}: a catalogue answer`);
      assert.equal(res.headers["access-control-allow-origin"], undefined);
    }
  }
  assert.ok(tried > 150, `${tried} refusals tried`);
  await ctx.refusals.flush();
  const added = (await ctx.store.audit.list(before + 1, 100_000)).map((e) => e.action);
  const changes = added.filter((a) => !/refused|rate-limited|overflow/.test(a));
  assert.deepEqual(changes, [], "only counted refusals were recorded");
  assert.deepEqual(await ctx.store.orders.get(victim.order), orderBefore, "the victim's order is as it was");
  assert.equal((await ctx.store.certificates.get(victim.serial))!.status, "active");
});

test("a hostile web page can read no answer (no CORS anywhere) and cannot post JSON as a simple request", async () => {
  const routes = await documentedRoutes();
  const hostile = { origin: "https://evil.example" };
  for (const [key, r] of routes) {
    const method = key.slice(0, key.indexOf(" "));
    const preflight = await r.app.inject({ method: "OPTIONS", url: urlOf(key), headers: { ...hostile, "access-control-request-method": method, "access-control-request-headers": "authorization, content-type" } });
    assert.equal(preflight.headers["access-control-allow-origin"], undefined, `${key}: preflight`);
    assert.equal(preflight.headers["access-control-allow-headers"], undefined, `${key}: preflight`);
    if (method === "GET") continue;
    // A page may send a cross-site POST without a preflight only as text/plain, form data or urlencoded: none is taken as JSON.
    for (const type of ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]) {
      if (key.startsWith("POST /.well-known/est/") || key === "POST /ocsp") continue;
      const res = await r.app.inject({ method: method as "POST", url: urlOf(key), headers: { ...hostile, "content-type": type }, payload: JSON.stringify(bodies[key] ?? {}) });
      assert.equal(res.statusCode, 415, `${key} as ${type}: ${res.statusCode} ${res.body.slice(0, 200)}`);
      assert.equal(res.json<{ code: string }>().code, "UNSUPPORTED_MEDIA_TYPE");
      assert.equal(res.headers["access-control-allow-origin"], undefined);
    }
  }
});
