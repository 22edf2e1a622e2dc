import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { flows } from "../../src/flows/index.js";
import type { RenewResult, TokenStatus } from "../../src/flows/flow-types.js";
import { Pkcs11Backend } from "../../src/keys/pkcs11-backend.js";
import type { OperationView } from "../../src/local-api/protocol.js";
import type { CertificatePreview } from "../../src/prompter.js";
import { createAgentWorld, type AgentWorld } from "../support/agent-world.js";
import { postPin, rawRequest, startTestAgent, type TestAgent, normSerial, waitForOperation } from "./support.js";

// The real flows through the local API: a real ukey-server with its
// embedded database, a SoftHSM2 token holding a certificate it issued, and
// the agent's PKCS#11 backend, driven over HTTP as the portal does.

let world: AgentWorld;
let agent: TestAgent;
let issued: { serial: string; certId: string; notAfter: string };
let otpToken: string;
let freshToken: string;
let lockToken: string;
let token: string;

before(async () => {
  world = createAgentWorld("ukey-local-api-");
  issued = await world.issueOnToken("H1", "e2e", "p256");
  otpToken = world.addToken("otp");
  await world.issueOnToken("H3", "otp", "p256", otpToken);
  freshToken = world.addToken("fresh");
  lockToken = world.addToken("lock");
  await world.issueOnToken("H3", "otp", "p256", lockToken);
  const server = await world.start();
  agent = await startTestAgent(flows, {
    backendFactory: async () => new Pkcs11Backend(world.hsm.module),
    server: { url: server.url },
    now: () => new Date(),
  });
  token = await agent.pair();
});
after(async () => {
  await agent?.close();
  await world?.cleanup();
});

const until = (id: string, pred: (v: OperationView) => boolean) => waitForOperation(agent, token, id, pred);

/** The files of SoftHSM2's token directory with their sizes, for a failure message. */
function tokenFiles(conf: string): string[] {
  const dir = /directories\.tokendir\s*=\s*(\S+)/.exec(readFileSync(conf, "utf8"))?.[1];
  if (!dir) return ["(no tokendir in the configuration)"];
  return (readdirSync(dir, { recursive: true }) as string[]).sort().map((n) => `${n} ${statSync(join(dir, n)).size}`);
}

const norm = normSerial;

test("GET /v1/tokens: the token, its certificate and the server's advice, without a PIN", async () => {
  const r = await agent.call("/v1/tokens", { token });
  assert.equal(r.status, 200, r.text);
  const tokens = r.json as unknown as TokenStatus[];
  const mine = tokens.find((t) => t.token.serial === world.hsm.tokenSerial);
  assert.ok(mine, r.text);
  assert.equal(mine.token.label, world.hsm.tokenLabel);
  const cert = mine.certificates.find((c) => norm(c.certificate.serialHex) === norm(issued.serial));
  assert.ok(cert, JSON.stringify(mine.certificates));
  assert.equal(cert.state, "expiring");
  assert.equal(cert.advice?.window, "open");
  assert.ok(!("der" in cert.certificate));
});

