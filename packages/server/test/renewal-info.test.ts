import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import type { FastifyInstance } from "fastify";
import { fixedClock } from "@ukey/policy";
import { buildApp } from "../src/app.js";
import { formatCertId } from "../src/cert-id.js";
import { openServerContext, type ServerContext } from "../src/server-context.js";
import { addHolder, initialisedDataDir, keyArgs, opensslCsr, runUkeyServer, tempDir, type TempDir } from "./support/fixtures.js";

// The renewal advice endpoints, through the real app (inject) on a real
// embedded database, for one certificate of ours and one imported from a
// foreign CA under a seed preset.
const day = 86_400_000;
type RenewalInfoBody = {
  state: string; channel: string; opensAt: string; code?: string;
  suggestedWindow: { start: string; end: string };
  explanation: { "zh-CN": string; en: string }; message: { "zh-CN": string; en: string }; remedy: { "zh-CN": string; en: string };
  certificate: { imported: boolean; serial: string };
  login?: { allowed: boolean; refusedFrom: string | null };
};
let t: TempDir;
let ctx: ServerContext;
let app: FastifyInstance;
const clock = fixedClock(new Date());
let ours: { certId: string; notAfter: number };
let imported: { certId: string; notAfter: number };

before(async () => {
  t = tempDir();
  const { dataDir, env } = initialisedDataDir(t);
  const cfgFile = `${dataDir}/config.json`;
  const cfg = JSON.parse(readFileSync(cfgFile, "utf8"));
  cfg.profiles.push({ id: "gov", preset: "gov-supervision", keyAlgorithms: ["rsa2048", "p256"], certificates: null });
  writeFileSync(cfgFile, JSON.stringify(cfg, null, 2));

  assert.equal(addHolder(t, dataDir, env, "R1").status, 0);
  const { csr } = opensslCsr(t, "ours", keyArgs.p256);
  const issued = runUkeyServer(["issue", "--data-dir", dataDir, "--holder", "R1", "--profile", "personal", "--csr", csr, "--json"], env);
  assert.equal(issued.status, 0, issued.stdout + issued.stderr);

  const o = (args: string[]) => execFileSync("openssl", args, { cwd: t.dir, stdio: "pipe" });
  o(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "f-ca.key", "-subj", "/C=CN/O=Province RA/CN=Province CA", "-days", "3650", "-out", "f-ca.pem",
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
  o(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "f.key", "-subj", "/C=CN/O=Unit/CN=Wang Wu/serialNumber=G7", "-out", "f.csr"]);
  writeFileSync(t.path("f.ext"), "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n");
  o(["x509", "-req", "-in", "f.csr", "-CA", "f-ca.pem", "-CAkey", "f-ca.key", "-set_serial", "0x00c0ffee", "-days", "200", "-extfile", "f.ext", "-out", "f.pem"]);
  const holders = t.write("h.csv", "id,name,id_type,id_number,profile\nG7,Wang Wu,resident-id,370101199001011234,gov\n");
  const imp = runUkeyServer(["import", "--data-dir", dataDir, "--certs", t.path("f.pem"), "--holders", holders, "--chain", t.path("f-ca.pem"), "--json"], env);
  assert.equal(imp.status, 0, imp.stdout + imp.stderr);

  ctx = await openServerContext(dataDir, env, clock);
  app = await buildApp(ctx);
  const [mine] = await ctx.store.certificates.search({ holderId: "R1" });
  const [theirs] = await ctx.store.certificates.search({ holderId: "G7" });
  ours = { certId: formatCertId(mine!.issuerKeyId, mine!.serial), notAfter: mine!.notAfter };
  imported = { certId: formatCertId(theirs!.issuerKeyId, theirs!.serial), notAfter: theirs!.notAfter };
  assert.equal(theirs!.profileId, "gov");
  assert.equal(theirs!.serial, "c0ffee");
});
after(async () => {
  await app?.close();
  await ctx?.close();
  t.cleanup();
});

async function info(path: string) {
  const res = await app.inject({ method: "GET", url: path });
  return { status: res.statusCode, retryAfter: res.headers["retry-after"], body: res.json() as RenewalInfoBody };
}

