import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import type { AddressInfo } from "node:net";
import type { FastifyInstance } from "fastify";
import { systemClock } from "@ukey/policy";
import { buildApp } from "../src/app.js";
import type { HttpEdgeConfig } from "../src/http-edge.js";
import { openServerContext, type ServerContext } from "../src/server-context.js";
import { defaultWebDist } from "../src/web-routes.js";
import { initialisedDataDir, tempDir, type TempDir } from "./support/fixtures.js";
import { closedWithin, collect, openConnection, rawExchange, type RawAnswer } from "./support/raw-http.js";

// The HTTP edge on a listening server, with raw sockets where a client
// library would refuse to send what an attacker sends: every refusal of
// Fastify, its static plugin and Node's parser is a problem document with a
// catalogue code; slow clients are cut off; connections over the cap are
// closed.
let t: TempDir;
let ctx: ServerContext;
const apps: FastifyInstance[] = [];
const logLines: string[] = [];

/** The context with `http` settings of its own (the store and services are shared). */
function withEdge(http: Partial<HttpEdgeConfig>): ServerContext {
  return { ...ctx, config: { ...ctx.config, http: { ...ctx.config.http, ...http } } };
}

async function listening(c: ServerContext, log = false): Promise<number> {
  const app = await buildApp(c, log ? { logStream: { write: (l: string) => { logLines.push(l); } } } : {});
  apps.push(app);
  await app.listen({ host: "127.0.0.1", port: 0 });
  return (app.server.address() as AddressInfo).port;
}

before(async () => {
  assert.ok(existsSync(resolve(defaultWebDist, "index.html")), "the portal must be built (scripts/build-web.sh): the static-file cases need it");
  t = tempDir();
  const { dataDir, env } = initialisedDataDir(t);
  ctx = await openServerContext(dataDir, env, systemClock);
});
after(async () => {
  for (const a of apps) await a.close();
  await ctx?.close();
  t?.cleanup();
});

function assertProblem(a: RawAnswer, status: number, code: string, name: string): void {
  assert.equal(a.status, status, `${name}: ${a.raw.slice(0, 300)}`);
  assert.match(a.headers["content-type"] ?? "", /^application\/problem\+json/, name);
  assert.equal(a.headers["x-content-type-options"], "nosniff", name);
  const p = JSON.parse(a.body) as Record<string, unknown> & { message: Record<string, string>; remedy: Record<string, string> };
  assert.equal(p.code, code, name);
  assert.equal(p.type, `urn:ukey:error:${code}`, name);
  assert.equal(p.status, status, name);
  assert.equal(p.title, p.message.en, name);
  assert.ok(typeof p.kind === "string" && p.message["zh-CN"] && p.remedy["zh-CN"] && p.remedy.en, name);
}

const get = (path: string, headers = "") => `GET ${path} HTTP/1.1\r\nHost: localhost\r\n${headers}Connection: close\r\n\r\n`;
const post = (path: string, type: string, body: string | Buffer, headers = "") => Buffer.concat([
  Buffer.from(`POST ${path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: ${type}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${headers}Connection: close\r\n\r\n`),
  Buffer.isBuffer(body) ? body : Buffer.from(body),
]);
const json = "application/json";

