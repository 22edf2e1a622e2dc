import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { fixedClock } from "@ukey/policy";
import { crlShardOf, derToPem } from "@ukey/ca";
import type { FastifyInstance } from "fastify";
import { buildApp } from "../src/app.js";
import { openServerContext, type ServerContext } from "../src/server-context.js";
import { addHolder, initialisedDataDir, keyArgs, openssl, opensslCsr, tempDir, type TempDir } from "./support/fixtures.js";

// Issue 17, part 2: delta CRLs (RFC 5280 5.2.4) beside the complete CRL and each shard, checked by the real
// openssl with -use_deltas. The clock is fixed and moved by hand; openssl judges at the same instant (-attime).
const shards = 2;
const minute = 60_000;
let t: TempDir;
let ctx: ServerContext;
let app: FastifyInstance;
let clock: ReturnType<typeof fixedClock>;
let root: string;
let issuing: string;
let base: string;
const certs: Array<{ serial: string; pem: string; shard: number }> = [];

before(async () => {
  t = tempDir();
  const { dataDir, env } = initialisedDataDir(t);
  const cfgFile = `${dataDir}/config.json`;
  const cfg = JSON.parse(readFileSync(cfgFile, "utf8"));
  cfg.ca = { ...cfg.ca, crlShards: shards, crlRefreshMinutes: 60, deltaCrl: { enabled: true, everyMinutes: 15 } };
  writeFileSync(cfgFile, JSON.stringify(cfg, null, 2));
  assert.equal(addHolder(t, dataDir, env, "D1").status, 0);
  root = `${dataDir}/ca/root.cer.pem`;
  issuing = `${dataDir}/ca/issuing.cer.pem`;
  clock = fixedClock(new Date());
  ctx = await openServerContext(dataDir, env, clock);
  app = await buildApp(ctx);
  const csr = readFileSync(opensslCsr(t, "d", keyArgs.p256).csr);
  for (let i = 0; i < 6; i++) {
    const c = await ctx.issuance.issue({ holderId: "D1", profileId: "personal", csr, actor: "test" });
    certs.push({ serial: c.serial, pem: t.write(`c${i}.pem`, derToPem(c.der!, "CERTIFICATE")), shard: crlShardOf(c.serial, shards) });
  }
  // Before the complete CRL: c0 revoked, c1 held. Twenty minutes pass, beyond the delta's overlap.
  await ctx.revocation.revoke(certs[0]!.serial, "keyCompromise", "test");
  await ctx.revocation.revoke(certs[1]!.serial, "certificateHold", "test");
  clock.advance(20 * minute);
  base = await fetchPem("/crl/issuing.pem", "base0");
  // After it: c2 revoked, c1's hold lifted. Only a delta knows.
  clock.advance(minute);
  await ctx.revocation.revoke(certs[2]!.serial, "keyCompromise", "test");
  clock.advance(minute);
  await ctx.revocation.releaseHold(certs[1]!.serial, "test");
});
after(async () => {
  await app?.close();
  await ctx?.close();
  t?.cleanup();
});

let fetched = 0;
async function fetchPem(url: string, name = `f${fetched++}`): Promise<string> {
  const r = await app.inject({ method: "GET", url });
  assert.equal(r.statusCode, 200, `${url}: ${r.body}`);
  return t.write(`${name}.crl.pem`, r.body);
}

function crlText(file: string): string {
  return openssl(["crl", "-in", file, "-noout", "-text"]).out;
}

/** The number under an extension's heading in `openssl crl -text`. */
function extNumber(text: string, heading: string): bigint {
  const m = new RegExp(`${heading}:(?: critical)?\\s+(?:0x)?([0-9A-Fa-f]+)`).exec(text);
  assert.ok(m, `${heading} in\n${text}`);
  return /0x/.test(text.slice(m.index, m.index + m[0].length)) ? BigInt(`0x${m[1]}`) : BigInt(m[1]!);
}