test("renew through the local API: the PIN typed in the agent's page (a wrong one first), a new certificate on the token", async () => {
  const started = await agent.call("/v1/operations", { token, body: { kind: "renew", tokenSerial: world.hsm.tokenSerial } });
  assert.equal(started.status, 202, started.text);
  const id = started.json.id as string;

  // Issue 16 (seed 004 §3.5): first the certificate and the new one, to confirm; the PIN only after.
  let v = await until(id, (x) => x.state !== "running");
  assert.equal(v.input?.kind, "confirm", JSON.stringify(v));
  const preview = (v.input as { preview?: CertificatePreview }).preview;
  assert.ok(preview, JSON.stringify(v.input));
  assert.equal(preview.kind, "renew");
  assert.equal(norm(preview.current!.serialHex), norm(issued.serial));
  assert.match(preview.current!.subject, /CN=Holder H1/);
  assert.equal(preview.next.subject, preview.current!.subject, "the RA's record, as on the key");
  assert.ok(Math.abs(Date.parse(preview.next.notAfter) - (Date.now() + 30 * 86_400_000)) < 120_000, "the e2e profile's 30 days from now");
  assert.equal(preview.next.algorithm, "p256");
  assert.equal(preview.next.pair, false);
  assert.ok(!v.progress.some((p) => p.step === "prove-possession"), "nothing asked of the server yet");
  assert.equal((await agent.call(`/v1/operations/${id}/input`, { token, body: { confirm: true } })).status, 202);
  v = await until(id, (x) => x.input?.kind === "pin" || x.state === "failed");
  assert.equal(v.input?.kind, "pin", JSON.stringify(v));
  const promptUrl = (v.input as { promptUrl: string }).promptUrl;
  const page = await rawRequest(promptUrl, { headers: {} });
  assert.equal(page.status, 200);
  assert.ok(page.body.includes(world.hsm.tokenSerial));
  assert.ok(page.body.includes(world.hsm.tokenLabel));

  const wrong = await postPin(promptUrl, { pin: "999999" });
  assert.equal(wrong.status, 303, wrong.body);
  const retryUrl = String(wrong.headers.location);
  const retryPage = await rawRequest(retryUrl, { headers: {} });
  assert.match(retryPage.body, /Wrong UKey PIN/);
  v = (await agent.call(`/v1/operations/${id}`, { token })).json as unknown as OperationView;
  assert.equal((v.input as { retry?: { code: string } }).retry?.code, "TOKEN_PIN_INCORRECT");

  // The page waits for the renewal to finish and says so.
  const right = await postPin(retryUrl, { pin: world.hsm.pin });
  assert.equal(right.status, 200, right.body);
  assert.match(right.body, /已完成/);
  assert.match(right.body, /Done\. Go back to the page for the result/);

  v = await until(id, (x) => x.state === "done" || x.state === "failed");
  assert.equal(v.state, "done", JSON.stringify(v.error));
  const result = v.result as RenewResult;
  assert.equal(result.resumed, false);
  assert.notEqual(norm(result.certificate.serialHex), norm(issued.serial));
  assert.match(result.certificate.pem, /BEGIN CERTIFICATE/);
  const steps = v.progress.map((p) => p.step);
  for (const step of ["prove-possession", "generate-key", "install", "done"]) assert.ok(steps.includes(step as never), steps.join());

  // The token holds the new certificate, and the status says so: first as
  // the agent's own session sees it, then as another process (pkcs11-tool)
  // reads the token's files. Should the two ever disagree, the message holds
  // both views and the token directory's files, to tell a SoftHSM2 file
  // visibility problem from an install the agent never made.
  const tokens = (await agent.call("/v1/tokens", { token })).json as unknown as TokenStatus[];
  const certs = tokens.find((t) => t.token.serial === world.hsm.tokenSerial)!.certificates;
  assert.ok(certs.some((c) => norm(c.certificate.serialHex) === norm(result.certificate.serialHex) && c.state === "expiring"), JSON.stringify(certs));
  const objects = world.objects();
  // Both sides normalised alike: pkcs11-tool's listing keeps a serial's single leading 0 digit ("0e25…"), which
  // norm drops; compared raw, one serial in sixteen failed here although the token held it.
  assert.ok(objects.certificates.some((c) => norm(c.serialHex ?? "") === norm(result.certificate.serialHex)),
    `pkcs11-tool does not list ${result.certificate.serialHex}; the agent lists ${certs.map((c) => c.certificate.serialHex).join(", ")}\n` +
    `progress: ${v.progress.map((p) => p.step).join(" → ")}\ntoken files: ${tokenFiles(world.hsm.conf).join(", ")}\n${objects.raw}`);

  // The PIN is in no log line, no answer and no file of the agent's home.
  assert.ok(!agent.logs.some((l) => l.includes(world.hsm.pin)), agent.logs.join("\n"));
  assert.ok(!JSON.stringify(v).includes(world.hsm.pin));
  for (const name of readdirSync(agent.home, { recursive: true }) as string[]) {
    const p = join(agent.home, name);
    if (statSync(p).isFile()) assert.ok(!readFileSync(p, "utf8").includes(world.hsm.pin), name);
  }
});

