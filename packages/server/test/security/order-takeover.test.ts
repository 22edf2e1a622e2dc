import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import type { FastifyInstance } from "fastify";
import { fixedClock } from "@ukey/policy";
import type { RenewalOrderRecord } from "@ukey/store";
import { buildApp } from "../../src/app.js";
import { openServerContext, type ServerContext } from "../../src/server-context.js";
import { initialisedDataDir, keyArgs, opensslCsr, runUkeyServer, signPossession, tempDir, type TempDir } from "../support/fixtures.js";
import { OrderApi } from "../support/order-api.js";

// Issue "renewal that only the key's holder can drive", finding 1: anyone
// who knew a certificate's serial could take over its holder's renewal
// (the order id answered to anyone, then every step open to whoever had
// the id). Here an attacker who knows the serials, has certificates of
// their own on the same server and can see the holder's requests go by
// tries every step, and is refused without changing anything.
const day = 86_400_000;
let t: TempDir;
let ctx: ServerContext;
let app: FastifyInstance;
let dataDir: string;
const clock = fixedClock(new Date());
type Cert = { serial: string; certId: string; notAfter: number; key: string };
let victim: Cert;
let victimWithId: Cert;
let mine: Cert;
const idNumber = "11010119900307123X";

before(async () => {
  t = tempDir();
  let env: Record<string, string>;
  ({ dataDir, env } = initialisedDataDir(t));
  const cfg = JSON.parse(readFileSync(`${dataDir}/config.json`, "utf8"));
  cfg.profiles.push({ id: "gov", preset: "gov-supervision", keyAlgorithms: ["rsa2048", "p256"], certificates: null });
  writeFileSync(`${dataDir}/config.json`, JSON.stringify(cfg, null, 2));
  const idFile = t.write("id", `${idNumber}\n`);
  for (const h of ["VICTIM", "ATTACKER"]) {
    const r = runUkeyServer(["holder", "add", "--data-dir", dataDir, "--id", h, "--name", `姓名 ${h}`, "--id-type", "resident-id", "--id-number-file", idFile, "--phone", "15900000005", "--json"], env);
    assert.equal(r.status, 0, r.stdout + r.stderr);
  }
  const issue = (holder: string, profile: string, name: string): Cert => {
    const { csr, key } = opensslCsr(t, name, keyArgs.p256);
    const r = runUkeyServer(["issue", "--data-dir", dataDir, "--holder", holder, "--profile", profile, "--csr", csr, "--json"], env);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const out = r.json<{ serial: string; certId: string; notAfter: string }>();
    return { serial: out.serial, certId: out.certId, notAfter: Date.parse(out.notAfter), key };
  };
  victim = issue("VICTIM", "gov", "victim");
  victimWithId = issue("VICTIM", "personal", "victim-id");
  mine = issue("ATTACKER", "gov", "mine");
  ctx = await openServerContext(dataDir, env, clock);
  app = await buildApp(ctx);
  clock.set(new Date(victim.notAfter - 30 * day));
});
after(async () => {
  await app?.close();
  await ctx?.close();
  t.cleanup();
});

/** Everything about an order that a refused request must leave as it was. */
async function snapshot(id: string): Promise<{ order: RenewalOrderRecord | undefined; audit: string[]; outbox: string }> {
  const audit = (await ctx.store.audit.list(0, 100_000)).filter((e) => e.subjectId === id).map((e) => `${e.seq} ${e.action}`);
  let outbox = "";
  try { outbox = readFileSync(`${dataDir}/outbox.jsonl`, "utf8"); } catch { /* nothing sent yet */ }
  return { order: await ctx.store.orders.get(id), audit, outbox };
}

/** Every step of an order after proof of possession, as an attacker would send it. */
function steps(id: string): Array<[string, "GET" | "POST", string, unknown]> {
  const csr = readFileSync(opensslCsr(t, `evil-${randomBytes(4).toString("hex")}`, keyArgs.p256, "/").csr, "utf8");
  return [
    ["view", "GET", `/api/v1/orders/${id}`, undefined],
    ["ID number", "POST", `/api/v1/orders/${id}/identity`, { idType: "resident-id", idNumber: "110101190001010000" }],
    ["send a code", "POST", `/api/v1/orders/${id}/code`, undefined],
    ["verify a code", "POST", `/api/v1/orders/${id}/code/verify`, { code: "123456" }],
    ["step-up", "POST", `/api/v1/orders/${id}/step-up`, undefined],
    ["CSR", "POST", `/api/v1/orders/${id}/csr`, { csr }],
    ["installed", "POST", `/api/v1/orders/${id}/installed`, undefined],
    ["complete", "POST", `/api/v1/orders/${id}/complete`, undefined],
    ["cancel", "POST", `/api/v1/orders/${id}/cancel`, undefined],
  ];
}

