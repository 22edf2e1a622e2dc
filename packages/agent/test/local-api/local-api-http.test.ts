import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync, statSync } from "node:fs";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import { createConnection, createServer, type AddressInfo, type Socket } from "node:net";
import { UkeyError, isUkeyError } from "@ukey/policy";
import { hashBearerToken, PairingFile } from "../../src/local-api/pairings.js";
import { startLocalApi } from "../../src/local-api/local-api-server.js";
import type { OperationView } from "../../src/local-api/protocol.js";
import { otherSite, portal, postPin, rawRequest, scriptedFlows, startTestAgent, type TestAgent, waitForOperation } from "./support.js";

// The flows here are a stand-in written for these tests (scriptedFlows):
// each drives the real Prompter of the local API through a fixed sequence
// of asks, so that the HTTP layer, pairing and the PIN page are tested on
// their own. local-api-flows.test.ts runs the real flows against a real
// server and a SoftHSM2 token.

const pin = "735119-secret";
const received: { pin?: string; idNumber?: string; code?: string } = {};

/** renew: PIN, then ID number, then one-time code (resend once), then done. */
const flows = scriptedFlows(async (ctx, kind) => {
  if (kind === "clean-up") {
    // Asks a question and never gets an answer within the test's short timeout.
    await ctx.prompter.confirm({ question: "remove?", consequences: ["the old certificate"] });
    return { removed: 0 };
  }
  if (kind === "change-pin") {
    received.pin = await ctx.prompter.pin({ tokenSerial: "T1", tokenLabel: "Alice's key", reason: "change the PIN", newPin: true });
    return undefined;
  }
  ctx.prompter.progress({ step: "read-token", zh: "读取 UKey", en: "Reading the UKey" });
  let p = await ctx.prompter.pin({ tokenSerial: "T1", tokenLabel: "Alice's key", reason: "sign the renewal request" });
  if (p !== pin) {
    p = await ctx.prompter.pin({ tokenSerial: "T1", tokenLabel: "Alice's key", reason: "sign the renewal request", retry: { code: "TOKEN_PIN_INCORRECT", triesLeft: 2 } });
  }
  received.pin = p;
  ctx.prompter.progress({ step: "verify-identity", zh: "核对证件", en: "Checking the ID" });
  received.idNumber = await ctx.prompter.idNumber({ idType: "resident-id" });
  const expiresAt = new Date("2026-11-21T10:05:00Z");
  let code = await ctx.prompter.oneTimeCode({ channel: "sms", maskedTo: "138****0000", expiresAt, resendAfter: new Date("2026-11-21T10:01:00Z") });
  if (code === "resend") code = await ctx.prompter.oneTimeCode({ channel: "sms", maskedTo: "138****0000", expiresAt, resendAfter: new Date("2026-11-21T10:02:00Z") });
  received.code = code;
  if (code !== "246810") throw new UkeyError("CODE_INVALID");
  ctx.prompter.progress({ step: "done", zh: "完成", en: "Done" });
  return { orderId: "o-1", resumed: false, certificate: { serialHex: "1a", subject: "CN=Alice", notBefore: "2026-11-21", notAfter: "2031-11-20", pem: "" }, removed: 0 };
});

let a: TestAgent;
before(async () => { a = await startTestAgent(flows, { inputTimeoutMs: 60_000 }); });
after(async () => { await a.close(); });

const corsHeaders = (h: Headers) => {
  const names: string[] = [];
  h.forEach((_v, k) => { if (k.startsWith("access-control-")) names.push(k); });
  return names;
};

const until = (token: string, id: string, pred: (v: OperationView) => boolean, origin = portal) => waitForOperation(a, token, id, pred, { origin, polls: 40 });

test("an origin that is not configured gets 403 ORIGIN_NOT_PAIRED and no CORS headers, preflight included", async () => {
  for (const [method, origin] of [["GET", "https://evil.example"], ["GET", null], ["POST", "https://evil.example"], ["OPTIONS", "https://evil.example"], ["GET", "http://portal.example.com"]] as const) {
    const r = await a.call(method === "POST" ? "/v1/pairings" : "/v1/hello", {
      origin, method, ...(method === "OPTIONS" ? { headers: { "access-control-request-method": "GET", "access-control-request-private-network": "true" } } : {}),
    });
    assert.equal(r.status, 403, `${method} ${origin}`);
    assert.equal(r.json.code, "ORIGIN_NOT_PAIRED");
    assert.deepEqual(corsHeaders(r.headers), [], `${method} ${origin}: ${corsHeaders(r.headers).join()}`);
  }
  assert.equal(a.codes.length, 0, "no pairing was started for a refused origin");
});

