import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import type { AddressInfo } from "node:net";
import type { FastifyInstance } from "fastify";
import { systemClock } from "@ukey/policy";
import { buildApp } from "../src/app.js";
import { redactUrl } from "../src/request-log.js";
import { openServerContext, type ServerContext } from "../src/server-context.js";
import { initialisedDataDir, tempDir, type TempDir } from "./support/fixtures.js";
import { rawExchange } from "./support/raw-http.js";

// The step-up link is a bearer secret: refusals of it are logged with the
// token taken out of the URL, whichever part of the server logs them.
let t: TempDir;
let ctx: ServerContext;
let app: FastifyInstance;
const lines: string[] = [];

before(async () => {
  t = tempDir();
  const { dataDir, env } = initialisedDataDir(t);
  ctx = await openServerContext(dataDir, env, systemClock);
  app = await buildApp(ctx, { logStream: { write: (l: string) => { lines.push(l); } } });
  await app.listen({ host: "127.0.0.1", port: 0 });
});
after(async () => {
  await app?.close();
  await ctx?.close();
  t?.cleanup();
});

test("a refused step-up link is logged without its token, with the redacted path", async () => {
  const order = "0f8e2c1a-5b6d-4e7f-8a9b-0c1d2e3f4a5b";
  const token = randomBytes(24).toString("base64url");
  const port = (app.server.address() as AddressInfo).port;
  const attempts: Array<[name: string, send: () => Promise<number>, logged: string]> = [
    ["the approval, refused by the service", async () => (await app.inject({
      method: "POST", url: `/api/v1/step-up/${order}.${token}`, payload: { idType: "resident-id", idNumber: "11010119900307123X" },
    })).statusCode, `/api/v1/step-up/${order}.[redacted]`],
    ["a method the link does not take (404)", async () => (await app.inject({ method: "GET", url: `/api/v1/step-up/${order}.${token}` })).statusCode,
      `/api/v1/step-up/${order}.[redacted]`],
    ["a body that is not JSON", async () => (await app.inject({
      method: "POST", url: `/api/v1/step-up/${order}.${token}`, headers: { "content-type": "application/json" }, payload: "{",
    })).statusCode, `/api/v1/step-up/${order}.[redacted]`],
    ["a bad %-escape, refused by the router", async () => (await rawExchange(port,
      `POST /api/v1/step-up/${order}.${token}%zz HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`)).status,
    `/api/v1/step-up/${order}.[redacted]`],
    ["the portal page with NUL in its query", async () => (await app.inject({ method: "GET", url: `/step-up/${order}.${token}?x=%00` })).statusCode,
      `/step-up/${order}.[redacted]?x=%00`],
  ];
  for (const [name, send, logged] of attempts) {
    lines.length = 0;
    const status = await send();
    assert.ok(status >= 400, `${name}: refused (${status})`);
    const log = lines.join("");
    assert.ok(log.includes(logged), `${name}: ${log}`);
    assert.ok(!log.includes(token), `${name}: the token is in the log: ${log}`);
  }
});

test("redactUrl keeps the order, drops the token, and leaves other URLs alone", () => {
  const cases: Array<[string, string]> = [
    ["/api/v1/step-up/ORD.s3cr3t", "/api/v1/step-up/ORD.[redacted]"],
    ["/step-up/ORD.s3cr3t?lang=zh", "/step-up/ORD.[redacted]?lang=zh"],
    ["/step-up/nodotsecret/more", "/step-up/[redacted]/more"],
    ["/api/v1/step-up/ORD.[redacted]", "/api/v1/step-up/ORD.[redacted]"],
    ["/api/v1/orders/ORD/step-up", "/api/v1/orders/ORD/step-up"],
    ["/ocsp/MEMwQTA%2FMD0wOzAJBgUrDgMCGgUABBQ", "/ocsp/MEMwQTA%2FMD0wOzAJBgUrDgMCGgUABBQ"],
    ["/api/v1/renewal-info/abc.def", "/api/v1/renewal-info/abc.def"],
  ];
  for (const [url, logged] of cases) assert.equal(redactUrl(url), logged, url);
});