test("renew with an ID number (a wrong one first) and a one-time code answered through the API, the PIN in the page", async () => {
  const started = await agent.call("/v1/operations", { token, body: { kind: "renew", tokenSerial: otpToken } });
  assert.equal(started.status, 202, started.text);
  const id = started.json.id as string;
  let v = await until(id, (x) => x.state !== "running");
  assert.equal(v.input?.kind, "confirm", JSON.stringify(v));
  assert.equal((await agent.call(`/v1/operations/${id}/input`, { token, body: { confirm: true } })).status, 202);
  v = await until(id, (x) => x.input?.kind === "pin" || x.state === "failed");
  assert.equal(v.input?.kind, "pin", JSON.stringify(v));
  assert.equal((await postPin((v.input as { promptUrl: string }).promptUrl, { pin: world.hsm.pin })).status, 200);

  v = await until(id, (x) => x.input?.kind === "id-number" || x.state === "failed");
  assert.deepEqual(v.input, { kind: "id-number", idType: "resident-id" }, JSON.stringify(v));
  assert.equal((await agent.call(`/v1/operations/${id}/input`, { token, body: { idNumber: "110101199003071230" } })).status, 202);
  v = await until(id, (x) => (x.input?.kind === "id-number" && "retry" in x.input) || x.state === "failed");
  assert.deepEqual(v.input, { kind: "id-number", idType: "resident-id", retry: { code: "IDENTITY_MISMATCH", triesLeft: 4 } }, JSON.stringify(v));
  assert.equal((await agent.call(`/v1/operations/${id}/input`, { token, body: { idNumber: "11010119900307123X" } })).status, 202);

  v = await until(id, (x) => x.input?.kind === "one-time-code" || x.state === "failed");
  const asked = v.input as { kind: string; channel: string; maskedTo: string; expiresAt: string; resendAfter: string };
  assert.equal(asked.channel, "sms");
  assert.match(asked.maskedTo, /^159\*+005$/);
  assert.ok(Date.parse(asked.expiresAt) > Date.parse(asked.resendAfter), JSON.stringify(asked));
  const lines = readFileSync(join(world.dataDir, "outbox.jsonl"), "utf8").trim().split("\n");
  const code = /(\d{6})/.exec((JSON.parse(lines.at(-1)!) as { text: string }).text)![1]!;
  assert.equal((await agent.call(`/v1/operations/${id}/input`, { token, body: { code } })).status, 202);

  v = await until(id, (x) => x.state === "done" || x.state === "failed");
  assert.equal(v.state, "done", JSON.stringify(v.error));
  const steps = v.progress.map((p) => p.step);
  assert.ok(steps.includes("verify-identity") && steps.includes("verify-code"), steps.join());
  assert.ok(!agent.logs.some((l) => l.includes("11010119900307123X") || l.includes(code)), agent.logs.join("\n"));
});

test("issue 16 (3): five wrong ID numbers count down, end with IDENTITY_ATTEMPTS_EXCEEDED, and the next start is refused before any PIN", async () => {
  const started = await agent.call("/v1/operations", { token, body: { kind: "renew", tokenSerial: lockToken } });
  const id = started.json.id as string;
  let v = await until(id, (x) => x.state !== "running");
  assert.equal(v.input?.kind, "confirm", JSON.stringify(v));
  assert.equal((await agent.call(`/v1/operations/${id}/input`, { token, body: { confirm: true } })).status, 202);
  v = await until(id, (x) => x.input?.kind === "pin" || x.state === "failed");
  assert.equal((await postPin((v.input as { promptUrl: string }).promptUrl, { pin: world.hsm.pin })).status, 200);
  const seen: (number | undefined)[] = [];
  for (let i = 0; i < 5; i++) {
    v = await until(id, (x) => (x.input?.kind === "id-number" && x.revision !== v.revision) || x.state === "failed");
    if (v.state === "failed") break;
    seen.push((v.input as { retry?: { triesLeft?: number } }).retry?.triesLeft);
    assert.equal((await agent.call(`/v1/operations/${id}/input`, { token, body: { idNumber: "110101199003071230" } })).status, 202);
  }
  v = await until(id, (x) => x.state === "failed");
  assert.deepEqual(seen, [undefined, 4, 3, 2, 1], "each wrong number says how many tries are left");
  assert.equal(v.error?.code, "IDENTITY_ATTEMPTS_EXCEEDED", JSON.stringify(v.error));
  assert.match(v.error!.message.zh, /北京时间/);
  const until24 = Number(new Date(String(v.error!.params?.until)));
  assert.ok(until24 > Date.now() + 23 * 3_600_000, JSON.stringify(v.error));

  // The listing shows the pause, and starting again is refused before the PIN is asked.
  const tokens = (await agent.call("/v1/tokens", { token })).json as unknown as TokenStatus[];
  const cert = tokens.find((t) => t.token.serial === lockToken)!.certificates[0]!;
  assert.equal(cert.advice?.lockedUntil, v.error!.params?.until);
  const again = await agent.call("/v1/operations", { token, body: { kind: "renew", tokenSerial: lockToken } });
  const w = await until(again.json.id as string, (x) => x.state !== "running");
  assert.equal(w.state, "failed", JSON.stringify(w));
  assert.equal(w.error?.code, "RENEWAL_LOCKED");
  assert.match(w.error!.message.zh, /\d{4}-\d{2}-\d{2} \d{2}:\d{2}（北京时间）/);
});

