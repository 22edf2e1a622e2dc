import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import type { AddressInfo } from "node:net";
import type { FastifyInstance } from "fastify";
import { systemClock } from "@ukey/policy";
import { buildApp, type AppOptions } from "../src/app.js";
import type { HttpEdgeConfig } from "../src/http-edge.js";
import { openServerContext, type ServerContext } from "../src/server-context.js";
import { initialisedDataDir, tempDir, type TempDir } from "./support/fixtures.js";
import { rawExchange } from "./support/raw-http.js";

// X-Content-Type-Options on every answer of every listener, and
// Strict-Transport-Security on every answer of the TLS listeners only:
// API, errors, 404, OCSP, CRL, EST, the portal, and Node's own refusals.
let t: TempDir;
let ctx: ServerContext;
const apps: FastifyInstance[] = [];
let tls: { key: Buffer; cert: Buffer };

before(async () => {
  t = tempDir();
  const { dataDir, env } = initialisedDataDir(t);
  ctx = await openServerContext(dataDir, env, systemClock);
  tls = { key: readFileSync(ctx.layout.tlsKey), cert: readFileSync(ctx.layout.tlsCert) };
});
after(async () => {
  for (const a of apps) await a.close();
  await ctx?.close();
  t?.cleanup();
});

async function listening(opts: AppOptions, http: Partial<HttpEdgeConfig> = {}): Promise<number> {
  const app = await buildApp({ ...ctx, config: { ...ctx.config, http: { ...ctx.config.http, ...http } } }, opts);
  apps.push(app);
  await app.listen({ host: "127.0.0.1", port: 0 });
  return (app.server.address() as AddressInfo).port;
}

interface Answer { status: number; headers: Record<string, string | string[] | undefined> }

function ask(port: number, secure: boolean, method: string, path: string, body?: { type: string; data: Buffer | string }): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const options = {
      host: "127.0.0.1", port, path, method, rejectUnauthorized: false,
      headers: body ? { "content-type": body.type, "content-length": Buffer.byteLength(body.data) } : {},
    };
    const req = (secure ? httpsRequest : httpRequest)(options, (res) => {
      res.resume();
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
    });
    req.on("error", reject);
    req.end(body?.data);
  });
}

const requests: Array<[name: string, method: string, path: string, status: number, body?: { type: string; data: string }]> = [
  ["an API answer", "GET", "/api/v1/key-vendors", 200],
  ["a refusal", "POST", "/api/v1/orders", 400, { type: "application/json", data: "{}" }],
  ["a 404", "GET", "/nowhere", 404],
  ["an OCSP answer", "POST", "/ocsp", 200, { type: "application/ocsp-request", data: "not DER" }],
  ["a CRL", "GET", "/crl/issuing.crl", 200],
  ["a CA certificate", "GET", "/ca/root.pem", 200],
  ["the OpenAPI document", "GET", "/api/v1/openapi.json", 200],
  ["health", "GET", "/healthz", 200],
];

test("plain HTTP: nosniff on every answer, and no HSTS", async () => {
  const port = await listening({});
  for (const [name, method, path, status, body] of requests) {
    const a = await ask(port, false, method, path, body);
    assert.equal(a.status, status, name);
    assert.equal(a.headers["x-content-type-options"], "nosniff", name);
    assert.equal(a.headers["strict-transport-security"], undefined, name);
  }
  const raw = await rawExchange(port, "FOO / HTTP/1.1\r\nHost: localhost\r\n\r\n");
  assert.equal(raw.status, 400);
  assert.equal(raw.headers["x-content-type-options"], "nosniff");
  assert.equal(raw.headers["strict-transport-security"], undefined);
});

const tlsRequests: typeof requests = [
  ...requests,
  ["EST cacerts", "GET", "/.well-known/est/cacerts", 200],
  ["an EST refusal", "POST", "/.well-known/est/simpleenroll", 401, { type: "application/pkcs10", data: "AAAA" }],
  ["the portal", "GET", "/", 200],
];

for (const [listener, opts] of [["TLS", {}], ["client-certificate", { clientCertificates: true }]] as const) {
  test(`the ${listener} listener: nosniff and HSTS for a year on every answer, Node's refusals included`, async () => {
    const port = await listening({ https: tls, ...opts });
    for (const [name, method, path, status, body] of tlsRequests) {
      const a = await ask(port, true, method, path, body);
      assert.equal(a.status, status, name);
      assert.equal(a.headers["x-content-type-options"], "nosniff", name);
      assert.equal(a.headers["strict-transport-security"], "max-age=31536000", name);
    }
    for (const request of ["FOO / HTTP/1.1\r\nHost: localhost\r\n\r\n", "GET /.. HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"]) {
      const raw = await rawExchange(port, request, { tls: true });
      assert.equal(raw.status, 400, raw.raw.slice(0, 200));
      assert.equal(raw.headers["x-content-type-options"], "nosniff");
      assert.equal(raw.headers["strict-transport-security"], "max-age=31536000");
    }
  });
}

test("HSTS follows the configuration", async () => {
  const port = await listening({ https: tls }, { hstsMaxAgeSeconds: 63_072_000, hstsIncludeSubDomains: true });
  const a = await ask(port, true, "GET", "/healthz");
  assert.equal(a.headers["strict-transport-security"], "max-age=63072000; includeSubDomains");
});

test("Basic credentials holding NUL are refused as text no store can keep", async () => {
  const port = await listening({ https: tls });
  const auth = `Basic ${Buffer.from("ref\u0000:code").toString("base64")}`;
  const raw = await rawExchange(port, `POST /.well-known/est/simpleenroll HTTP/1.1\r\nHost: localhost\r\nAuthorization: ${auth}\r\nContent-Type: application/pkcs10\r\nContent-Length: 4\r\nConnection: close\r\n\r\nAAAA`, { tls: true });
  assert.equal(raw.status, 400, raw.raw.slice(0, 300));
  assert.equal((JSON.parse(raw.body) as { code: string }).code, "REQUEST_TEXT_MALFORMED");
});
