import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { readFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { catalogue, isUkeyError } from "@ukey/policy";
import { ServerClient, paramsFromMessage } from "../src/server-client.js";
import { initialisedDataDir, startUkeyServer, tempDir, type RunningServer, type TempDir } from "../../server/test/support/fixtures.js";

// The agent's client against the real server process (HTTP and HTTPS with
// the data directory's own TLS certificate) and against a tiny local
// server that answers nonsense.
let t: TempDir;
let server: RunningServer;
let dataDir: string;
let tlsPort: number;
let garbage: Server;
let garbageUrl: string;
let answer: { status: number; type: string; body: string } = { status: 200, type: "text/html", body: "<html>hello</html>" };

before(async () => {
  t = tempDir("ukey-agent-client-");
  let env: Record<string, string>;
  ({ dataDir, env } = initialisedDataDir(t));
  tlsPort = 20000 + Math.floor(Math.random() * 20000);
  server = await startUkeyServer(dataDir, env, ["--tls-port", String(tlsPort)]);
  garbage = createServer((_req, res) => { res.writeHead(answer.status, { "content-type": answer.type }); res.end(answer.body); });
  await new Promise<void>((r) => garbage.listen(0, "127.0.0.1", () => r()));
  garbageUrl = `http://127.0.0.1:${(garbage.address() as AddressInfo).port}`;
});
after(async () => {
  await server?.stop();
  await new Promise((r) => garbage?.close(r));
  t?.cleanup();
});

async function refusal(p: Promise<unknown>): Promise<{ code: string; params: Record<string, unknown> }> {
  try {
    await p;
  } catch (e) {
    assert.ok(isUkeyError(e), `not a UkeyError: ${String(e)}`);
    return { code: e.code, params: e.params };
  }
  assert.fail("expected a refusal");
}

test("a problem document becomes the server's code, with its params read back from the message", async () => {
  const c = new ServerClient({ url: server.url });
  await c.ping();
  assert.ok(c.lastDate, "the Date header is recorded for the clock check");
  const r = await refusal(c.renewalInfo("AAAA.AQ", "cli"));
  assert.equal(r.code, "CERT_NOT_FOUND");
  const o = await refusal(c.challenge("00000000-0000-0000-0000-000000000000"));
  assert.equal(o.code, "ORDER_NOT_FOUND");
  assert.equal(o.params.order, "00000000-0000-0000-0000-000000000000");
});

test("params come back from any catalogue template, dates included", () => {
  assert.deepEqual(paramsFromMessage(catalogue.RENEWAL_NOT_YET_OPEN.en, "It is too early to renew: online renewal opens on 2031-09-04."), { opensAt: "2031-09-04" });
  assert.deepEqual(paramsFromMessage(catalogue.RENEWAL_NOT_YET_OPEN.en, "something else"), {});
});

test("HTTPS: trusted with the institution's root given, untrusted without it", async () => {
  const url = `https://localhost:${tlsPort}`;
  const caPem = readFileSync(`${dataDir}/tls/server.cer.pem`, "utf8");
  await new ServerClient({ url, caPem }).ping();
  const r = await refusal(new ServerClient({ url }).ping());
  assert.equal(r.code, "SERVER_CERT_UNTRUSTED");
});

test("a server that answers nonsense: SERVER_RESPONSE_INVALID, whatever the nonsense", async () => {
  const c = new ServerClient({ url: garbageUrl });
  const cases = [
    { status: 200, type: "text/html", body: "<html>captive portal</html>" },
    { status: 200, type: "application/json", body: "{\"id\": 5}" },
    { status: 502, type: "text/plain", body: "Bad Gateway" },
    { status: 409, type: "application/json", body: "{\"code\": \"NOT_A_CODE_WE_KNOW\"}" },
    { status: 200, type: "application/json", body: "[1, 2" },
  ];
  for (const a of cases) {
    answer = a;
    const r = await refusal(c.startOrder("AAAA.AQ", "cli"));
    assert.equal(r.code, "SERVER_RESPONSE_INVALID", JSON.stringify(a));
    assert.equal(r.params.server, garbageUrl);
  }
});

test("nobody listening: SERVER_UNREACHABLE; a bad address: CLI_USAGE", async () => {
  const closed = createServer();
  await new Promise<void>((r) => closed.listen(0, "127.0.0.1", () => r()));
  const port = (closed.address() as AddressInfo).port;
  await new Promise((r) => closed.close(r));
  assert.equal((await refusal(new ServerClient({ url: `http://127.0.0.1:${port}` }).ping())).code, "SERVER_UNREACHABLE");
  assert.throws(() => new ServerClient({ url: "ftp://example.com" }), (e) => isUkeyError(e, "CLI_USAGE"));
  assert.throws(() => new ServerClient({ url: "not a url" }), (e) => isUkeyError(e, "CLI_USAGE"));
});
