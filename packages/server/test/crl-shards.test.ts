import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { fixedClock } from "@ukey/policy";
import { crlShardOf, derToPem } from "@ukey/ca";
import type { FastifyInstance } from "fastify";
import { buildApp } from "../src/app.js";
import { openServerContext, type ServerContext } from "../src/server-context.js";
import { addHolder, initialisedDataDir, keyArgs, openssl, opensslCsr, tempDir, type TempDir } from "./support/fixtures.js";

// Issue 17, part 2: partitioned CRLs. Each certificate names the shard of its serial; each shard is a CRL
// with its issuingDistributionPoint; the real openssl checks a certificate against its own shard.
const shards = 4;
let t: TempDir;
let ctx: ServerContext;
let app: FastifyInstance;
let root: string;
let issuing: string;
const certs: Array<{ serial: string; pem: string; shard: number; revoked: boolean }> = [];

before(async () => {
  t = tempDir();
  const { dataDir, env } = initialisedDataDir(t);
  const cfgFile = `${dataDir}/config.json`;
  const cfg = JSON.parse(readFileSync(cfgFile, "utf8"));
  cfg.ca = { ...cfg.ca, crlShards: shards };
  writeFileSync(cfgFile, JSON.stringify(cfg, null, 2));
  assert.equal(addHolder(t, dataDir, env, "S1").status, 0);
  root = `${dataDir}/ca/root.cer.pem`;
  issuing = `${dataDir}/ca/issuing.cer.pem`;
  ctx = await openServerContext(dataDir, env, fixedClock(new Date()));
  app = await buildApp(ctx);
  const csr = readFileSync(opensslCsr(t, "s", keyArgs.p256).csr);
  for (let i = 0; i < 16; i++) {
    const c = await ctx.issuance.issue({ holderId: "S1", profileId: "personal", csr, actor: "test" });
    const revoked = i % 2 === 1;
    if (revoked) await ctx.revocation.revoke(c.serial, "keyCompromise", "test");
    certs.push({ serial: c.serial, pem: t.write(`c${i}.pem`, derToPem(c.der!, "CERTIFICATE")), shard: crlShardOf(c.serial, shards), revoked });
  }
});
after(async () => {
  await app?.close();
  await ctx?.close();
  t?.cleanup();
});

async function shardPem(k: number): Promise<string> {
  const r = await app.inject({ method: "GET", url: `/crl/issuing/${k}.pem` });
  assert.equal(r.statusCode, 200, r.body);
  return t.write(`shard${k}.crl.pem`, r.body);
}

test("each certificate names its shard; each shard CRL carries its distribution point and only its serials", async () => {
  const used = new Set(certs.map((c) => c.shard));
  assert.ok(used.size >= 2, "sixteen random serials fall in several shards");
  for (const c of certs) {
    const text = openssl(["x509", "-in", c.pem, "-noout", "-ext", "crlDistributionPoints"]).out;
    assert.match(text, new RegExp(`URI:${ctx.config.publicUrl.replace(/\/$/, "")}/crl/issuing/${c.shard}\\.crl`), text);
  }
  for (let k = 0; k < shards; k++) {
    const text = openssl(["crl", "-in", await shardPem(k), "-noout", "-text"]).out;
    assert.match(text, /X509v3 Issuing Distribution Point: critical/);
    assert.match(text, new RegExp(`/crl/issuing/${k}\\.crl`));
    for (const c of certs.filter((x) => x.revoked)) {
      const listed = text.toUpperCase().includes(`SERIAL NUMBER: ${c.serial.toUpperCase()}`);
      assert.equal(listed, c.shard === k, `${c.serial} in shard ${k}`);
    }
  }
  // Delta CRLs are off by default: no freshestCRL anywhere, and their routes answer 404.
  assert.doesNotMatch(openssl(["x509", "-in", certs[0]!.pem, "-noout", "-text"]).out, /Freshest CRL/);
  assert.doesNotMatch(openssl(["crl", "-in", await shardPem(0), "-noout", "-text"]).out, /Freshest CRL|Delta CRL/);
  for (const off of ["/crl/issuing-delta.crl", "/crl/issuing-delta.pem", "/crl/issuing/0-delta.crl", "/crl/issuing/1-delta.pem"]) {
    assert.equal((await app.inject({ method: "GET", url: off })).statusCode, 404, off);
  }
  const der = await app.inject({ method: "GET", url: "/crl/issuing/0.crl" });
  assert.equal(der.headers["content-type"], "application/pkix-crl");
  for (const bad of [`${shards}.crl`, "x.crl", "1.der", "01.crl0"]) {
    assert.equal((await app.inject({ method: "GET", url: `/crl/issuing/${bad}` })).statusCode, 404, bad);
  }
});

test("openssl verify -crl_check accepts each good certificate and rejects each revoked one against its own shard", async () => {
  for (const c of certs) {
    const crl = await shardPem(c.shard);
    const r = openssl(["verify", "-crl_check", "-CAfile", root, "-untrusted", issuing, "-CRLfile", crl, c.pem]);
    if (c.revoked) {
      assert.notEqual(r.status, 0, r.out);
      assert.match(r.out, /certificate revoked/);
    } else {
      assert.equal(r.status, 0, r.out);
    }
    // Another shard's CRL does not cover it: openssl sees its issuingDistributionPoint is another scope.
    const other = await shardPem((c.shard + 1) % shards);
    const o = openssl(["verify", "-crl_check", "-CAfile", root, "-untrusted", issuing, "-CRLfile", other, c.pem]);
    assert.notEqual(o.status, 0, o.out);
    assert.match(o.out, /different CRL scope/);
  }
});

test("the whole CRL at /crl/issuing.crl still lists every revocation (for certificates issued before partitioning)", async () => {
  const r = await app.inject({ method: "GET", url: "/crl/issuing.pem" });
  const text = openssl(["crl", "-in", t.write("whole.pem", r.body), "-noout", "-text"]).out;
  assert.doesNotMatch(text, /Issuing Distribution Point/);
  for (const c of certs.filter((x) => x.revoked)) assert.ok(text.toUpperCase().includes(c.serial.toUpperCase()), c.serial);
});
