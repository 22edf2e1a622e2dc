import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import type { RenewResult, TokenStatus } from "../src/flows/flow-types.js";
import { formatPolicyDate } from "@ukey/policy";
import { objectLabels } from "../src/keys/key-store.js";
import { Pkcs12Backend, fileTokenSerial } from "../src/keys/pkcs12-backend.js";
import { runUkeyServerHere } from "../../server/test/support/in-process-cli.js";
import { createAgentWorld, type AgentWorld, type TokenObjects } from "./support/agent-world.js";

// The real `ukey` CLI against the real server process and real SoftHSM2
// tokens, each holding a certificate that server issued (or imported) for
// a key generated on the token; checked afterwards with OpenSC's
// pkcs11-tool and the server's own API.
const day = 86_400_000;
let w: AgentWorld;
const tokens: Record<string, { serial: string; label: string; cert: string; certId?: string }> = {};
let pfx: string;

before(async () => {
  w = createAgentWorld("ukey-agent-e2e-");
  const add = async (name: string, holder: string, profile: string, alg: "p256" | "rsa2048") => {
    const serial = name === "p256" ? w.hsm.tokenSerial : w.addToken(name);
    const c = await w.issueOnToken(holder, profile, alg, serial);
    tokens[name] = { serial, label: name === "p256" ? w.hsm.tokenLabel : name, cert: c.serial, certId: c.certId };
  };
  await add("p256", "H1", "e2e", "p256");
  await add("rsa", "H2", "e2e", "rsa2048");
  await add("long", "H1", "long", "p256");
  await add("otp", "H3", "otp", "p256");
  await add("held", "H2", "e2e", "p256");
  const expired = w.addToken("expired");
  const imported = await w.importOnToken("OLD1", "e2e", "p256", new Date(Date.now() - 400 * day), new Date(Date.now() - 10 * day), expired);
  tokens.expired = { serial: expired, label: "expired", cert: imported.serial };
  const longExpired = w.addToken("stepup");
  const old2 = await w.importOnToken("OLD2", "stepup", "p256", new Date(Date.now() - 400 * day), new Date(Date.now() - 20 * day), longExpired);
  tokens.stepup = { serial: longExpired, label: "stepup", cert: old2.serial };
  pfx = w.t.path("holder.p12");
  const filed = await w.issueInFile("H2", "e2e", pfx);
  tokens.pfx = { serial: fileTokenSerial(pfx), label: "", cert: filed.serial, certId: filed.certId };
  await w.start();
});
after(async () => {
  await w?.cleanup();
});

async function api<T>(path: string): Promise<T> {
  const r = await fetch(`${w.server!.url}${path}`);
  return await r.json() as T;
}

/** Exactly one certificate on the token, with its key pair, labelled as current, and no other object. */
function assertOneCurrent(o: TokenObjects, serialHex: string): void {
  assert.equal(o.certificates.length, 1, o.raw);
  assert.equal(o.privateKeys.length, 1, o.raw);
  assert.equal(o.publicKeys.length, 1, o.raw);
  const [c] = o.certificates;
  assert.equal(c!.serialHex, serialHex);
  assert.equal(c!.label, objectLabels.current(serialHex));
  assert.equal(o.privateKeys[0]!.id, c!.id, "the key beside the certificate");
  assert.equal(o.publicKeys[0]!.id, c!.id);
}