test("a configured origin says hello and pairs with the code the agent shows, never the page", async () => {
  const hello = await a.call("/v1/hello");
  assert.equal(hello.status, 200);
  assert.deepEqual(hello.json, { agent: "ukey-agent", version: "0.1.0", protocol: 1, paired: false });
  assert.equal(hello.headers.get("access-control-allow-origin"), portal);

  const started = await a.call("/v1/pairings", { method: "POST" });
  assert.equal(started.status, 201);
  assert.deepEqual(Object.keys(started.json).sort(), ["expiresAt", "id"]);
  assert.equal(started.json.expiresAt, "2026-11-21T10:02:00.000Z");
  const shown = a.codes.at(-1)!;
  assert.equal(shown.origin, portal);
  assert.match(shown.code, /^\d{6}$/);
  assert.ok(!started.text.includes(shown.code));

  const confirmed = await a.call(`/v1/pairings/${started.json.id as string}/confirm`, { body: { code: shown.code } });
  assert.equal(confirmed.status, 200, confirmed.text);
  assert.equal(confirmed.json.origin, portal);
  const token = confirmed.json.token as string;
  assert.match(token, /^[A-Za-z0-9_-]{43}$/);
  assert.equal((await a.call("/v1/hello", { token })).json.paired, true);
  assert.equal((await a.call("/v1/hello", { token: "x".repeat(43) })).json.paired, false);

  // The same pairing cannot be confirmed twice.
  const again = await a.call(`/v1/pairings/${started.json.id as string}/confirm`, { body: { code: shown.code } });
  assert.equal(again.status, 404);
  assert.equal(again.json.code, "PAIRING_EXPIRED");

  // Stored as a hash, in a file only the holder can read.
  const file = join(a.home, "pairings.json");
  assert.equal(statSync(file).mode & 0o777, 0o600);
  const text = readFileSync(file, "utf8");
  assert.ok(!text.includes(token));
  assert.ok(text.includes(hashBearerToken(token)));
  assert.deepEqual(new PairingFile(a.home).list().map((p) => p.origin), [portal]);
});

test("five wrong pairing codes end the pairing, and the origin cannot start a new one until it expires", async () => {
  const origin = otherSite;
  const started = await a.call("/v1/pairings", { origin, method: "POST" });
  const id = started.json.id as string;
  const right = a.codes.at(-1)!.code;
  const wrong = right === "000000" ? "000001" : "000000";
  for (let i = 1; i <= 4; i++) {
    const r = await a.call(`/v1/pairings/${id}/confirm`, { origin, body: { code: wrong } });
    assert.equal(r.status, 400, r.text);
    assert.equal(r.json.code, "PAIRING_CODE_INVALID");
    assert.deepEqual(r.json.params, { triesLeft: 5 - i });
    assert.equal(r.headers.get("access-control-allow-origin"), origin, "the page can read why");
  }
  const fifth = await a.call(`/v1/pairings/${id}/confirm`, { origin, body: { code: wrong } });
  assert.equal(fifth.status, 409);
  assert.equal(fifth.json.code, "PAIRING_ENDED");
  const rightTooLate = await a.call(`/v1/pairings/${id}/confirm`, { origin, body: { code: right } });
  assert.equal(rightTooLate.json.code, "PAIRING_ENDED");
  const restart = await a.call("/v1/pairings", { origin, method: "POST" });
  assert.equal(restart.status, 409);
  assert.equal(restart.json.code, "PAIRING_ENDED");
  assert.ok(!new PairingFile(a.home).list().some((p) => p.origin === origin));

  // A malformed code is refused by the schema and is not a guess.
  a.clock.now = new Date(a.clock.now.getTime() + 2 * 60 * 1000 + 1);
  try {
    const fresh = await a.call("/v1/pairings", { origin, method: "POST" });
    assert.equal(fresh.status, 201);
    const bad = await a.call(`/v1/pairings/${fresh.json.id as string}/confirm`, { origin, body: { code: "12345" } });
    assert.equal(bad.json.code, "REQUEST_INVALID");
    // Two minutes later the code is dead.
    a.clock.now = new Date(a.clock.now.getTime() + 2 * 60 * 1000 + 1);
    const late = await a.call(`/v1/pairings/${fresh.json.id as string}/confirm`, { origin, body: { code: a.codes.at(-1)!.code } });
    assert.equal(late.status, 404);
    assert.equal(late.json.code, "PAIRING_EXPIRED");
  } finally {
    a.clock.now = new Date("2026-11-21T10:00:00Z");
  }
});

