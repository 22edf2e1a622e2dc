import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { flows } from "../../src/flows/index.js";
import type { TokenStatus } from "../../src/flows/flow-types.js";
import { Pkcs12Backend, fileTokenSerial } from "../../src/keys/pkcs12-backend.js";
import type { OperationView } from "../../src/local-api/protocol.js";
import { createAgentWorld, type AgentWorld } from "../support/agent-world.js";
import { postPin, rawRequest, startTestAgent, type TestAgent, normSerial, waitForOperation } from "./support.js";

// Issue 16, problems 1 and 4: a PKCS#12 file token (the demo's) through the
// local API, as the portal drives it. Its certificates are encrypted, so
// GET /v1/tokens says they are hidden until the holder types the file's PIN
// in the agent's own PIN window (a "read-certificates" operation); then they
// are listed, with the server's advice for the web channel, not the CLI's.

let world: AgentWorld;
let agent: TestAgent;
let token: string;
let file: string;
let issued: { serial: string };

before(async () => {
  world = createAgentWorld("ukey-file-token-");
  // The web window opens 5 days before expiry, the CLI's (the preset's) long before: a 30-day
  // certificate is renewable now from the command line but not yet on the web.
  const cfgFile = join(world.dataDir, "config.json");
  const cfg = JSON.parse(readFileSync(cfgFile, "utf8")) as { profiles: unknown[] };
  cfg.profiles.push({ id: "web-late", preset: "gov-supervision", certificates: null, validity: { days: 30 }, keyAlgorithms: ["p256"], renewal: { windows: { web: { opensDaysBefore: 5, closesDaysAfter: 30 } } } });
  writeFileSync(cfgFile, JSON.stringify(cfg, null, 2));
  file = world.t.path("demo-token.p12");
  issued = await world.issueInFile("H1", "web-late", file);
  const server = await world.start();
  agent = await startTestAgent(flows, { backendFactory: async () => new Pkcs12Backend(file), server: { url: server.url }, now: () => new Date() });
  token = await agent.pair();
});
after(async () => {
  await agent?.close();
  await world?.cleanup();
});

const until = (id: string, pred: (v: OperationView) => boolean) => waitForOperation(agent, token, id, pred);

const norm = normSerial;

test("issue 16 (10): the doctor, right after pairing, counts the pairing and words a file's PIN and hidden certificates as a file's", async () => {
  const started = await agent.call("/v1/operations", { token, body: { kind: "doctor" } });
  const v = await until(started.json.id as string, (x) => x.state === "done" || x.state === "failed");
  const checks = v.result as { id: string; ok: boolean; zh: string; code?: string }[];
  const by = (id: string) => checks.find((c) => c.id === id)!;
  assert.deepEqual([by("pairings").ok, by("pairings").zh], [true, "已配对 1 个网站"]);
  assert.match(by("pin").zh, /证书文件/);
  assert.doesNotMatch(by("pin").zh, /未锁定/);
  assert.equal(by("certificate").ok, true, JSON.stringify(by("certificate")));
  assert.notEqual(by("certificate").code, "NO_CERTIFICATE_FOUND");
});

test("issue 16 (1): a file token's certificates are hidden, not absent, until its PIN is typed in the agent's window", async () => {
  const before = (await agent.call("/v1/tokens", { token })).json as unknown as TokenStatus[];
  assert.equal(before.length, 1);
  assert.equal(before[0]!.token.serial, fileTokenSerial(file));
  assert.equal(before[0]!.certificates.length, 0);
  assert.equal(before[0]!.certificatesHidden, true, "the portal must know to ask for the PIN rather than say the key is empty");

  const started = await agent.call("/v1/operations", { token, body: { kind: "read-certificates", tokenSerial: fileTokenSerial(file) } });
  assert.equal(started.status, 202, started.text);
  const id = started.json.id as string;
  let v = await until(id, (x) => x.state !== "running");
  assert.equal(v.input?.kind, "pin", JSON.stringify(v));
  const promptUrl = (v.input as { promptUrl: string }).promptUrl;
  assert.ok(promptUrl.startsWith(agent.api.url), "the PIN is asked in the agent's own page");
  const page = await rawRequest(promptUrl, { headers: {} });
  assert.equal(page.status, 200);
  assert.match(page.body, /读取 UKey 中的证书/);
  assert.match(page.body, /证书文件的密码（PIN）/);
  assert.doesNotMatch(page.body, /用途|Why/, "no raw reason word on the PIN page");

  const wrong = await postPin(promptUrl, { pin: "999999" });
  assert.equal(wrong.status, 303, wrong.body);
  v = (await agent.call(`/v1/operations/${id}`, { token })).json as unknown as OperationView;
  assert.equal((v.input as { retry?: { code: string } }).retry?.code, "PFX_PASSWORD_INCORRECT");
  const right = await postPin(String(wrong.headers.location), { pin: world.hsm.pin });
  assert.equal(right.status, 200, right.body);
  v = await until(id, (x) => x.state === "done" || x.state === "failed");
  assert.equal(v.state, "done", JSON.stringify(v.error));
  assert.ok(!JSON.stringify(v).includes(world.hsm.pin));

  const later = (await agent.call("/v1/tokens", { token })).json as unknown as TokenStatus[];
  assert.equal(later[0]!.certificatesHidden, undefined);
  const cert = later[0]!.certificates.find((c) => norm(c.certificate.serialHex) === norm(issued.serial));
  assert.ok(cert, JSON.stringify(later));
  assert.equal(cert.certificate.hasKey, true);
});

test("issue 16 (4): the portal's listing carries the web channel's advice, not the command line's", async () => {
  const tokens = (await agent.call("/v1/tokens", { token })).json as unknown as TokenStatus[];
  const cert = tokens[0]!.certificates.find((c) => norm(c.certificate.serialHex) === norm(issued.serial));
  assert.ok(cert, JSON.stringify(tokens));
  // CLI: open now (the preset's window); web: opens 5 days before expiry.
  assert.equal(cert.advice?.window, "not-yet-open", JSON.stringify(cert.advice));
  const cli = await flows.status({ backend: new Pkcs12Backend(file), server: { url: world.server!.url }, pin: world.hsm.pin });
  assert.equal(cli[0]!.certificates[0]!.advice?.window, "open", "the CLI's own listing keeps the CLI's window");
});
