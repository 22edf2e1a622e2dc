import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import type { FastifyInstance, LightMyRequestResponse } from "fastify";
import { fixedClock, isUkeyError } from "@ukey/policy";
import { buildApp } from "../src/app.js";
import { rateLimitRuleFor, rateLimitRules, type RateLimitRuleName } from "../src/rate-limits.js";
import { REFUSAL_OVERFLOW_ACTION } from "../src/audit/refusal-log.js";
import { parseServerConfig } from "../src/server-config.js";
import { openServerContext, type ServerContext } from "../src/server-context.js";
import { initialisedDataDir, keyArgs, openssl, opensslCsr, tempDir, type TempDir } from "./support/fixtures.js";

// Per-client request limits through the real app: every route of the
// OpenAPI document is limited (the unauthenticated ones by a rule of their
// own), an exceeded limit answers 429 with a catalogue code and
// Retry-After, trustProxy decides whose address counts, and refusals reach
// the audit log as counts per window.
let t: TempDir;
let ctx: ServerContext;
let app: FastifyInstance;

// A distinct max per rule, so that an answer's X-RateLimit-Limit names the rule that applied.
const maxOf: Record<RateLimitRuleName, number> = Object.fromEntries(
  (Object.keys(rateLimitRules) as RateLimitRuleName[]).map((name, i) => [name, name === "holderSignInCode" ? 3 : 1000 + i]),
) as Record<RateLimitRuleName, number>;

before(async () => {
  t = tempDir();
  const { dataDir, env } = initialisedDataDir(t);
  const file = `${dataDir}/config.json`;
  const cfg = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
  cfg.trustProxy = ["10.0.0.1"];
  cfg.rateLimits = { allowList: ["192.0.2.128/25"], rules: Object.fromEntries(Object.entries(maxOf).map(([k, max]) => [k, { max }])) };
  cfg.audit = { refusalEntriesPerWindow: 10 };
  (cfg.profiles as unknown[]).push({ id: "gov", preset: "gov-supervision", keyAlgorithms: ["rsa2048", "p256"], certificates: null });
  writeFileSync(file, JSON.stringify(cfg, null, 2));
  ctx = await openServerContext(dataDir, env, fixedClock(new Date()));
  // With a TLS certificate, so that the EST routes are registered (inject needs no handshake).
  const key = t.path("tls.key");
  const cert = t.path("tls.pem");
  assert.equal(openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-subj", "/CN=localhost", "-days", "2", "-out", cert]).status, 0);
  app = await buildApp(ctx, { https: { key: readFileSync(key), cert: readFileSync(cert) } });
});
after(async () => {
  await app?.close();
  await ctx?.close();
  t?.cleanup();
});

const limitOf = (r: LightMyRequestResponse) => Number(r.headers["x-ratelimit-limit"]);

test("every route of the OpenAPI document has a per-client limit; every unauthenticated one a rule of its own", async () => {
  const doc = (await app.inject({ method: "GET", url: "/api/v1/openapi.json" })).json<{ paths: Record<string, Record<string, { security?: unknown[] }>> }>();
  const seen: string[] = [];
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const route = path.replace("{rest}", "*").replace(/\{(\w+)\}/g, ":$1");
      const url = path.replace("{rest}", "MEUwQzBBMD8wPTAJBgUrDgMCGgUA").replace(/\{\w+\}/g, "x");
      const rule = rateLimitRuleFor(method.toUpperCase(), route);
      const authenticated = (op.security ?? []).length > 0;
      if (!authenticated) assert.notEqual(rule, "default", `${method.toUpperCase()} ${path} is unauthenticated and needs a rule of its own in rate-limits.ts`);
      const r = await app.inject({ method: method.toUpperCase() as "GET", url, remoteAddress: "198.51.100.200" });
      assert.equal(limitOf(r), maxOf[rule], `${method.toUpperCase()} ${path} (${r.statusCode}) is limited by ${rule}`);
      seen.push(`${method.toUpperCase()} ${route} ${rule}`);
    }
  }
  // The document lists the renewal, sign-in, EST and PKI routes, so the walk above covered them.
  for (const expected of ["POST /api/v1/orders renewal", "POST /api/v1/admin/sign-in operatorSignIn", "POST /api/v1/holder/sign-in holderSignInCode", "POST /ocsp pki", "POST /api/v1/downloads codes"]) {
    assert.ok(seen.includes(expected), expected);
  }
  assert.ok(seen.some((s) => s.endsWith(" est")), "EST routes are covered");
  // Routes outside the document (the portal's files) are limited too.
  assert.equal(limitOf(await app.inject({ method: "GET", url: "/", remoteAddress: "198.51.100.200" })), maxOf.default);
});

