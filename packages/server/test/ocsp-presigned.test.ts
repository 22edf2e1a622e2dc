import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import type { FastifyInstance } from "fastify";
import { fixedClock } from "@ukey/policy";
import { createTestDatabase } from "../../store/test/support/postgres.js";
import { buildApp } from "../src/app.js";
import { openServerContext, type ServerContext } from "../src/server-context.js";
import { OcspService } from "../src/ocsp/ocsp-service.js";
import { addHolder, initialisedDataDir, keyArgs, openssl, opensslCsr, runUkeyServer, startUkeyServer, tempDir, type TempDir } from "./support/fixtures.js";

// Issue 17, part 1: OCSP by RFC 5019 from responses signed ahead and stored beside each certificate.
const hour = 3_600_000;
let t: TempDir;
let dataDir: string;
let env: Record<string, string>;
let issuing: string;
let root: string;

/** Issues a certificate through the real CLI (which signs its first OCSP response in the issuance batch). */
function issue(dir: string, e: Record<string, string>, name: string): { serial: string; pem: string } {
  const { csr } = opensslCsr(t, name, keyArgs.p256);
  const pem = t.path(`${name}.pem`);
  const r = runUkeyServer(["issue", "--data-dir", dir, "--holder", "H1", "--profile", "personal", "--csr", csr, "--out", pem, "--json"], e);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  return { serial: r.json<{ serial: string }>().serial, pem };
}

/** An OCSP request made by openssl. */
function request(cert: string, nonce: boolean): Buffer {
  const out = t.path(`req-${Math.random().toString(36).slice(2)}.der`);
  const r = openssl(["ocsp", "-issuer", issuing, "-cert", cert, "-reqout", out, ...(nonce ? [] : ["-no_nonce"])]);
  assert.equal(r.status, 0, r.out);
  return readFileSync(out);
}

/** What openssl makes of a response about `cert`. */
function verify(resp: Buffer, cert: string): string {
  const f = t.write(`resp-${Math.random().toString(36).slice(2)}.der`, resp);
  const r = openssl(["ocsp", "-respin", f, "-issuer", issuing, "-cert", cert, "-CAfile", root, "-resp_text", "-no_nonce"]);
  assert.match(r.out, /Response verify OK/, r.out);
  return r.out;
}

before(() => {
  t = tempDir();
  ({ dataDir, env } = initialisedDataDir(t));
  assert.equal(addHolder(t, dataDir, env, "H1").status, 0);
  issuing = `${dataDir}/ca/issuing.cer.pem`;
  root = `${dataDir}/ca/root.cer.pem`;
});
after(() => t.cleanup());

test("an issued certificate's response is signed ahead and served from the store, with RFC 5019 cache headers", async () => {
  const leaf = issue(dataDir, env, "cached");
  const clock = fixedClock(new Date());
  const ctx = await openServerContext(dataDir, env, clock);
  const app = await buildApp(ctx);
  try {
    const stored = (await ctx.store.certificates.ocspState(leaf.serial, ctx.ca.issuerKeyId))?.response;
    assert.ok(stored, "the issuance batch stored a response");
    const url = `/ocsp/${encodeURIComponent(request(leaf.pem, false).toString("base64"))}`;
    const res = await app.inject({ method: "GET", url });
    assert.equal(res.statusCode, 200);
    assert.ok(res.rawPayload.equals(stored.der), "the stored bytes, not a new signature");
    assert.equal(ctx.ocsp.counters.fromCache, 1);
    assert.equal(ctx.ocsp.counters.signedLive, 0);
    assert.match(verify(res.rawPayload, leaf.pem), /: good/);
    const maxAge = Number(/max-age=(\d+)/.exec(String(res.headers["cache-control"]))?.[1]);
    assert.equal(maxAge, ctx.config.ca.ocspMaxAgeSeconds);
    assert.match(String(res.headers["cache-control"]), /public, no-transform, must-revalidate/);
    assert.equal(res.headers["last-modified"], new Date(stored.thisUpdate).toUTCString());
    assert.equal(res.headers["expires"], new Date(clock.now().getTime() + maxAge * 1000).toUTCString());
    const etag = String(res.headers.etag);
    assert.match(etag, /^".+"$/);
    const again = await app.inject({ method: "GET", url, headers: { "if-none-match": etag } });
    assert.equal(again.statusCode, 304);
    assert.equal(again.rawPayload.length, 0);

    // max-age never reaches past nextUpdate.
    clock.set(new Date(stored.nextUpdate - 5 * 60_000));
    const late = await app.inject({ method: "GET", url });
    assert.ok(late.rawPayload.equals(stored.der));
    assert.match(String(late.headers["cache-control"]), /max-age=300,/);

    // Past nextUpdate (the refresher has not run): never a stale answer, a live one.
    clock.set(new Date(stored.nextUpdate + 1));
    const stale = await app.inject({ method: "GET", url });
    assert.ok(!stale.rawPayload.equals(stored.der));
    assert.equal(stale.headers["cache-control"], "no-cache");
    assert.equal(ctx.ocsp.counters.signedLive, 1);
  } finally {
    await app.close();
    await ctx.close();
  }
});