test("issue 16: shows the certificate to renew and the new one before the PIN; without a terminal or --yes it refuses with CONFIRMATION_REQUIRED and changes nothing", async () => {
  const tk = tokens.p256!;
  const before = w.objects(tk.label);
  const r = w.ukey(["renew", "--token", tk.serial, "--no-yes", "--lang", "zh", "--json"]);
  assert.equal(r.status, 2, r.stderr);
  assert.equal(r.json<{ error: { code: string } }>().error.code, "CONFIRMATION_REQUIRED");
  assert.match(r.stderr, /将要更新的证书：\n {2}姓名 Holder H1 · 单位 /, "the subject in readable fields, not a DN");
  assert.doesNotMatch(r.stderr, /CN=/);
  const tail = tk.cert.toUpperCase().slice(-8);
  assert.match(r.stderr, new RegExp(`序列号尾号 ${tail.slice(0, 4)} ${tail.slice(4)}`));
  const now = Date.now();
  // The e2e profile gives 30 days from issuance: the preview says so before anything is issued.
  assert.match(r.stderr, new RegExp(`更新后的新证书：[\\s\\S]*有效期 ${formatPolicyDate(now)} 至 ${formatPolicyDate(now + 30 * day)}`));
  assert.match(r.stderr, /算法 ECDSA P-256/);
  assert.match(r.stderr, /在终端中运行 ukey renew/, "the remedy");
  assert.doesNotMatch(r.stderr, /正在用 UKey 中的当前密钥签名/, "no proof of possession, no order");
  assert.deepEqual(w.objects(tk.label).certificates, before.certificates);
  assert.deepEqual(w.objects(tk.label).privateKeys, before.privateKeys);
});

for (const name of ["p256", "rsa"] as const) {
  test(`renews a ${name === "p256" ? "P-256" : "RSA-2048"} certificate end to end, new key on the token, old one removed`, async () => {
    const tk = tokens[name]!;
    const before = w.objects(tk.label);
    assert.equal(before.certificates.length, 1);
    const r = w.ukey(["renew", "--token", tk.serial, "--json"]);
    assert.equal(r.status, 0, r.stderr);
    const out = r.json<RenewResult>();
    assert.equal(out.resumed, false);
    assert.equal(out.removed, 1, "the superseded certificate and its key");
    assert.notEqual(out.certificate.serialHex, tk.cert);
    assert.match(out.certificate.subject, /CN=Holder H[12]/);
    assert.match(r.stderr, /Signing with the current key/);
    assert.match(r.stderr, /The certificate to renew:[\s\S]*The new certificate:[\s\S]*Valid \d{4}-\d{2}-\d{2} to \d{4}-\d{2}-\d{2}/, "--yes still shows the preview");
    const after = w.objects(tk.label);
    assertOneCurrent(after, out.certificate.serialHex);
    assert.notEqual(after.privateKeys[0]!.id, before.privateKeys[0]!.id, "a new key pair");
    assert.match(after.raw, name === "p256" ? /Private Key Object; EC/ : /Private Key Object; RSA/);
    assert.match(after.raw, /never extractable/);
    const order = await w.order(out.orderId);
    assert.equal(order.state, "completed");
    assert.equal(order.newSerial, out.certificate.serialHex);
    const old = await api<{ state: string }>(`/api/v1/renewal-info/${tk.certId}`);
    assert.equal(old.state, "superseded", "the profile revokes the old certificate as superseded");
    tk.cert = out.certificate.serialHex;

    const s = w.ukey(["status", "--token", tk.serial, "--json"]);
    assert.equal(s.status, 0, s.stderr);
    const [st] = s.json<{ tokens: TokenStatus[] }>().tokens;
    assert.equal(st!.certificates.length, 1);
    assert.equal(st!.certificates[0]!.certificate.serialHex, out.certificate.serialHex);
    assert.equal(st!.certificates[0]!.state, "expiring", "a 30-day certificate is inside the notice period at once");
    assert.ok(st!.certificates[0]!.daysLeft >= 29 && st!.certificates[0]!.daysLeft <= 30);
    assert.equal(st!.certificates[0]!.advice?.window, "open");
    assert.equal(st!.invalidObjects, 0);
  });
}