describe("over the limit", () => {
  let n = 0;
  // A new customer number each time: the per-number quiet time is not what is tested here.
  const signIn = (remoteAddress: string, headers: Record<string, string> = {}) =>
    app.inject({ method: "POST", url: "/api/v1/holder/sign-in", payload: { holderId: `nobody-${++n}` }, remoteAddress, headers });

  test("answers 429 RATE_LIMITED with Retry-After, in both languages; another address is not limited", async () => {
    // This suite keeps ten distinct refusals per window: start with an empty one.
    await ctx.refusals.flush();
    for (let i = 0; i < 3; i++) assert.equal((await signIn("192.0.2.1")).statusCode, 200);
    const r = await signIn("192.0.2.1");
    assert.equal(r.statusCode, 429);
    const p = r.json<{ code: string; message: { "zh-CN": string; en: string }; remedy: { "zh-CN": string; en: string } }>();
    assert.equal(p.code, "RATE_LIMITED");
    assert.match(p.message["zh-CN"], /请求过于频繁/);
    assert.ok(p.remedy.en && p.remedy["zh-CN"]);
    assert.ok(Number(r.headers["retry-after"]) >= 1 && Number(r.headers["retry-after"]) <= 60, String(r.headers["retry-after"]));
    assert.equal((await signIn("192.0.2.2")).statusCode, 200);
    await ctx.refusals.flush();
    const limited = (await ctx.store.audit.list(1, 10_000)).filter((e) => e.action === "request.rate-limited" && e.data.ip === "192.0.2.1");
    assert.deepEqual(limited.map((e) => [e.subjectId, e.data.count]), [["POST /api/v1/holder/sign-in", 1]]);
  });

  test("behind a trusted proxy the forwarded address is the client; from anyone else the header counts for nothing", async () => {
    const viaProxy = (client: string) => signIn("10.0.0.1", { "x-forwarded-for": client });
    for (let i = 0; i < 3; i++) assert.equal((await viaProxy("192.0.2.9")).statusCode, 200);
    assert.equal((await viaProxy("192.0.2.9")).statusCode, 429);
    assert.equal((await viaProxy("192.0.2.10")).statusCode, 200, "another client behind the same proxy");
    // A client that is not the proxy cannot name another address, nor escape its own count.
    for (let i = 0; i < 3; i++) assert.equal((await signIn("192.0.2.77", { "x-forwarded-for": `192.0.2.${100 + i}` })).statusCode, 200);
    assert.equal((await signIn("192.0.2.77", { "x-forwarded-for": "192.0.2.111" })).statusCode, 429);
  });

  test("addresses on the allow list are never limited", async () => {
    for (let i = 0; i < 6; i++) assert.equal((await signIn("192.0.2.200")).statusCode, 200);
  });
});