test("knowing the serial starts or finds the order, and learns its id and the proof it takes, nothing else", async () => {
  const a = OrderApi.of(app);
  const started = await a.call<Record<string, unknown>>("POST", "/api/v1/orders", { serial: victim.serial });
  assert.equal(started.status, 201);
  assert.deepEqual(Object.keys(started.body).sort(), ["certificateSerial", "challenge", "id", "message", "nextStep", "open", "resumed", "signers"]);
  const text = JSON.stringify(started.body);
  for (const secret of ["VICTIM", "姓名", "Holder", "CN="]) assert.ok(!text.includes(secret), `the answer says ${secret}`);
  const challenge = await a.call<Record<string, unknown>>("POST", `/api/v1/orders/${started.body.id as string}/challenge`);
  assert.deepEqual(Object.keys(challenge.body).sort(), ["certificateSerial", "challenge", "id", "message", "open", "signers"]);
});

test("with the order id alone, no credential, a forged one or one of the attacker's own orders: every step refused, nothing changed", async () => {
  const a = OrderApi.of(app);
  const id = (await a.call<{ id: string }>("POST", "/api/v1/orders", { serial: victim.serial })).body.id;
  const own = await a.startAndProve(mine.certId, mine.key);
  const ownCredential = own.proved.body.credential!.token;
  assert.ok(ownCredential, "the attacker holds a valid credential for an order of their own");
  const before = await snapshot(id);
  const presented: Array<[string, string | null, string]> = [
    ["no credential", null, "ORDER_CREDENTIAL_REQUIRED"],
    ["a malformed one", "let me in", "ORDER_CREDENTIAL_REQUIRED"],
    ["a forged one", `uko1.${randomBytes(32).toString("base64url")}`, "ORDER_CREDENTIAL_INVALID"],
    ["the attacker's own order's", ownCredential, "ORDER_CREDENTIAL_INVALID"],
  ];
  for (const [what, credential, code] of presented) {
    for (const [step, method, url, payload] of steps(id)) {
      const r = await a.call(method, url, payload, { credential });
      assert.equal(r.status, 401, `${step} with ${what}: ${r.status} ${JSON.stringify(r.body)}`);
      assert.equal(r.body.code, code, `${step} with ${what}`);
      assert.ok(r.body.message?.["zh-CN"] && r.body.message.en, "a catalogue message in both languages");
    }
  }
  // A proof with the attacker's own key, or with no proof at all.
  const c = (await a.call<{ challenge: { value: string } }>("POST", `/api/v1/orders/${id}/challenge`)).body.challenge.value;
  assert.equal((await a.call("POST", `/api/v1/orders/${id}/possession`, { challenge: c, signature: signPossession(id, c, mine.key) })).body.code, "POSSESSION_PROOF_FAILED");
  assert.equal((await a.call("POST", `/api/v1/orders/${id}/possession`, { challenge: c, signature: signPossession(id, c, mine.key), signer: "new-key" })).body.code, "POSSESSION_PROOF_FAILED");
  assert.equal((await a.call("POST", `/api/v1/orders/${id}/possession`, {})).body.code, "CLIENT_CERT_PORT_NOT_CONFIGURED", "no TLS client certificate on plain HTTP");
  // A challenge made for the attacker's own order does not prove for the victim's, even signed by the right key.
  const ownChallenge = (await a.call<{ challenge: { value: string } }>("POST", `/api/v1/orders/${own.id}/challenge`)).body.challenge.value;
  assert.equal((await a.call("POST", `/api/v1/orders/${id}/possession`, { challenge: ownChallenge, signature: signPossession(id, ownChallenge, victim.key) })).body.code, "CHALLENGE_INVALID");
  assert.deepEqual(await snapshot(id), before, "the order, its audit entries and the outbox are as they were");
});

test("while the holder's agent makes its new key, the attacker's CSR is refused; the holder's is issued and the attacker's later steps too", async () => {
  const holder = OrderApi.of(app);
  const attacker = OrderApi.of(app);
  const { id, proved } = await holder.startAndProve(victim.certId, victim.key);
  assert.equal(proved.body.state, "verified");
  const evil = readFileSync(opensslCsr(t, "evil-verified", keyArgs.p256, "/").csr, "utf8");
  assert.equal((await attacker.call("POST", `/api/v1/orders/${id}/csr`, { csr: evil })).body.code, "ORDER_CREDENTIAL_REQUIRED");
  const fresh = opensslCsr(t, "victim-new", keyArgs.p256, "/");
  const issued = await holder.call("POST", `/api/v1/orders/${id}/csr`, { csr: readFileSync(fresh.csr, "utf8") });
  assert.equal(issued.body.state, "issued", JSON.stringify(issued.body));
  const newSerial = issued.body.newCertificate!.serial;
  // On an issued order a new key would revoke the undelivered certificate: the attacker cannot send one.
  assert.equal((await attacker.call("POST", `/api/v1/orders/${id}/csr`, { csr: evil })).body.code, "ORDER_CREDENTIAL_REQUIRED");
  assert.equal((await attacker.call("POST", `/api/v1/orders/${id}/complete`)).body.code, "ORDER_CREDENTIAL_REQUIRED");
  assert.equal((await ctx.store.certificates.get(newSerial))!.revokedAt, null, "the holder's new certificate stands");
  assert.equal((await holder.call("POST", `/api/v1/orders/${id}/installed`)).body.state, "installed");
  assert.equal((await holder.call("POST", `/api/v1/orders/${id}/complete`)).body.state, "completed");
  const issuedToVictim = await ctx.store.certificates.search({ holderId: "VICTIM", limit: 100 });
  assert.deepEqual(issuedToVictim.filter((c) => c.status === "active").map((c) => c.serial).sort(), [newSerial, victimWithId.serial].sort(), "no certificate in the holder's name for another key");
});