test("a fresh certificate of ours: not yet, with the date the window opens", async () => {
  clock.set(new Date(ours.notAfter - 1000 * day));
  const r = await info(`/api/v1/renewal-info/${ours.certId}`);
  assert.equal(r.status, 200);
  assert.equal(r.body.state, "not-yet");
  assert.equal(r.body.channel, "web");
  assert.ok(Date.parse(r.body.opensAt) > clock.now().getTime() && Date.parse(r.body.opensAt) < ours.notAfter);
  assert.ok(Date.parse(r.body.suggestedWindow.start) >= Date.parse(r.body.opensAt));
  assert.ok(Date.parse(r.body.suggestedWindow.end) > Date.parse(r.body.suggestedWindow.start));
  assert.equal(r.retryAfter, String(6 * 3600));
  assert.match(r.body.explanation["zh-CN"], /\d{4}-\d{2}-\d{2}/);
  assert.match(r.body.explanation.en, /\d{4}-\d{2}-\d{2}/);
  assert.equal(r.body.certificate.imported, false);
  // Anyone who knows a serial may ask: the answer must not name the holder.
  assert.deepEqual(Object.keys(r.body.certificate).sort(), ["imported", "issuerKeyId", "notAfter", "notBefore", "revocationReason", "serial", "status"]);
  assert.doesNotMatch(JSON.stringify(r.body), /CN=|subject/i);
});

test("issue 16 (seed 004's login rule): allowed before expiry with the moment it will be refused, refused after", async () => {
  clock.set(new Date(ours.notAfter - 10 * day));
  const before = await info(`/api/v1/renewal-info/${ours.certId}`);
  assert.deepEqual(before.body.login, { allowed: true, refusedFrom: new Date(ours.notAfter + 1).toISOString() });
  clock.set(new Date(ours.notAfter + day));
  const after = await info(`/api/v1/renewal-info/${ours.certId}`);
  assert.deepEqual(after.body.login, { allowed: false, refusedFrom: null });
});

const importedCases: Array<[string, number, string, string]> = [
  // [name, offset from notAfter in days, path suffix, expected state]
  ["100 days before expiry: gov-supervision's window (90 days) is not open yet", -100, "", "not-yet"],
  ["10 days before expiry: open", -10, "", "open"],
  ["100 days after expiry: still open (300 days after)", 100, "", "open"],
  ["310 days after expiry: closed, go to the counter", 310, "", "closed"],
];
for (const [name, offset, suffix, state] of importedCases) {
  test(`imported from a foreign CA, ${name}`, async () => {
    clock.set(new Date(imported.notAfter + offset * day));
    const r = await info(`/api/v1/renewal-info/${imported.certId}${suffix}`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.state, state);
    assert.equal(r.body.certificate.imported, true);
    assert.equal(r.body.certificate.serial, "c0ffee");
    assert.ok(r.body.explanation["zh-CN"].length > 5 && r.body.explanation.en.length > 5);
  });
}

test("the window opening within hours shortens Retry-After to that moment", async () => {
  const opens = Date.parse((await (clock.set(new Date(imported.notAfter - 100 * day)), info(`/api/v1/renewal-info/${imported.certId}`))).body.opensAt);
  clock.set(new Date(opens - 3600_000));
  const r = await info(`/api/v1/renewal-info/${imported.certId}`);
  assert.equal(r.body.state, "not-yet");
  assert.equal(r.retryAfter, "3600");
});

test("the EST path answers for the est channel", async () => {
  clock.set(new Date(ours.notAfter - 10 * day));
  const r = await info(`/.well-known/est/renewal-info/${ours.certId}`);
  assert.equal(r.status, 200);
  assert.equal(r.body.channel, "est");
  assert.equal(r.body.state, "open");
});

test("bad input: malformed certID, unknown certificate, unknown channel", async () => {
  const malformed = await info("/api/v1/renewal-info/not-a-cert-id");
  assert.equal(malformed.status, 400);
  assert.equal(malformed.body.code, "CERT_ID_MALFORMED");
  assert.ok(malformed.body.message["zh-CN"] && malformed.body.remedy.en);
  const unknown = await info(`/api/v1/renewal-info/${ours.certId.split(".")[0]}.AQID`);
  assert.equal(unknown.status, 404);
  assert.equal(unknown.body.code, "CERT_NOT_FOUND");
  const channel = await info(`/api/v1/renewal-info/${ours.certId}?channel=fax`);
  assert.equal(channel.status, 400);
  assert.equal(channel.body.code, "REQUEST_INVALID");
});