test("issue 16: a certificate on hold: status says 已冻结 with the remedy, renewal is refused with CERT_ON_HOLD, clean-up keeps it; lifted, it is renewable again", async () => {
  const tk = tokens.held!;
  // The operator's hold and lift: ukey-server's commands, run here, through the running server's control socket.
  const hold = await runUkeyServerHere(["hold", "--data-dir", w.dataDir, "--serial", tk.cert, "--json"], w.env);
  assert.equal(hold.status, 0, hold.stdout + hold.stderr);
  const s = w.ukey(["status", "--token", tk.serial, "--lang", "zh"]);
  assert.equal(s.status, 0, s.stderr);
  assert.match(s.stdout, /已冻结（暂停使用）/);
  assert.match(s.stdout, /请联系机构了解原因，机构解除冻结后即可照常使用/);
  assert.doesNotMatch(s.stdout, /已注销/);
  assert.match(s.stdout, /可清理的失效对象：0 个/, "a hold may be lifted: nothing to clean up");
  const before = w.objects(tk.label);
  const r = w.ukey(["renew", "--token", tk.serial, "--no-yes", "--json"]);
  assert.equal(r.status, 3, r.stderr);
  assert.equal(r.json<{ error: { code: string } }>().error.code, "CERT_ON_HOLD");
  assert.doesNotMatch(r.stderr, /The certificate to renew/, "no preview of a renewal that cannot happen");
  const c = w.ukey(["clean-up", "--token", tk.serial, "--json"]);
  assert.equal(c.status, 0, c.stderr);
  assert.equal(c.json<{ removed: number }>().removed, 0);
  assert.deepEqual(w.objects(tk.label).certificates, before.certificates);
  const lift = await runUkeyServerHere(["hold", "--data-dir", w.dataDir, "--serial", tk.cert, "--lift", "--json"], w.env);
  assert.equal(lift.status, 0, lift.stdout + lift.stderr);
  const st = w.ukey(["status", "--token", tk.serial, "--json"]).json<{ tokens: TokenStatus[] }>().tokens[0]!.certificates[0]!;
  assert.equal(st.state, "expiring");
  assert.equal(st.advice?.window, "open");
});

test("renews a certificate that expired 10 days ago, inside the window", () => {
  const tk = tokens.expired!;
  const s = w.ukey(["status", "--token", tk.serial, "--json"]);
  assert.equal(s.status, 0, s.stderr);
  const c = s.json<{ tokens: TokenStatus[] }>().tokens[0]!.certificates[0]!;
  assert.equal(c.state, "expired");
  assert.ok(c.daysLeft <= -9 && c.daysLeft >= -11, String(c.daysLeft));
  const r = w.ukey(["renew", "--token", tk.serial, "--json"]);
  assert.equal(r.status, 0, r.stderr);
  const out = r.json<RenewResult>();
  assert.match(out.certificate.subject, /CN=Holder OLD1/, "the new certificate says what the record says");
  assert.ok(Date.parse(out.certificate.notAfter) > Date.now() + 29 * day);
  assertOneCurrent(w.objects(tk.label), out.certificate.serialHex);
});

test("refuses outside the window with the date it opens, and changes nothing", () => {
  const tk = tokens.long!;
  const before = w.objects(tk.label);
  const r = w.ukey(["renew", "--token", tk.serial]);
  assert.equal(r.status, 3, r.stderr);
  assert.match(r.stderr, /RENEWAL_NOT_YET_OPEN/);
  assert.match(r.stderr, /online renewal opens on \d{4}-\d{2}-\d{2}/);
  assert.match(r.stderr, /What to do: .*Come back on or after \d{4}-\d{2}-\d{2}/);
  const zh = w.ukey(["renew", "--token", tk.serial, "--lang", "zh", "--json"]);
  assert.equal(zh.status, 3);
  assert.match(zh.stderr, /在线更新将于 \d{4}-\d{2}-\d{2} 开放/);
  assert.equal(zh.json<{ error: { code: string } }>().error.code, "RENEWAL_NOT_YET_OPEN");
  assert.deepEqual(w.objects(tk.label).certificates, before.certificates);
  assert.deepEqual(w.objects(tk.label).privateKeys, before.privateKeys);
});