const badRequests: Array<[name: string, request: string | Buffer, status: number, code: string]> = [
  ["a '..' segment", get("/.."), 400, "URL_INVALID"],
  ["a '..' segment under the API", get("/api/v1/../healthz"), 400, "URL_INVALID"],
  ["an encoded '..' segment", get("/%2e%2e/ca/root.pem"), 400, "URL_INVALID"],
  ["a '.' segment", get("/./index.html"), 400, "URL_INVALID"],
  ["'//' in the path", get("//healthz"), 400, "URL_INVALID"],
  ["a file name too long", get(`/assets/${"a".repeat(300)}.js`), 400, "URL_INVALID"],
  ["a %-escape that is not UTF-8 (an encoded surrogate)", get("/api/v1/renewal-info/%ED%A0%80"), 400, "URL_INVALID"],
  ["a broken %-escape", get("/ocsp/%zz"), 400, "URL_INVALID"],
  ["a path parameter over 100 characters", post(`/api/v1/orders/${"a".repeat(101)}/cancel`, json, "{}"), 414, "URL_TOO_LONG"],
  ["NUL in a path parameter", get("/api/v1/renewal-info/%00"), 400, "REQUEST_TEXT_MALFORMED"],
  ["NUL in the query string", get("/api/v1/renewal-info/x?channel=web%00"), 400, "REQUEST_TEXT_MALFORMED"],
  ["an unknown route", get("/nowhere"), 404, "ROUTE_NOT_FOUND"],
  ["headers over 16 KiB", get("/healthz", `X-Padding: ${"a".repeat(20_000)}\r\n`), 431, "REQUEST_HEADERS_TOO_LARGE"],
  ["an unknown method", "FOO / HTTP/1.1\r\nHost: localhost\r\n\r\n", 400, "REQUEST_MALFORMED"],
  ["an unknown HTTP version", "GET / HTTP/3.0\r\nHost: localhost\r\n\r\n", 400, "REQUEST_MALFORMED"],
  ["HTTP/2 without negotiation", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, "REQUEST_MALFORMED"],
  ["a space in the path", "GET /heal thz HTTP/1.1\r\nHost: localhost\r\n\r\n", 400, "REQUEST_MALFORMED"],
  ["bare LF line ends", "GET /healthz HTTP/1.1\nHost: localhost\n\n", 400, "REQUEST_MALFORMED"],
  ["NUL in a header", get("/healthz", "X-A: a\u0000b\r\n"), 400, "REQUEST_MALFORMED"],
  ["a folded header line", get("/healthz", "X-A: a\r\n b\r\n"), 400, "REQUEST_MALFORMED"],
  ["Transfer-Encoding with Content-Length", "POST /ocsp HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "REQUEST_MALFORMED"],
  ["a chunk size that is not hexadecimal", "POST /ocsp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/ocsp-request\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400, "REQUEST_MALFORMED"],
  ["a negative Content-Length", "POST /ocsp HTTP/1.1\r\nHost: localhost\r\nContent-Length: -1\r\n\r\n", 400, "REQUEST_MALFORMED"],
  ["no Host header", "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", 400, "REQUEST_MALFORMED"],
  ["CONNECT", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 400, "REQUEST_MALFORMED"],
  ["an Expect other than 100-continue", post("/ocsp", "application/ocsp-request", "", "Expect: teapot\r\n"), 417, "EXPECTATION_UNSUPPORTED"],
  ["a Range past the end of a file", get("/index.html", "Range: bytes=999999-\r\n"), 416, "RANGE_NOT_SATISFIABLE"],
  ["an If-Match that does not match", get("/index.html", "If-Match: \"nope\"\r\n"), 412, "PRECONDITION_FAILED"],
  ["a media type no route takes", post("/ocsp", "text/plain", "x"), 415, "UNSUPPORTED_MEDIA_TYPE"],
  ["a body without a media type", "POST /api/v1/orders HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}", 415, "UNSUPPORTED_MEDIA_TYPE"],
  ["JSON in UTF-16", post("/api/v1/orders", "application/json; charset=utf-16", Buffer.from("{}", "utf16le")), 415, "UNSUPPORTED_MEDIA_TYPE"],
  ["a body over the limit", "POST /ocsp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/ocsp-request\r\nContent-Length: 200000\r\n\r\n", 413, "REQUEST_TOO_LARGE"],
  ["a body that is not JSON", post("/api/v1/orders", json, "{\"certId\":"), 400, "REQUEST_INVALID"],
  ["an empty JSON body", post("/api/v1/orders", json, ""), 400, "REQUEST_INVALID"],
  ["a __proto__ key", post("/api/v1/orders", json, "{\"__proto__\":{\"isAdmin\":true}}"), 400, "REQUEST_INVALID"],
  ["a constructor.prototype key", post("/api/v1/orders", json, "{\"constructor\":{\"prototype\":{\"x\":1}}}"), 400, "REQUEST_INVALID"],
  ["a JSON body that is not UTF-8", post("/api/v1/orders", json, Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d])), 400, "REQUEST_TEXT_MALFORMED"],
  ["a JSON body with an encoded surrogate", post("/api/v1/orders", json, Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xed, 0xa0, 0x80, 0x22, 0x7d])), 400, "REQUEST_TEXT_MALFORMED"],
  ["a JSON string with an escaped unpaired surrogate", post("/api/v1/orders", json, "{\"serial\":\"\\ud800\"}"), 400, "REQUEST_TEXT_MALFORMED"],
  ["a JSON key with an escaped unpaired surrogate", post("/api/v1/orders", json, "{\"\\udc00\":1}"), 400, "REQUEST_TEXT_MALFORMED"],
  ["a JSON string with NUL", post("/api/v1/admin/sign-in", json, "{\"operatorId\":\"a\\u0000b\",\"password\":\"p\",\"totp\":\"1\"}"), 400, "REQUEST_TEXT_MALFORMED"],
];