test("a nonce is left out of the pre-signed answer, and echoed when ocspNonces is echo", async () => {
  const leaf = issue(dataDir, env, "nonce");
  const ctx = await openServerContext(dataDir, env, fixedClock(new Date()));
  try {
    const stored = (await ctx.store.certificates.ocspState(leaf.serial, ctx.ca.issuerKeyId))!.response!;
    const withNonce = request(leaf.pem, true);
    const plain = await ctx.ocsp.answer(withNonce);
    assert.ok(plain.der.equals(stored.der));
    assert.doesNotMatch(verify(plain.der, leaf.pem), /OCSP Nonce/);
    const echo = new OcspService({ certificates: ctx.store.certificates, ca: ctx.ca, clock: ctx.clock, validityHours: 24, nonces: "echo" });
    const echoed = await echo.answer(withNonce);
    assert.equal(echo.counters.signedLive, 1);
    assert.match(verify(echoed.der, leaf.pem), /OCSP Nonce/);
    // A SHA-256 CertID is not what RFC 5019 clients send: answered, signed on the request path.
    const out = t.path("sha256.req");
    assert.equal(openssl(["ocsp", "-issuer", issuing, "-sha256", "-cert", leaf.pem, "-no_nonce", "-reqout", out]).status, 0);
    const sha256 = await ctx.ocsp.answer(readFileSync(out));
    assert.ok(!sha256.der.equals(stored.der));
    assert.match(verify(sha256.der, leaf.pem), /: good/);
  } finally {
    await ctx.close();
  }
});

test("a revocation is re-signed at once; a response signed before it never lands after it", async () => {
  const leaf = issue(dataDir, env, "revoked");
  const ctx = await openServerContext(dataDir, env, fixedClock(new Date()));
  try {
    const before = (await ctx.store.certificates.ocspState(leaf.serial, ctx.ca.issuerKeyId))!.response!;
    await ctx.revocation.revoke(leaf.serial, "keyCompromise", "test");
    const st = (await ctx.store.certificates.ocspState(leaf.serial, ctx.ca.issuerKeyId))!;
    assert.ok(st.response && !st.response.der.equals(before.der));
    const a = await ctx.ocsp.answer(request(leaf.pem, false));
    assert.ok(a.der.equals(st.response.der), "served from the store");
    const text = verify(a.der, leaf.pem);
    assert.match(text, /: revoked/);
    assert.match(text, /Reason: keyCompromise/);
    // The old `good` one, written back as a slow refresher would: refused.
    const stale = { der: before.der, thisUpdate: before.thisUpdate, nextUpdate: before.nextUpdate, refreshAt: before.nextUpdate };
    assert.equal(await ctx.store.certificates.storeOcsp(leaf.serial, stale, null), false);
    assert.ok((await ctx.store.certificates.ocspState(leaf.serial, ctx.ca.issuerKeyId))!.response!.der.equals(st.response.der));
  } finally {
    await ctx.close();
  }
});

