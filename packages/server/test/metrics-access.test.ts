import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import type { FastifyInstance } from "fastify";
import { isUkeyError, systemClock } from "@ukey/policy";
import { buildApp, type AppOptions } from "../src/app.js";
import type { ServerConfig } from "../src/server-config.js";
import { openServerContext, type ServerContext } from "../src/server-context.js";
import { initialisedDataDir, tempDir, type TempDir } from "./support/fixtures.js";

// Who may read GET /metrics: the listeners named in metrics.listeners
// (default: plain HTTP only), and with metrics.bearerTokenFile only a
// scraper sending the token.
let t: TempDir;
let ctx: ServerContext;
let tls: { key: Buffer; cert: Buffer };
const apps: FastifyInstance[] = [];
const token = "9f2c4a7e1b3d5f608192a3b4c5d6e7f8a9b0c1d2e3f405162738495a6b7c8d9e";

before(async () => {
  t = tempDir();
  const { dataDir, env } = initialisedDataDir(t);
  ctx = await openServerContext(dataDir, env, systemClock);
  tls = { key: readFileSync(ctx.layout.tlsKey), cert: readFileSync(ctx.layout.tlsCert) };
  t.write("metrics-token", `${token}\n`);
  t.write("short-token", "tooshort\n");
});
after(async () => {
  for (const a of apps) await a.close();
  await ctx?.close();
  t?.cleanup();
});

async function app(metrics: Partial<ServerConfig["metrics"]>, opts: AppOptions = {}): Promise<FastifyInstance> {
  const a = await buildApp({ ...ctx, config: { ...ctx.config, metrics: { ...ctx.config.metrics, ...metrics } } }, opts);
  apps.push(a);
  return a;
}

async function scrape(a: FastifyInstance, authorization?: string): Promise<{ status: number; code?: string; challenge?: string }> {
  const r = await a.inject({ method: "GET", url: "/metrics", headers: authorization ? { authorization } : {} });
  const code = r.statusCode === 200 ? undefined : (r.json() as { code: string }).code;
  if (r.statusCode === 200) assert.match(r.body, /^# HELP /m);
  return { status: r.statusCode, ...(code ? { code } : {}), ...(r.headers["www-authenticate"] ? { challenge: String(r.headers["www-authenticate"]) } : {}) };
}

test("by default metrics are served on plain HTTP only, without a token", async () => {
  assert.deepEqual(await scrape(await app({})), { status: 200 });
  for (const opts of [{ https: tls }, { https: tls, clientCertificates: true }]) {
    assert.deepEqual(await scrape(await app({}, opts)), { status: 403, code: "METRICS_NOT_SERVED_HERE" });
  }
});

test("metrics.listeners chooses the listeners that serve them", async () => {
  const only = { listeners: ["tls" as const] };
  assert.deepEqual(await scrape(await app(only)), { status: 403, code: "METRICS_NOT_SERVED_HERE" });
  assert.deepEqual(await scrape(await app(only, { https: tls })), { status: 200 });
  assert.deepEqual(await scrape(await app(only, { https: tls, clientCertificates: true })), { status: 403, code: "METRICS_NOT_SERVED_HERE" });
  const none = await app({ listeners: [] });
  assert.deepEqual(await scrape(none), { status: 403, code: "METRICS_NOT_SERVED_HERE" });
  const doc = (await none.inject({ method: "GET", url: "/api/v1/openapi.json" })).json() as { paths: Record<string, unknown> };
  assert.equal(doc.paths["/metrics"], undefined, "a listener without metrics does not list them");
});

test("with a bearer token file, only a scraper sending the token reads the metrics", async () => {
  const a = await app({ bearerTokenFile: t.path("metrics-token") });
  const challenge = 'Bearer realm="ukey-renew metrics"';
  const cases: Array<[string, string | undefined, { status: number; code?: string; challenge?: string }]> = [
    ["no token", undefined, { status: 401, code: "METRICS_TOKEN_REQUIRED", challenge }],
    ["a wrong token", `Bearer ${token.replace(/.$/, "0")}`, { status: 401, code: "METRICS_TOKEN_REQUIRED", challenge }],
    ["the token as Basic", `Basic ${Buffer.from(`x:${token}`).toString("base64")}`, { status: 401, code: "METRICS_TOKEN_REQUIRED", challenge }],
    ["a prefix of the token", `Bearer ${token.slice(0, 32)}`, { status: 401, code: "METRICS_TOKEN_REQUIRED", challenge }],
    ["the token", `Bearer ${token}`, { status: 200 }],
  ];
  for (const [name, authorization, expected] of cases) assert.deepEqual(await scrape(a, authorization), expected, name);
});

test("a token file that is missing or too short stops the server at start", async () => {
  await assert.rejects(app({ bearerTokenFile: t.path("no-such-file") }), (e: unknown) => isUkeyError(e, "FILE_UNREADABLE"));
  await assert.rejects(app({ bearerTokenFile: t.path("short-token") }), (e: unknown) => isUkeyError(e, "CONFIG_INVALID"));
});

test("a relative token file is in the data directory", async () => {
  writeFileSync(`${ctx.layout.dir}/secrets/metrics.token`, token, { mode: 0o600 });
  const a = await app({ bearerTokenFile: "secrets/metrics.token" });
  assert.deepEqual(await scrape(a, `Bearer ${token}`), { status: 200 });
});