test("every bad request gets a problem document with its catalogue code, never INTERNAL", async () => {
  const port = await listening(ctx, true);
  for (const [name, request, status, code] of badRequests) {
    assertProblem(await rawExchange(port, request), status, code, name);
  }
  const errors = logLines.filter((l) => (JSON.parse(l) as { level: number }).level >= 50);
  assert.deepEqual(errors, [], "nothing a client sent was logged as a server failure");
  // And the server still answers.
  const ok = await rawExchange(port, get("/healthz"));
  assert.equal(ok.status, 200);
  assert.equal(ok.headers["x-content-type-options"], "nosniff");
});

test("a deeply nested JSON body is refused as invalid, not as a crash", async () => {
  const port = await listening(ctx);
  const deep = `${"[".repeat(30_000)}${"]".repeat(30_000)}`;
  const a = await rawExchange(port, post("/api/v1/orders", json, deep));
  assertProblem(a, 400, "REQUEST_INVALID", "30,000 nested arrays");
});

test("refuses a dripping body after the request timeout", async () => {
  const port = await listening(withEdge({ headersTimeoutSeconds: 1, requestTimeoutSeconds: 2, bodyTimeoutSeconds: 60 }));
  const s = await openConnection(port);
  s.write("POST /api/v1/orders HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{");
  // A byte every 200 ms: never silent long enough for a body timeout, never done.
  const drip = setInterval(() => { if (s.writable) s.write(" "); }, 200);
  try {
    const a = await closedWithin(s, 10_000);
    assertProblem(a, 408, "REQUEST_TIMEOUT", "dripping body");
  } finally {
    clearInterval(drip);
  }
});

test("refuses a body that stops arriving after the body timeout", async () => {
  const port = await listening(withEdge({ headersTimeoutSeconds: 60, requestTimeoutSeconds: 600, bodyTimeoutSeconds: 1 }));
  const s = await openConnection(port);
  s.write("POST /api/v1/orders HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"certId\":");
  const a = await closedWithin(s, 10_000);
  assertProblem(a, 408, "REQUEST_TIMEOUT", "stalled body");
  assert.equal(a.headers.connection, "close");
});

test("refuses slow headers, and a connection that sends nothing, after the headers timeout", async () => {
  const port = await listening(withEdge({ headersTimeoutSeconds: 1, requestTimeoutSeconds: 600, bodyTimeoutSeconds: 600 }));
  const slow = await openConnection(port);
  slow.write("GET /healthz HTTP/1.1\r\n");
  const drip = setInterval(() => { if (slow.writable) slow.write("X-Slow: 1\r\n"); }, 200);
  const silent = await openConnection(port);
  try {
    const [a, b] = await Promise.all([closedWithin(slow, 10_000), closedWithin(silent, 10_000)]);
    assertProblem(a, 408, "REQUEST_TIMEOUT", "slow headers");
    assertProblem(b, 408, "REQUEST_TIMEOUT", "silent connection");
  } finally {
    clearInterval(drip);
  }
});

test("closes connections past the cap, and serves again once connections free up", async () => {
  const port = await listening(withEdge({ maxConnections: 2, headersTimeoutSeconds: 60, requestTimeoutSeconds: 600 }));
  const held = [await openConnection(port), await openConnection(port)];
  // Let the server count both before the third arrives.
  await new Promise((r) => setTimeout(r, 200));
  const over = await openConnection(port).catch(() => undefined);
  if (over) {
    const a = await collect(over, 10_000, () => over.write(get("/healthz")));
    assert.equal(a.status, 0, `a connection over the cap got an answer: ${a.raw.slice(0, 200)}`);
    assert.ok(a.closedByServer);
  }
  for (const s of held) s.destroy();
  await new Promise((r) => setTimeout(r, 200));
  const ok = await rawExchange(port, get("/healthz"));
  assert.equal(ok.status, 200, ok.raw.slice(0, 200));
});