/** Each listed serial (upper case) with the reason openssl prints for it ("" for none). */
function entries(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const chunk of text.split("Serial Number: ").slice(1)) {
    const serial = chunk.split("\n")[0]!.trim().toUpperCase();
    const reason = /CRL Reason Code:\s*\n\s*(.+)/.exec(chunk.split("Signature Algorithm")[0]!)?.[1]?.trim() ?? "";
    out.set(serial, reason);
  }
  return out;
}

function verify(cert: string, crls: string[], deltas: boolean): { status: number; out: string } {
  const at = String(Math.floor(clock.now().getTime() / 1000) + 1);
  return openssl([
    // -extended_crl as well: without it, OpenSSL 3's get_crl_score never sets deltas aside (its "don't process
    // deltas" test is an else-branch of the extended-CRL one), so the newer delta is taken as the complete CRL.
    "verify", "-crl_check", ...(deltas ? ["-extended_crl", "-use_deltas"] : []), "-attime", at, "-CAfile", root, "-untrusted", issuing,
    ...crls.flatMap((c) => ["-CRLfile", c]), cert,
  ]);
}

test("certificates issued with delta CRLs on carry freshestCRL naming their shard's delta", () => {
  const publicUrl = ctx.config.publicUrl.replace(/\/$/, "");
  for (const c of certs) {
    const text = openssl(["x509", "-in", c.pem, "-noout", "-text"]).out;
    assert.match(text, new RegExp(`X509v3 Freshest CRL: *\\n\\s+Full Name:\\s+URI:${publicUrl}/crl/issuing/${c.shard}-delta\\.crl`), text);
    assert.doesNotMatch(text, /Freshest CRL: critical/);
  }
  // The complete CRL names its delta too (RFC 5280 5.2.6).
  assert.match(crlText(base), new RegExp(`Freshest CRL: *\\n\\s+Full Name:\\s+URI:${publicUrl}/crl/issuing-delta\\.crl`));
});

test("the delta names its base, takes the next number of the base's sequence, and lists only what changed since", async () => {
  const b = crlText(base);
  const baseNumber = extNumber(b, "X509v3 CRL Number");
  assert.doesNotMatch(b, /Delta CRL Indicator/);
  const inBase = entries(b);
  assert.deepEqual([...inBase.keys()].sort(), [certs[0]!.serial, certs[1]!.serial].map((s) => s.toUpperCase()).sort(), b);

  const delta = await fetchPem("/crl/issuing-delta.pem", "delta1");
  const d = crlText(delta);
  assert.match(d, /X509v3 Delta CRL Indicator: critical/);
  assert.equal(extNumber(d, "X509v3 Delta CRL Indicator"), baseNumber);
  assert.ok(extNumber(d, "X509v3 CRL Number") > baseNumber, d);
  const listed = entries(d);
  assert.deepEqual(Object.fromEntries(listed), {
    [certs[2]!.serial.toUpperCase()]: "Key Compromise",
    [certs[1]!.serial.toUpperCase()]: "Remove From CRL",
  }, d);
  // The complete CRL is not re-signed by the revocation: its delta carries it.
  assert.equal(readFileSync(await fetchPem("/crl/issuing.pem"), "utf8"), readFileSync(base, "utf8"));
});