test("issue 16 (8): a download checks its codes with the server before the PIN is asked", async () => {
  const started = await agent.call("/v1/operations", { token, body: { kind: "download", tokenSerial: freshToken, referenceNumber: "1234567897", authorizationCode: "ABCD-EFGH-JKLM" } });
  assert.equal(started.status, 202, started.text);
  const v = await until(started.json.id as string, (x) => x.state !== "running");
  assert.equal(v.state, "failed", `refused before any PIN: ${JSON.stringify(v)}`);
  assert.equal(v.error?.code, "CODE_INVALID");
  assert.deepEqual(v.progress.map((p) => p.step), ["check-codes"]);
});

test("initialise through the API: confirm, then the SO PIN and the new PIN (typed twice in one page) in the same window", async () => {
  const cancel = await agent.call("/v1/operations", { token, body: { kind: "initialise", tokenSerial: freshToken } });
  let v = await until(cancel.json.id as string, (x) => x.state !== "running");
  assert.equal(v.input?.kind, "confirm", JSON.stringify(v));
  assert.equal((await agent.call(`/v1/operations/${v.id}/input`, { token, body: { confirm: false } })).status, 202);
  v = await until(v.id, (x) => x.state === "failed");
  assert.equal(v.error?.code, "OPERATION_CANCELLED");

  const started = await agent.call("/v1/operations", { token, body: { kind: "initialise", tokenSerial: freshToken, label: "renamed" } });
  const id = started.json.id as string;
  v = await until(id, (x) => x.state !== "running");
  const asked = v.input as { kind: string; question: string; consequences: string[] };
  assert.equal(asked.kind, "confirm");
  assert.ok(asked.question.includes(freshToken), asked.question);
  assert.ok(asked.consequences.length >= 1);
  assert.equal((await agent.call(`/v1/operations/${id}/input`, { token, body: { confirm: true } })).status, 202);

  v = await until(id, (x) => x.input?.kind === "pin" || x.state === "failed");
  assert.equal((v.input as { so?: boolean }).so, true, JSON.stringify(v));
  const soUrl = (v.input as { promptUrl: string }).promptUrl;
  assert.match((await rawRequest(soUrl, { headers: {} })).body, /SO PIN/);
  const so = await postPin(soUrl, { pin: world.hsm.soPin });
  assert.equal(so.status, 303, so.body);
  const newUrl = String(so.headers.location);
  const newPage = await rawRequest(newUrl, { headers: {} });
  assert.match(newPage.body, /name="pin2"/);
  const set = await postPin(newUrl, { pin: "135792", pin2: "135792" });
  assert.equal(set.status, 200, set.body);
  assert.match(set.body, /已完成/);

  v = await until(id, (x) => x.state === "done" || x.state === "failed");
  assert.equal(v.state, "done", JSON.stringify(v.error));
  assert.equal((v.result as { token: { serial: string; label: string } }).token.label, "renamed");
  // The new PIN opens the key (pkcs11-tool logs in with it).
  assert.deepEqual(world.objects("renamed", "135792").certificates, []);
});

test("a renewal for a token that is not there fails cleanly with TOKEN_NOT_PRESENT", async () => {
  const started = await agent.call("/v1/operations", { token, body: { kind: "renew", tokenSerial: "no-such-token" } });
  const v = await until(started.json.id as string, (x) => x.state === "failed");
  assert.equal(v.error?.code, "TOKEN_NOT_PRESENT");
  assert.ok(v.error?.remedy.zh);
});