test("the refresher re-signs past half the validity, and sets aside expired certificates", async () => {
  const leaf = issue(dataDir, env, "refresh");
  const clock = fixedClock(new Date());
  const ctx = await openServerContext(dataDir, env, clock);
  try {
    const first = (await ctx.store.certificates.ocspState(leaf.serial, ctx.ca.issuerKeyId))!.response!;
    assert.equal(await ctx.ocsp.refreshDue(), 0, "nothing due right after issuance");
    clock.advance((ctx.config.ca.ocspValidityHours / 2) * hour + 1000);
    assert.ok(await ctx.ocsp.refreshDue() >= 1);
    const second = (await ctx.store.certificates.ocspState(leaf.serial, ctx.ca.issuerKeyId))!.response!;
    assert.ok(second.thisUpdate > first.thisUpdate);
    assert.equal(second.nextUpdate, second.thisUpdate + ctx.config.ca.ocspValidityHours * hour);
    assert.equal(await ctx.ocsp.refreshDue(), 0, "each due response is signed once");
    // Ten years on every certificate has expired: none is signed ahead again, and no pass finds them due.
    clock.advance(3650 * 24 * hour);
    assert.equal(await ctx.ocsp.refreshDue(), 0);
    assert.equal((await ctx.store.certificates.claimOcspDue(ctx.ca.issuerKeyId, clock.now().getTime(), clock.now().getTime(), 100)).length, 0);
  } finally {
    await ctx.close();
  }
});

test("killed between a revocation's commit and its re-signing, the restarted server never answers good", async () => {
  const leaf = issue(dataDir, env, "crash");
  const script = resolve(import.meta.dirname, "support/revoke-then-die.ts");
  const r = spawnSync(process.execPath, ["--import", "tsx", script, dataDir, leaf.serial], { env: { ...process.env, ...env }, encoding: "utf8" });
  assert.equal(r.signal, "SIGKILL", r.stdout + r.stderr);
  assert.match(r.stdout, /committed, dying/);
  const server = await startUkeyServer(dataDir, env);
  try {
    for (const nonce of [false, true]) {
      const o = openssl(["ocsp", "-issuer", issuing, "-cert", leaf.pem, "-url", `${server.url}/ocsp`, "-CAfile", root, ...(nonce ? [] : ["-no_nonce"])]);
      assert.match(o.out, /Response verify OK/, o.out);
      assert.match(o.out, /: revoked/, o.out);
    }
  } finally {
    await server.stop();
  }
  // The refresher of that run (or of the next) stores the revoked answer.
  const ctx = await openServerContext(dataDir, env, fixedClock(new Date()));
  try {
    await ctx.ocsp.refreshDue();
    const st = (await ctx.store.certificates.ocspState(leaf.serial, ctx.ca.issuerKeyId))!;
    assert.ok(st.response);
    assert.match(verify(st.response.der, leaf.pem), /: revoked/);
  } finally {
    await ctx.close();
  }
});

test("two instances on PostgreSQL: a revocation on one is served by the other from the next request", async () => {
  const db = await createTestDatabase();
  const pass = t.write("pg-passphrase", "two instances\n");
  const pgEnv = { UKEY_DATABASE_URL: db.url, UKEY_CA_PASSPHRASE_FILE: pass };
  const pgDir = t.path("pgdata");
  const contexts: ServerContext[] = [];
  const apps: FastifyInstance[] = [];
  try {
    const init = runUkeyServer(["init", "--data-dir", pgDir, "--json"], pgEnv);
    assert.equal(init.status, 0, init.stdout + init.stderr);
    assert.equal(addHolder(t, pgDir, pgEnv, "H1").status, 0);
    const saved = issuing;
    const leaf = issue(pgDir, pgEnv, "pg");
    issuing = `${pgDir}/ca/issuing.cer.pem`;
    const savedRoot = root;
    root = `${pgDir}/ca/root.cer.pem`;
    try {
      const clock = fixedClock(new Date());
      for (let i = 0; i < 2; i++) {
        const ctx = await openServerContext(pgDir, pgEnv, clock);
        assert.equal(ctx.store.db.engine, "postgres");
        contexts.push(ctx);
        apps.push(await buildApp(ctx));
      }
      const url = `/ocsp/${encodeURIComponent(request(leaf.pem, false).toString("base64"))}`;
      const seen = await apps[1]!.inject({ method: "GET", url });
      assert.match(verify(seen.rawPayload, leaf.pem), /: good/);
      await contexts[0]!.revocation.revoke(leaf.serial, "cessationOfOperation", "test");
      const after = await apps[1]!.inject({ method: "GET", url });
      const text = verify(after.rawPayload, leaf.pem);
      assert.match(text, /: revoked/);
      assert.match(text, /Reason: cessationOfOperation/);
      assert.equal(contexts[1]!.ocsp.counters.signedLive, 0, "instance 1 served what instance 0 stored");
    } finally {
      issuing = saved;
      root = savedRoot;
    }
  } finally {
    for (const a of apps) await a.close();
    for (const c of contexts) await c.close();
    await db.drop();
  }
});