test("a bearer token issued to one origin is useless from another", async () => {
  const tokenA = await a.pair(portal);
  for (const path of ["/v1/tokens", "/v1/operations/x"]) {
    const r = await a.call(path, { origin: otherSite, token: tokenA });
    assert.equal(r.status, 403, path);
    assert.equal(r.json.code, "ORIGIN_NOT_PAIRED");
  }
  assert.equal((await a.call("/v1/hello", { origin: otherSite, token: tokenA })).json.paired, false);
  const noToken = await a.call("/v1/operations", { body: { kind: "renew", tokenSerial: "T1" } });
  assert.equal(noToken.status, 403);
  assert.equal((await a.call("/v1/tokens", { token: tokenA })).status, 200);

  // An operation is the starting origin's alone, even for another paired origin.
  const started = await a.call("/v1/operations", { token: tokenA, body: { kind: "renew", tokenSerial: "T-origin" } });
  assert.equal(started.status, 202, started.text);
  a.clock.now = new Date(a.clock.now.getTime() + 2 * 60 * 1000 + 1);
  const tokenB = await a.pair(otherSite);
  a.clock.now = new Date("2026-11-21T10:00:00Z");
  const peek = await a.call(`/v1/operations/${started.json.id as string}`, { origin: otherSite, token: tokenB });
  assert.equal(peek.status, 404);
  assert.equal(peek.json.code, "OPERATION_NOT_FOUND");
  const answer = await a.call(`/v1/operations/${started.json.id as string}/input`, { origin: otherSite, token: tokenB, body: { idNumber: "1" } });
  assert.equal(answer.json.code, "OPERATION_NOT_FOUND");
});

test("preflights of a configured origin allow the headers and Private/Local Network Access", async () => {
  const r = await a.call("/v1/operations", {
    method: "OPTIONS",
    headers: { "access-control-request-method": "POST", "access-control-request-headers": "authorization,content-type", "access-control-request-private-network": "true" },
  });
  assert.equal(r.status, 204);
  assert.equal(r.headers.get("access-control-allow-origin"), portal);
  assert.equal(r.headers.get("access-control-allow-private-network"), "true");
  assert.equal(r.headers.get("access-control-allow-local-network"), "true");
  assert.match(r.headers.get("access-control-allow-methods")!, /POST/);
  assert.match(r.headers.get("access-control-allow-headers")!, /authorization/);
  assert.match(r.headers.get("vary")!, /Origin/);
  assert.equal(r.headers.get("access-control-allow-credentials"), null);
});

test("a Host header other than 127.0.0.1:PORT or localhost:PORT is refused (DNS rebinding)", async () => {
  const port = a.api.port;
  for (const host of [`evil.example:${port}`, `127.0.0.1.nip.io:${port}`, "127.0.0.1", `127.0.0.1:${port + 1}`, `localhost.evil.example:${port}`]) {
    for (const path of ["/v1/hello", "/prompt/x/y"]) {
      const r = await rawRequest(`${a.api.url}${path}`, { headers: { host, origin: portal } });
      assert.equal(r.status, 403, `${host} ${path}`);
      assert.equal(JSON.parse(r.body).code, "ORIGIN_NOT_PAIRED");
      assert.equal(r.headers["access-control-allow-origin"], undefined);
    }
  }
  const ok = await rawRequest(`${a.api.url}/v1/hello`, { headers: { host: `localhost:${port}`, origin: portal } });
  assert.equal(ok.status, 200);
  // No spelling of a path under /prompt/ escapes the origin check of the API.
  for (const path of ["/prompt/a/../../v1/hello", "/prompt/%2e%2e/%2e%2e/v1/hello", "/prompt//v1/hello", "/prompt/a/b/../../../v1/hello"]) {
    const r = await rawRequest(`${a.api.url}${path}`, { headers: { origin: "https://evil.example" } });
    assert.notEqual(r.status, 200, path);
    assert.doesNotMatch(r.body, /ukey-agent/, path);
  }
});