test("a captured proof of possession cannot be replayed, and a stolen credential dies when the holder proves again", async () => {
  clock.set(new Date(victimWithId.notAfter - 30 * day));
  const holder = OrderApi.of(app);
  const started = (await holder.start(victimWithId.certId)).body;
  const signature = signPossession(started.id, started.challenge.value, victimWithId.key);
  const proof = { challenge: started.challenge.value, signature };
  const first = await holder.call("POST", `/api/v1/orders/${started.id}/possession`, proof);
  assert.equal(first.status, 200);
  const stolen = first.body.credential!.token;
  const replayed = await OrderApi.of(app).call("POST", `/api/v1/orders/${started.id}/possession`, proof);
  assert.equal(replayed.body.code, "CHALLENGE_INVALID");
  assert.equal(replayed.body.credential, undefined);
  assert.equal((await OrderApi.of(app).call("GET", `/api/v1/orders/${started.id}`, undefined, { credential: stolen })).status, 200, "the stolen credential works until...");
  await holder.prove(started.id, victimWithId.key);
  assert.equal((await OrderApi.of(app).call("GET", `/api/v1/orders/${started.id}`, undefined, { credential: stolen })).body.code, "ORDER_CREDENTIAL_INVALID", "...the holder proves possession again");
  assert.equal((await holder.call("GET", `/api/v1/orders/${started.id}`)).status, 200);
});

test("five wrong ID numbers from someone without the credential count nothing and lock nothing", async () => {
  const a = OrderApi.of(app);
  const id = (await a.start(victimWithId.certId)).body.id;
  for (let i = 0; i < 6; i++) {
    assert.equal((await a.call("POST", `/api/v1/orders/${id}/identity`, { idType: "resident-id", idNumber: `11010119900307${1000 + i}` })).body.code, "ORDER_CREDENTIAL_REQUIRED");
  }
  const o = await ctx.store.orders.get(id);
  assert.equal((o!.data as { idAttempts: number }).idAttempts, 0);
  assert.notEqual(o!.state, "failed");
  // The holder goes on as if nothing happened.
  const holder = OrderApi.of(app);
  await holder.prove(id, victimWithId.key);
  assert.equal((await holder.call("POST", `/api/v1/orders/${id}/identity`, { idType: "resident-id", idNumber })).body.nextStep, "one-time-code");
  assert.equal((await a.call("POST", `/api/v1/orders/${id}/cancel`)).body.code, "ORDER_CREDENTIAL_REQUIRED", "nor can anyone else cancel it");
  assert.equal((await holder.call("POST", `/api/v1/orders/${id}/cancel`)).body.state, "cancelled");
});

test("a credential expires two hours after its proof, and ten minutes after its order ended", async () => {
  clock.set(new Date(mine.notAfter - 20 * day));
  const a = OrderApi.of(app);
  const { id } = await a.startAndProve(mine.certId, mine.key);
  clock.advance(2 * 3_600_000 - 1000);
  assert.equal((await a.call("GET", `/api/v1/orders/${id}`)).status, 200);
  clock.advance(2000);
  assert.equal((await a.call("GET", `/api/v1/orders/${id}`)).body.code, "ORDER_CREDENTIAL_INVALID");
  await a.prove(id, mine.key);
  assert.equal((await a.call("POST", `/api/v1/orders/${id}/cancel`)).body.state, "cancelled");
  clock.advance(9 * 60_000);
  assert.equal((await a.call("GET", `/api/v1/orders/${id}`)).body.state, "cancelled", "the order that ended can still be read for a while");
  clock.advance(2 * 60_000);
  assert.equal((await a.call("GET", `/api/v1/orders/${id}`)).body.code, "ORDER_CREDENTIAL_INVALID");
  const c = (await a.call<{ open: boolean }>("POST", `/api/v1/orders/${id}/challenge`)).body;
  assert.equal(c.open, false);
  const proved = await a.prove(id, mine.key);
  assert.equal(proved.body.state, "cancelled");
  assert.equal(proved.body.credential, undefined, "an order that ended gives no new credential");
});