test("GnuTLS ocsptool and NSS ocspclnt verify good and revoked answers signed by the issuing CA", async () => {
  const good = issue(dataDir, env, "third-party-good");
  const bad = issue(dataDir, env, "third-party-revoked");
  assert.equal(runUkeyServer(["revoke", "--data-dir", dataDir, "--serial", bad.serial, "--reason", "keyCompromise"], env).status, 0);
  // An NSS database as a relying party keeps one: the root trusted, the issuing CA and the two leaves known.
  const nssDir = t.path("nssdb");
  const db = `sql:${nssDir}`;
  const nss = (cmd: string, args: string[]) => {
    const r = spawnSync(cmd, args, { encoding: "utf8" });
    if (r.error) throw new Error(`NSS ${cmd} cannot run (${r.error.message}): run scripts/ensure-system-deps.sh (Debian libnss3-tools)`);
    return { status: r.status, out: `${r.stdout}${r.stderr}` };
  };
  mkdirSync(nssDir);
  assert.equal(nss("certutil", ["-N", "-d", db, "--empty-password"]).status, 0);
  for (const [name, file, trust] of [["root", root, "C,C,C"], ["issuing", issuing, ",,"], ["good", good.pem, ",,"], ["revoked", bad.pem, ",,"]] as const) {
    const r = nss("certutil", ["-A", "-d", db, "-n", name, "-t", trust, "-a", "-i", file]);
    assert.equal(r.status, 0, r.out);
  }
  const server = await startUkeyServer(dataDir, env);
  try {
    const ask = (cert: string) => {
      // The issuing CA is the responder: it is the trust anchor of its own answers (RFC 6960 4.2.2.2).
      const r = spawnSync("ocsptool", [`--ask=${server.url}/ocsp`, `--load-issuer=${issuing}`, `--load-cert=${cert}`, `--load-trust=${issuing}`], { encoding: "utf8" });
      if (r.error) throw new Error(`GnuTLS ocsptool cannot run (${r.error.message}): run scripts/ensure-system-deps.sh (Debian gnutls-bin)`);
      return `${r.stdout}${r.stderr}`;
    };
    const g = ask(good.pem);
    assert.match(g, /Verifying OCSP Response: Success/, g);
    assert.match(g, /Certificate Status: good/, g);
    const b = ask(bad.pem);
    assert.match(b, /Verifying OCSP Response: Success/, b);
    assert.match(b, /Certificate Status: revoked/, b);

    // NSS asks by GET with a Service Locator in each Request (as Firefox does); -t issuing: the answer's
    // signature is checked against the issuing CA.
    const nssAsk = (name: string) => nss("ocspclnt", ["-d", db, "-S", name, "-l", `${server.url}/ocsp`, "-t", "issuing"]);
    const ng = nssAsk("good");
    assert.equal(ng.status, 0, ng.out);
    assert.match(ng.out, /Check of certificate "good" succeeded/, ng.out);
    const nb = nssAsk("revoked");
    assert.match(nb.out, /Check of certificate "revoked" failed\.\s+Reason:\s+Peer's Certificate has been revoked/, nb.out);
  } finally {
    await server.stop();
  }
});