test("openssl -use_deltas: a certificate revoked after the base is revoked; a lifted hold is good again", async () => {
  const delta = await fetchPem("/crl/issuing-delta.pem");
  const [c0, c1, c2, c3] = certs;
  // c2: the base alone says nothing, the delta says revoked.
  assert.equal(verify(c2!.pem, [base], false).status, 0, "the base alone does not know c2");
  const r2 = verify(c2!.pem, [base, delta], true);
  assert.notEqual(r2.status, 0, r2.out);
  assert.match(r2.out, /certificate revoked/);
  // c1: held in the base, removeFromCRL in the delta.
  const held = verify(c1!.pem, [base], false);
  assert.match(held.out, /certificate revoked/);
  const lifted = verify(c1!.pem, [base, delta], true);
  assert.equal(lifted.status, 0, lifted.out);
  // c0 stays revoked from the base; c3 stays good.
  // The pitfall docs/ocsp-crl.md warns of: base and delta given to openssl without -extended_crl -use_deltas,
  // the delta is read as the complete CRL and c0, revoked only in the base, passes.
  const plain = openssl(["verify", "-crl_check", "-attime", String(Math.floor(clock.now().getTime() / 1000) + 1), "-CAfile", root,
    "-untrusted", issuing, "-CRLfile", base, "-CRLfile", delta, c0!.pem]);
  assert.equal(plain.status, 0, plain.out);
  assert.match(verify(c0!.pem, [base, delta], true).out, /certificate revoked/);
  const good = verify(c3!.pem, [base, delta], true);
  assert.equal(good.status, 0, good.out);
});

test("each shard has its own delta with the shard's issuingDistributionPoint, checked by openssl per shard", async () => {
  const c2 = certs[2]!;
  for (let k = 0; k < shards; k++) {
    const shardBase = await fetchPem(`/crl/issuing/${k}.pem`);
    const shardDelta = await fetchPem(`/crl/issuing/${k}-delta.pem`);
    const d = crlText(shardDelta);
    assert.match(d, /X509v3 Issuing Distribution Point: critical/);
    assert.match(d, new RegExp(`/crl/issuing/${k}\\.crl`));
    assert.equal(extNumber(d, "X509v3 Delta CRL Indicator"), extNumber(crlText(shardBase), "X509v3 CRL Number"));
    // The shard base was signed now, so the delta (overlap included) may repeat its entries, never another shard's.
    for (const serial of entries(d).keys()) assert.equal(crlShardOf(serial.toLowerCase(), shards), k, serial);
    for (const c of certs.filter((x) => x.shard === k)) {
      const r = verify(c.pem, [shardBase, shardDelta], true);
      if (c === c2 || c === certs[0]) assert.match(r.out, /certificate revoked/, c.serial);
      else assert.equal(r.status, 0, `${c.serial}: ${r.out}`);
    }
  }
  // A shard base signed after c2's revocation lists it; revoke c4 now: only the shard's delta knows.
  const c4 = certs[4]!;
  const shardBase = await fetchPem(`/crl/issuing/${c4.shard}.pem`);
  clock.advance(minute);
  await ctx.revocation.revoke(c4.serial, "superseded", "test");
  const shardDelta = await fetchPem(`/crl/issuing/${c4.shard}-delta.pem`);
  assert.equal(verify(c4.pem, [shardBase], false).status, 0);
  assert.match(verify(c4.pem, [shardBase, shardDelta], true).out, /certificate revoked/);
});