test("with an ID number and a one-time code asked at the terminal (the code read from the outbox)", async () => {
  const tk = tokens.otp!;
  const outbox = `${w.dataDir}/outbox.jsonl`;
  let idAsked = 0;
  const r = await w.ukeyInteractive(["renew", "--token", tk.serial, "--json"], (err) => {
    if (/ID number on record: $/.test(err)) {
      idAsked++;
      return idAsked === 1 ? "110101199003071230" : "11010119900307123X";
    }
    if (/type the 6 digits \(or r to send it again\): $/.test(err)) {
      const lines = readFileSync(outbox, "utf8").trim().split("\n");
      const last = JSON.parse(lines[lines.length - 1]!) as { text: string };
      return /(\d{6})/.exec(last.text)![1]!;
    }
    return undefined;
  });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(idAsked, 2, "a wrong ID number is asked again");
  assert.match(r.stderr, /does not match the record/);
  assert.match(r.stderr, /A code was sent to 159\*+005/);
  assertOneCurrent(w.objects(tk.label), r.json<RenewResult>().certificate.serialHex);
});

test("several tokens and none named: TOKEN_MULTIPLE_PRESENT, exit 4", () => {
  const r = w.ukey(["renew"]);
  assert.equal(r.status, 4, r.stderr);
  assert.match(r.stderr, /TOKEN_MULTIPLE_PRESENT/);
  assert.match(r.stderr, /--token SERIAL/);
  assert.match(r.stderr, new RegExp(tokens.rsa!.serial), "the serials are listed");
});

test("renews a certificate in a PKCS#12 file: the file then holds the new certificate and key only", async () => {
  const tk = tokens.pfx!;
  const r = w.ukey(["renew", "--file", pfx, "--json"]);
  assert.equal(r.status, 0, r.stderr);
  const out = r.json<RenewResult>();
  assert.notEqual(out.certificate.serialHex, tk.cert);
  assert.equal(out.removed, 1);
  const backend = new Pkcs12Backend(pfx);
  const s = await backend.open(tk.serial, w.hsm.pin);
  try {
    const certs = await s.listCertificates();
    assert.deepEqual(certs.map((c) => [c.serialHex, c.hasKey, c.label]), [[out.certificate.serialHex, true, objectLabels.current(out.certificate.serialHex)]]);
    assert.equal((await s.listKeys()).length, 1);
  } finally {
    await s.close();
  }
  // A standard file: openssl reads one certificate and one key with the same password.
  const o = spawnSync("openssl", ["pkcs12", "-in", pfx, "-passin", `pass:${w.hsm.pin}`, "-nodes"], { encoding: "utf8" });
  assert.equal(o.status, 0, o.stderr);
  assert.equal(o.stdout.match(/BEGIN CERTIFICATE/g)?.length, 1);
  assert.equal(o.stdout.match(/BEGIN PRIVATE KEY/g)?.length, 1);
  assert.equal((await (await fetch(`${w.server!.url}/api/v1/renewal-info/${tk.certId}`)).json() as { state: string }).state, "superseded");
});

test("expired longer than the profile allows without step-up: approved on a second device, then renewed", async () => {
  const tk = tokens.stepup!;
  let approved = 0;
  const r = await w.ukeyInteractive(["renew", "--token", tk.serial, "--json"], (err) => {
    if (!/Press Enter when it is approved: $/.test(err)) return undefined;
    const link = /\/step-up\/(\S+)/.exec(err)![1]!;
    // The second device: the holder opens the link and confirms with the ID number on record.
    const c = spawnSync("curl", ["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H", "content-type: application/json",
      "-d", JSON.stringify({ idType: "resident-id", idNumber: "11010119900307123X" }), `${w.server!.url}/api/v1/step-up/${link}`], { encoding: "utf8" });
    assert.equal(c.stdout, "200", c.stderr);
    approved++;
    return "";
  });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(approved, 1);
  assert.match(r.stderr, /Open this link on a second device/);
  assertOneCurrent(w.objects(tk.label), r.json<RenewResult>().certificate.serialHex);
});