test("bodies that are not small JSON are refused with a catalogue code", async () => {
  const token = await a.pair();
  const big = await a.call("/v1/operations", { token, body: { kind: "renew", tokenSerial: "x".repeat(20_000) } });
  assert.equal(big.status, 413);
  assert.equal(big.json.code, "REQUEST_TOO_LARGE");
  for (const type of ["text/plain", "application/x-www-form-urlencoded"]) {
    const r = await a.call("/v1/operations", { token, body: "kind=renew&tokenSerial=T", headers: { "content-type": type } });
    assert.equal(r.status, 415, type); // RFC 9110 §15.5.16, as the server answers
    assert.equal(r.json.code, "UNSUPPORTED_MEDIA_TYPE");
    assert.equal((r.json.message as Record<string, string>).en, `Unsupported content type: ${type}`);
  }
  for (const body of [{ kind: "format-disk", tokenSerial: "T" }, { kind: "renew" }, { kind: "renew", tokenSerial: "T", extra: 1 }, { kind: "download", tokenSerial: "T", referenceNumber: "R" }]) {
    const r = await a.call("/v1/operations", { token, body });
    assert.equal(r.status, 400, JSON.stringify(body));
    assert.equal(r.json.code, "REQUEST_INVALID");
    assert.ok((r.json.message as Record<string, string>).zh && (r.json.remedy as Record<string, string>).en);
  }
  const malformed = await a.call("/v1/operations", { token, body: "{not json" });
  assert.equal(malformed.json.code, "REQUEST_INVALID");
  const bogusWait = await a.call("/v1/operations/x?wait=soon", { token });
  assert.equal(bogusWait.json.code, "REQUEST_INVALID");
  const missing = await a.call("/v1/nothing", { token });
  assert.equal(missing.status, 404);
  assert.equal(missing.json.code, "ROUTE_NOT_FOUND");
});