test("delta numbers grow with each change and each period; a new base restarts the indicator", async () => {
  const first = await fetchPem("/crl/issuing-delta.pem");
  const n1 = extNumber(crlText(first), "X509v3 CRL Number");
  const baseNumber = extNumber(crlText(first), "X509v3 Delta CRL Indicator");
  // Unchanged: the same delta is served.
  assert.equal(readFileSync(await fetchPem("/crl/issuing-delta.pem"), "utf8"), readFileSync(first, "utf8"));
  await ctx.revocation.revoke(certs[5]!.serial, "affiliationChanged", "test");
  const second = crlText(await fetchPem("/crl/issuing-delta.pem"));
  assert.ok(extNumber(second, "X509v3 CRL Number") > n1, second);
  assert.equal(extNumber(second, "X509v3 Delta CRL Indicator"), baseNumber);
  assert.equal(entries(second).get(certs[5]!.serial.toUpperCase()), "Affiliation Changed");
  // No change: the same delta until 5 minutes (an HTTP cache's max-age) before its nextUpdate, 15 minutes after
  // its thisUpdate; then a new delta, the same base.
  clock.advance(9 * minute);
  assert.equal(extNumber(crlText(await fetchPem("/crl/issuing-delta.pem")), "X509v3 CRL Number"), extNumber(second, "X509v3 CRL Number"));
  clock.advance(minute + 1);
  const third = crlText(await fetchPem("/crl/issuing-delta.pem"));
  assert.ok(extNumber(third, "X509v3 CRL Number") > extNumber(second, "X509v3 CRL Number"));
  assert.equal(extNumber(third, "X509v3 Delta CRL Indicator"), baseNumber);
  // The complete CRL's refresh (60 minutes) passes: a new base with a larger number than every delta before it,
  // and a delta that names it and lists nothing older than its overlap.
  clock.advance(61 * minute);
  const newBase = crlText(await fetchPem("/crl/issuing.pem"));
  const newBaseNumber = extNumber(newBase, "X509v3 CRL Number");
  assert.ok(newBaseNumber > extNumber(third, "X509v3 CRL Number"));
  assert.equal(entries(newBase).size, 4, newBase); // c0, c2, c4 (superseded), c5; c1's hold was lifted
  const fourth = crlText(await fetchPem("/crl/issuing-delta.pem"));
  assert.equal(extNumber(fourth, "X509v3 Delta CRL Indicator"), newBaseNumber);
  assert.ok(extNumber(fourth, "X509v3 CRL Number") > newBaseNumber);
  assert.equal(entries(fourth).size, 0, fourth);
  assert.match(fourth, /No Revoked Certificates/);
});

test("a delta's validity is its period; the routes answer as the complete CRL's, and 404 for what does not exist", async () => {
  const der = await app.inject({ method: "GET", url: "/crl/issuing-delta.crl" });
  assert.equal(der.statusCode, 200);
  assert.equal(der.headers["content-type"], "application/pkix-crl");
  assert.equal(der.headers["cache-control"], "max-age=300");
  const file = t.write("delta.der", der.rawPayload);
  const dates = openssl(["crl", "-inform", "DER", "-in", file, "-noout", "-lastupdate", "-nextupdate"]).out;
  const last = Date.parse(/lastUpdate=(.+)/.exec(dates)![1]!);
  const next = Date.parse(/nextUpdate=(.+)/.exec(dates)![1]!);
  assert.equal(next - last, 15 * minute, dates);
  const shardDer = await app.inject({ method: "GET", url: "/crl/issuing/1-delta.crl" });
  assert.equal(shardDer.headers["content-type"], "application/pkix-crl");
  assert.equal(shardDer.headers["cache-control"], "max-age=300");
  const pem = await app.inject({ method: "GET", url: "/crl/issuing-delta.pem" });
  assert.equal(pem.headers["content-type"], "application/x-pem-file");
  assert.match(pem.body, /^-----BEGIN X509 CRL-----/);
  for (const bad of [`${shards}-delta.crl`, "0-delta.der", "0-deltas.crl", "-delta.crl", "0-delta-delta.crl"]) {
    assert.equal((await app.inject({ method: "GET", url: `/crl/issuing/${bad}` })).statusCode, 404, bad);
  }
  assert.equal((await app.inject({ method: "GET", url: "/crl/root-delta.crl" })).statusCode, 404);
});

test("every revocation change the deltas list is in the audit log", async () => {
  const log = await ctx.store.audit.list(0, 1000);
  const actions = log.filter((e) => e.actor === "test" && e.action.startsWith("certificate.")).map((e) => `${e.action} ${e.subjectId}`);
  for (const i of [0, 1, 2, 4, 5]) assert.ok(actions.includes(`certificate.revoked ${certs[i]!.serial}`), `c${i}`);
  assert.ok(actions.includes(`certificate.hold-released ${certs[1]!.serial}`));
});