describe("refusals in the audit log", () => {
  test("thousands of bad tokens make a handful of entries whose counts add up, and the chain verifies", async () => {
    await ctx.refusals.flush();
    const before = (await ctx.store.audit.verify()).entries;
    const clients = ["198.51.100.1", "198.51.100.2", "198.51.100.3"];
    for (let i = 0; i < 3000; i++) {
      const r = await app.inject({ method: "GET", url: "/api/v1/admin/holders", headers: { authorization: "Bearer garbage" }, remoteAddress: clients[i % 3]! });
      assert.equal(r.statusCode, 401);
    }
    await ctx.refusals.flush();
    const entries = (await ctx.store.audit.list(before + 1, 1000));
    assert.equal(entries.length, 3);
    assert.ok(entries.every((e) => e.action === "admin.refused" && e.subjectId === "GET /api/v1/admin/holders" && e.data.reason === "session-invalid"));
    assert.deepEqual(entries.map((e) => e.data.count).sort(), [1000, 1000, 1000]);
    assert.ok(entries.every((e) => typeof e.data.firstAt === "number" && typeof e.data.lastAt === "number"));
    const verified = await ctx.store.audit.verify();
    assert.deepEqual([verified.ok, verified.entries], [true, before + 3]);
  });

  test("wrong proofs of possession are counted per window, not written one by one", async () => {
    const { csr } = opensslCsr(t, "possession", keyArgs.p256);
    await ctx.store.holders.insert({
      id: "P1", kind: "person", name: "Possession", idType: "resident-id", idHash: "11".repeat(32), idMasked: "1101**********1234",
      phone: null, email: null, organisationId: null, createdAt: 0,
    });
    const c = await ctx.issuance.issue({ holderId: "P1", profileId: "gov", csr: readFileSync(csr), actor: "test", notAfter: new Date(ctx.clock.now().getTime() + 20 * 86_400_000) });
    const started = await app.inject({ method: "POST", url: "/api/v1/orders", payload: { serial: c.serial }, remoteAddress: "198.51.100.50" });
    assert.ok(started.statusCode < 300, started.body);
    const { id, challenge } = started.json<{ id: string; challenge: { value: string } }>();
    await ctx.refusals.flush();
    const before = (await ctx.store.audit.verify()).entries;
    for (let i = 0; i < 40; i++) {
      const r = await app.inject({
        method: "POST", url: `/api/v1/orders/${id}/possession`, remoteAddress: "198.51.100.50",
        payload: { challenge: challenge.value, signature: Buffer.alloc(64, i).toString("base64") },
      });
      assert.ok(r.statusCode >= 400, r.body);
    }
    await ctx.refusals.flush();
    const entries = (await ctx.store.audit.list(before + 1, 1000)).filter((e) => e.action === "order.possession.refused");
    assert.ok(entries.length >= 1 && entries.length <= 3, JSON.stringify(entries.map((e) => e.data)));
    assert.equal(entries.reduce((n, e) => n + Number(e.data.count), 0), 40);
  });

  test("beyond the distinct refusals kept per window, the rest are counted in one overflow entry", async () => {
    await ctx.refusals.flush();
    const before = (await ctx.store.audit.verify()).entries;
    for (let ip = 1; ip <= 20; ip++) {
      for (let i = 0; i < 5; i++) await app.inject({ method: "GET", url: "/api/v1/admin/me", remoteAddress: `203.0.113.${ip}` });
    }
    await ctx.refusals.flush();
    const entries = await ctx.store.audit.list(before + 1, 1000);
    assert.equal(entries.length, 11, "ten kept, one overflow");
    const overflow = entries.filter((e) => e.action === REFUSAL_OVERFLOW_ACTION);
    assert.equal(overflow.length, 1);
    assert.deepEqual(overflow[0]!.data.actions, { "admin.refused": 50 });
    assert.equal(entries.reduce((n, e) => n + Number(e.data.count), 0), 100);
    assert.equal((await ctx.store.audit.verify()).ok, true);
  });
});

describe("configuration", () => {
  const cases: Array<{ name: string; config: Record<string, unknown>; ok: boolean }> = [
    { name: "the defaults", config: {}, ok: true },
    { name: "proxies by address and network", config: { trustProxy: ["10.0.0.1", "fd00::/8"] }, ok: true },
    { name: "a hop count", config: { trustProxy: 1 }, ok: true },
    { name: "trusting every address", config: { trustProxy: true }, ok: false },
    { name: "a proxy that is no address", config: { trustProxy: ["proxy.example"] }, ok: false },
    { name: "a network with too long a prefix", config: { rateLimits: { allowList: ["10.0.0.0/33"] } }, ok: false },
    { name: "an unknown rule", config: { rateLimits: { rules: { everything: { max: 1 } } } }, ok: false },
    { name: "a zero limit", config: { rateLimits: { rules: { pki: { max: 0 } } } }, ok: false },
    { name: "no waiting sign-ins at all", config: { signIn: { waitingHashes: 0 } }, ok: true },
  ];
  for (const c of cases) {
    test(`${c.ok ? "accepts" : "refuses"} ${c.name}`, () => {
      if (c.ok) {
        const parsed = parseServerConfig(c.config);
        assert.equal(parsed.rateLimits.rules.pki.max, c.config.rateLimits ? parsed.rateLimits.rules.pki.max : rateLimitRules.pki.max);
      } else {
        assert.throws(() => parseServerConfig(c.config), (e: unknown) => isUkeyError(e, "CONFIG_INVALID"));
      }
    });
  }
});