test("a whole operation: PIN in the agent's page (wrong, then right), ID number and one-time code through the API", async () => {
  const token = await a.pair();
  const started = await a.call("/v1/operations", { token, body: { kind: "renew", tokenSerial: "T1" } });
  assert.equal(started.status, 202);
  const id = started.json.id as string;

  const second = await a.call("/v1/operations", { token, body: { kind: "initialise", tokenSerial: "T1" } });
  assert.equal(second.status, 409);
  assert.equal(second.json.code, "OPERATION_IN_PROGRESS");

  let v = await until(token, id, (x) => x.state === "needs-input");
  assert.equal(v.input?.kind, "pin");
  assert.deepEqual(v.progress.map((p) => p.step), ["read-token"]);
  const promptUrl = (v.input as { promptUrl: string }).promptUrl;
  assert.ok(promptUrl.startsWith(`${a.api.url}/prompt/${id}/`), promptUrl);

  // A PIN sent to the API is refused and changes nothing.
  const viaApi = await a.call(`/v1/operations/${id}/input`, { token, body: { pin } });
  assert.equal(viaApi.status, 400);
  assert.equal(viaApi.json.code, "REQUEST_INVALID");
  assert.ok(!viaApi.text.includes(pin));
  for (const body of [{ PIN: pin }, { userPin: pin }, { code: pin }]) {
    const r = await a.call(`/v1/operations/${id}/input`, { token, body });
    assert.equal(r.status, 400, JSON.stringify(body));
    assert.ok(!r.text.includes(pin));
  }
  v = (await a.call(`/v1/operations/${id}`, { token })).json as unknown as OperationView;
  assert.equal(v.state, "needs-input");
  assert.equal((v.input as { promptUrl: string }).promptUrl, promptUrl);

  // The page, as the pop-up shows it.
  const page = await rawRequest(promptUrl, { headers: {} });
  assert.equal(page.status, 200);
  assert.match(page.body, /Alice&#39;s key/);
  assert.match(page.body, /T1/);
  assert.match(page.body, /https:\/\/portal\.example\.com/);
  assert.match(page.body, /网站看不到您输入的 PIN/);
  assert.match(page.body, /the website cannot see it/);
  assert.match(page.body, /<form method="post">/);

  // A post from the portal's page (another origin) is refused and leaves the prompt open.
  const crossSite = await postPin(promptUrl, { pin }, { origin: portal, "sec-fetch-site": "cross-site" });
  assert.equal(crossSite.status, 403);
  const crossSiteNull = await postPin(promptUrl, { pin }, { origin: "null", "sec-fetch-site": "cross-site" });
  assert.equal(crossSiteNull.status, 403);
  assert.equal((await rawRequest(promptUrl, { headers: {} })).status, 200);

  // Wrong PIN: the same window goes on to the retry page, which shows tries left and the catalogue's words.
  const wrong = await postPin(promptUrl, { pin: "000000" });
  assert.equal(wrong.status, 303);
  const retryUrl = String(wrong.headers.location);
  assert.notEqual(retryUrl, promptUrl);
  assert.equal((await rawRequest(promptUrl, { headers: {} })).status, 410, "a nonce is used once");
  v = (await a.call(`/v1/operations/${id}`, { token })).json as unknown as OperationView;
  assert.deepEqual(v.input, { kind: "pin", promptUrl: retryUrl, retry: { code: "TOKEN_PIN_INCORRECT", triesLeft: 2 } });
  const retryPage = await rawRequest(retryUrl, { headers: {} });
  assert.match(retryPage.body, /UKey 密码（PIN）错误/);
  assert.match(retryPage.body, /Wrong UKey PIN/);
  assert.match(retryPage.body, /还可以再试 2 次/);
  assert.match(retryPage.body, /2 tries left/);

  const right = await postPin(retryUrl, { pin }, { origin: a.api.url, "sec-fetch-site": "same-origin" });
  assert.equal(right.status, 200);
  assert.match(right.body, /PIN 已通过/);
  assert.equal(received.pin, pin);

  v = await until(token, id, (x) => x.input?.kind === "id-number");
  assert.deepEqual(v.input, { kind: "id-number", idType: "resident-id" });
  const wrongKind = await a.call(`/v1/operations/${id}/input`, { token, body: { code: "1" } });
  assert.equal(wrongKind.json.code, "REQUEST_INVALID");
  const idAnswer = await a.call(`/v1/operations/${id}/input`, { token, body: { idNumber: " 11010119900307123X " } });
  assert.equal(idAnswer.status, 202);
  assert.equal(received.idNumber, "11010119900307123X");

  v = await until(token, id, (x) => x.input?.kind === "one-time-code");
  assert.deepEqual(v.input, { kind: "one-time-code", channel: "sms", maskedTo: "138****0000", expiresAt: "2026-11-21T10:05:00.000Z", resendAfter: "2026-11-21T10:01:00.000Z" });
  assert.equal((await a.call(`/v1/operations/${id}/input`, { token, body: { resend: true } })).status, 202);
  v = await until(token, id, (x) => x.input?.kind === "one-time-code" && (x.input as { resendAfter: string }).resendAfter.startsWith("2026-11-21T10:02"));
  assert.equal((await a.call(`/v1/operations/${id}/input`, { token, body: { code: "246810" } })).status, 202);

  v = await until(token, id, (x) => x.state === "done");
  assert.equal(v.input, undefined);
  assert.equal((v.result as { orderId: string }).orderId, "o-1");
  assert.deepEqual(v.progress.map((p) => p.step), ["read-token", "verify-identity", "done"]);
  assert.equal(v.progress[0]!.at, "2026-11-21T10:00:00.000Z");
  const late = await a.call(`/v1/operations/${id}/input`, { token, body: { code: "1" } });
  assert.equal(late.json.code, "REQUEST_INVALID");

  // The PIN is in no log line and no file of the agent's home.
  assert.ok(a.logs.length > 5);
  assert.ok(!a.logs.some((l) => l.includes(pin)), a.logs.join("\n"));
  assert.ok(!a.logs.some((l) => l.includes("11010119900307123X") || l.includes("246810")));
  for (const name of readdirSync(a.home, { recursive: true }) as string[]) {
    const p = join(a.home, name);
    if (statSync(p).isFile()) assert.ok(!readFileSync(p, "utf8").includes(pin), name);
  }
});

test("the PIN page's headers forbid framing, scripts, referrers and caching; unknown prompts get 410", async () => {
  const token = await a.pair();
  const started = await a.call("/v1/operations", { token, body: { kind: "change-pin", tokenSerial: "T2" } });
  const v = await until(token, started.json.id as string, (x) => x.state === "needs-input");
  assert.deepEqual(v.input, { kind: "pin", promptUrl: (v.input as { promptUrl: string }).promptUrl, newPin: true });
  const url = (v.input as { promptUrl: string }).promptUrl;
  for (const r of [await rawRequest(url, { headers: {} }), await rawRequest(`${a.api.url}/prompt/nope/nope`, { headers: {} })]) {
    const csp = String(r.headers["content-security-policy"]);
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /style-src 'sha256-[A-Za-z0-9+/=]+'/);
    assert.match(csp, /form-action 'self'/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.doesNotMatch(csp, /script-src/);
    assert.equal(r.headers["x-frame-options"], "DENY");
    assert.equal(r.headers["referrer-policy"], "no-referrer");
    assert.equal(r.headers["cache-control"], "no-store");
    assert.equal(r.headers["access-control-allow-origin"], undefined);
    assert.match(String(r.headers["content-type"]), /^text\/html; charset=utf-8/);
    assert.doesNotMatch(r.body, /<script/i);
  }
  const gone = await rawRequest(`${a.api.url}/prompt/nope/nope`, { headers: {} });
  assert.equal(gone.status, 410);
  assert.match(gone.body, /这个 PIN 输入窗口已经用过或已失效/);

  // A new PIN is typed twice; when the two differ the page says so and stays usable.
  const page = await rawRequest(url, { headers: {} });
  assert.match(page.body, /name="pin2"/);
  const differ = await postPin(url, { pin: "112233", pin2: "112234" });
  assert.equal(differ.status, 400);
  assert.match(differ.body, /两次输入的新 PIN 不一致/);
  const empty = await postPin(url, { pin: "" });
  assert.equal(empty.status, 400);
  const ok = await postPin(url, { pin: "112233", pin2: "112233" });
  assert.equal(ok.status, 200);
  assert.match(ok.body, /已完成/);
  assert.equal(received.pin, "112233");
  assert.equal((await postPin(url, { pin: "112233", pin2: "112233" })).status, 410);
});

test("an operation nobody answers fails with SESSION_EXPIRED and frees its token", async () => {
  const quick = await startTestAgent(flows, { inputTimeoutMs: 300 });
  try {
    const token = await quick.pair();
    const started = await quick.call("/v1/operations", { token, body: { kind: "clean-up", tokenSerial: "T3" } });
    let v = started.json as unknown as OperationView;
    for (let i = 0; i < 40 && v.state !== "failed"; i++) {
      v = (await quick.call(`/v1/operations/${v.id}?after=${v.progress.length}&revision=${v.revision}&wait=25`, { token })).json as unknown as OperationView;
    }
    assert.equal(v.state, "failed");
    assert.equal(v.error?.code, "SESSION_EXPIRED");
    assert.ok(v.error?.message.zh && v.error.message.en && v.error.remedy.zh && v.error.remedy.en);
    assert.equal(v.input, undefined);
    const again = await quick.call("/v1/operations", { token, body: { kind: "clean-up", tokenSerial: "T3" } });
    assert.equal(again.status, 202, "the token is free again");
  } finally {
    await quick.close();
  }
});

test("a long poll with the last revision waits through a pending input and wakes on the answer", async () => {
  const token = await a.pair();
  const started = await a.call("/v1/operations", { token, body: { kind: "renew", tokenSerial: "T4" } });
  const v = await until(token, started.json.id as string, (x) => x.state === "needs-input");
  // Without a revision, a view waiting for input answers at once.
  const now = await a.call(`/v1/operations/${v.id}?after=${v.progress.length}&wait=25`, { token });
  assert.equal((now.json as unknown as OperationView).revision, v.revision);
  const polling = a.call(`/v1/operations/${v.id}?after=${v.progress.length}&revision=${v.revision}&wait=25`, { token });
  const promptUrl = (v.input as { promptUrl: string }).promptUrl;
  assert.equal((await postPin(promptUrl, { pin })).status, 200);
  const woke = (await polling).json as unknown as OperationView;
  assert.ok(woke.revision! > v.revision!);
  assert.notEqual(woke.input?.kind, "pin");
});

test("unpairing in the pairing file takes effect on the running agent at once", async () => {
  const token = await a.pair(otherSite).catch(async () => {
    a.clock.now = new Date(a.clock.now.getTime() + 2 * 60 * 1000 + 1);
    return a.pair(otherSite);
  });
  a.clock.now = new Date("2026-11-21T10:00:00Z");
  assert.equal((await a.call("/v1/tokens", { origin: otherSite, token })).status, 200);
  assert.ok(new PairingFile(a.home).remove(otherSite) >= 1);
  assert.equal((await a.call("/v1/tokens", { origin: otherSite, token })).status, 403);
});

test("listens only on 127.0.0.1 and refuses any other host", async () => {
  await assert.rejects(
    startLocalApi({ port: 0, host: "0.0.0.0", allowedOrigins: [], flows, backendFactory: async () => { throw new Error("unused"); }, server: { url: "https://ra.example.org" }, version: "0.1.0", log: () => {} }),
    (e: unknown) => isUkeyError(e, "CONFIG_INVALID"),
  );
  const address = a.api.url.replace("http://", "").split(":")[0];
  assert.equal(address, "127.0.0.1");
  const others = Object.values(networkInterfaces()).flat().filter((i) => i && !i.internal && i.family === "IPv4").map((i) => i!.address);
  for (const ip of [...others, "::1"]) {
    const refused = await new Promise<boolean>((resolve) => {
      const s = createConnection({ host: ip, port: a.api.port });
      s.once("connect", () => { s.destroy(); resolve(false); });
      s.once("error", () => resolve(true));
    });
    assert.ok(refused, `reachable on ${ip}`);
  }
  const inUse = await startLocalApi({ port: a.api.port, allowedOrigins: [], flows, backendFactory: async () => { throw new Error("unused"); }, server: { url: "https://ra.example.org" }, version: "0.1.0", log: () => {} })
    .then(async (x) => { await x.close(); return undefined; }, (e: unknown) => e);
  // The port is this test's own agent, which answers /v1/hello: the second start names it (issue 14's refusals).
  assert.ok(isUkeyError(inUse, "AGENT_ALREADY_RUNNING"), String(inUse));
});

test("a port held by a program that is silent, trickles its answer or sends too much: AGENT_PORT_IN_USE within about a second each", async () => {
  const start = (port: number) => startLocalApi({ port, allowedOrigins: [portal], flows, backendFactory: async () => { throw new Error("unused"); }, server: { url: "https://ra.example.org" }, version: "0.1.0", log: () => {} })
    .then(async (x) => { await x.close(); return undefined; }, (e: unknown) => e);
  const hello = JSON.stringify({ agent: "ukey-agent", version: "9.9.9", protocol: 1, paired: false });
  const behaviours: Record<string, (s: Socket) => void> = {
    silent: () => {},
    // A ukey agent's hello, one byte every 100 ms: it would take seconds to arrive.
    trickle: (s) => {
      s.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${hello.length}\r\n\r\n`);
      let i = 0;
      const timer = setInterval(() => { if (i < hello.length && !s.destroyed) s.write(hello[i++]!); else clearInterval(timer); }, 100);
      s.on("close", () => clearInterval(timer));
    },
    // A hello padded past 4 KB.
    flood: (s) => {
      const body = `${hello.slice(0, -1)}, "pad": "${"x".repeat(8192)}"}`;
      s.end(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
    },
  };
  for (const [name, behave] of Object.entries(behaviours)) {
    const sockets = new Set<Socket>();
    const squatter = createServer((s) => { sockets.add(s); s.on("error", () => {}); behave(s); });
    await new Promise<void>((r) => squatter.listen(0, "127.0.0.1", r));
    try {
      const t0 = performance.now();
      const refused = await start((squatter.address() as AddressInfo).port);
      const ms = performance.now() - t0;
      assert.ok(isUkeyError(refused, "AGENT_PORT_IN_USE"), `${name}: ${String(refused)}`);
      // One second per origin asked (the portal and the server), and no more.
      assert.ok(ms < 2 * 1000 + 1500, `${name} took ${ms.toFixed(0)} ms`);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => squatter.close(() => r()));
    }
  }
});