test("a revoked certificate is reported as revoked", async () => {
  const [mine] = await ctx.store.certificates.search({ holderId: "R1" });
  await ctx.revocation.revoke(mine!.serial, "keyCompromise", "test");
  clock.set(new Date(ours.notAfter - 10 * day));
  const r = await info(`/api/v1/renewal-info/${ours.certId}`);
  assert.equal(r.body.state, "revoked");
  const body = r.body as unknown as { renewal: unknown; certificate: { revocationReason: string | null } };
  assert.equal(body.certificate.revocationReason, "keyCompromise", "as OCSP and the CRL say it");
  assert.equal(body.renewal, null, "no preview of a renewal that cannot happen");
});

test("issue 16 (seed 004 §3.5): what a renewal now would issue: the profile's validity from now, its algorithms, its name; from the certificate and the profile only", async () => {
  clock.set(new Date(imported.notAfter - 10 * day));
  const r = await info(`/api/v1/renewal-info/${imported.certId}`);
  assert.equal(r.body.state, "open");
  const body = r.body as unknown as { renewal: { notBefore: string; notAfter: string; keyAlgorithms: string[]; pair: boolean; profile: Record<string, string> }; certificate: { revocationReason: string | null } };
  // The gov-supervision preset (seed 004): 1820 days from the day of renewal.
  assert.equal(body.renewal.notBefore, clock.now().toISOString());
  assert.equal(Date.parse(body.renewal.notAfter) - clock.now().getTime(), 1820 * day);
  assert.deepEqual(body.renewal.keyAlgorithms, ["rsa2048", "p256"]);
  assert.equal(body.renewal.pair, false);
  assert.ok(body.renewal.profile["zh-CN"] && body.renewal.profile.en);
  assert.equal(body.certificate.revocationReason, null);
  assert.deepEqual(Object.keys(body.renewal).sort(), ["keyAlgorithms", "notAfter", "notBefore", "pair", "profile"], "nothing of the holder or the orders");
});

test("login check (seed 004): allowed, red warning from 90 days before, refused once expired and when on hold; no name or order in the answer", async () => {
  type LoginCheck = { allowed: boolean; refusedFrom: string | null; warn: boolean; warnFrom: string; reason: string; certificate: { serial: string; notAfter: string } };
  const check = async () => {
    const r = await app.inject({ method: "GET", url: `/api/v1/login-check/${imported.certId}` });
    assert.equal(r.statusCode, 200, r.body);
    assert.equal(r.headers["cache-control"], "no-store");
    return r.json<LoginCheck>();
  };
  const refusedFrom = new Date(imported.notAfter + 1).toISOString();
  clock.set(new Date(imported.notAfter - 120 * day));
  const early = await check();
  assert.deepEqual([early.allowed, early.warn, early.reason, early.refusedFrom], [true, false, "valid", refusedFrom]);
  clock.set(new Date(imported.notAfter - 30 * day));
  const soon = await check();
  assert.deepEqual([soon.allowed, soon.warn, soon.reason], [true, true, "valid"]);
  assert.ok(Date.parse(soon.warnFrom) <= clock.now().getTime() && Date.parse(soon.warnFrom) > imported.notAfter - 91 * day, soon.warnFrom);
  assert.deepEqual(Object.keys(soon).sort(), ["allowed", "certificate", "reason", "refusedFrom", "warn", "warnFrom"]);
  assert.deepEqual(Object.keys(soon.certificate).sort(), ["notAfter", "serial"]);
  clock.set(new Date(imported.notAfter + day));
  const expired = await check();
  assert.deepEqual([expired.allowed, expired.warn, expired.reason, expired.refusedFrom], [false, false, "expired", null]);
  // On hold: refused while it lasts, allowed again once lifted.
  clock.set(new Date(imported.notAfter - 30 * day));
  await ctx.revocation.revoke("c0ffee", "certificateHold", "test");
  const held = await check();
  assert.deepEqual([held.allowed, held.reason], [false, "on-hold"]);
  await ctx.revocation.releaseHold("c0ffee", "test");
  assert.deepEqual([(await check()).allowed, (await check()).reason], [true, "valid"]);
  const bad = await app.inject({ method: "GET", url: "/api/v1/login-check/not-a-cert-id" });
  assert.equal(bad.json<{ code: string }>().code, "CERT_ID_MALFORMED");
});
