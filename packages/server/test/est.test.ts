import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import Database from "better-sqlite3";
import { systemClock } from "@ukey/policy";
import { enrolmentServiceFor } from "../src/enrolment-service.js";
import { openServerContext } from "../src/server-context.js";
import { addHolder, initialisedDataDir, keyArgs, openssl, startUkeyServer, tempDir, type RunningServer, type TempDir } from "./support/fixtures.js";

// EST against the real server on its TLS port and its client-certificate
// port, driven only by curl and openssl, as an integrator would
// (docs/est.md). strongSwan's `pki --est` is in est-strongswan.test.ts.
const day = 86_400_000;
let t: TempDir;
let dataDir: string;
let server: RunningServer;
/** EST on the TLS port, which never asks for a client certificate. */
let base: string;
/** EST on the client-certificate port: simplereenroll. */
let reenrolBase: string;
const codes: Record<"curl" | "expired", { ref: string; code: string }> = {} as never;
/** Certificates issued before the server starts: gateway ones inside the EST window, a personal one whose profile asks for more than EST can prove. */
const certs: Record<"gateway" | "personal" | "superseding", { pem: string; key: string }> = {} as never;

interface Curl { status: number; headers: string; body: string }

/** curl over TLS to our server (the TLS port, unless `on` says otherwise); `args` go before the URL. */
function curl(path: string, args: string[] = [], on = base): Curl {
  const headers = t.path(`headers-${Math.random()}`);
  const r = spawnSync("curl", ["-sS", "--cacert", `${dataDir}/tls/server.cer.pem`, "-D", headers, ...args, `${on}${path}`], { encoding: "utf8" });
  let h = "";
  try {
    h = readFileSync(headers, "utf8");
  } catch {
    // No response at all: reported below.
  }
  // A server that answers early (413) may close while curl still sends; the answer counts, not the broken pipe.
  if (r.status !== 0 && !/^HTTP\//.test(h)) throw new Error(`curl failed: ${r.stderr}`);
  return { status: Number(/^HTTP\/\S+ (\d+)/.exec(h)?.[1]), headers: h, body: r.stdout };
}

function header(c: Curl, name: string): string | undefined {
  return new RegExp(`^${name}: (.*)\\r?$`, "im").exec(c.headers)?.[1]?.trim();
}

/** A base64 DER CSR made by openssl, written to a file for `curl --data-binary @file`. */
function csrFile(name: string, subject: string, alg: readonly string[] = keyArgs.p256): { file: string; key: string } {
  const key = t.path(`${name}.key.pem`);
  const der = execFileSync("openssl", ["req", "-new", ...alg, "-nodes", "-keyout", key, "-subj", subject, "-outform", "DER"], { stdio: ["ignore", "pipe", "pipe"] });
  // Line breaks every 64 characters, as `base64` prints: RFC 8951 allows them.
  return { file: t.write(`${name}.csr.b64`, (der.toString("base64").match(/.{1,64}/g) ?? []).join("\n") + "\n"), key };
}

/** The certificates of a base64 certs-only PKCS#7 reply, as PEM, via openssl. */
function p7Certificates(body: string): string[] {
  const der = t.write(`p7-${Math.random()}.der`, Buffer.from(body, "base64"));
  const r = openssl(["pkcs7", "-inform", "DER", "-in", der, "-print_certs"]);
  assert.equal(r.status, 0, r.out);
  return r.out.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

function subjectOf(pem: string): string {
  return openssl(["x509", "-noout", "-subject", "-nameopt", "RFC2253"], Buffer.from(pem)).out.trim();
}

function problemCode(c: Curl): string {
  return (JSON.parse(c.body) as { code: string }).code;
}

const gatewaySubject = "/C=CN/O=ukey-renew demo/CN=Holder GW1/serialNumber=GW1";

before(async () => {
  t = tempDir();
  let env: Record<string, string>;
  ({ dataDir, env } = initialisedDataDir(t));
  const cfg = JSON.parse(readFileSync(`${dataDir}/config.json`, "utf8"));
  // Possession only, EST from 60 days before expiry (docs/policies.md); the built-in personal profile also asks for ID number and SMS code.
  cfg.profiles.push({ id: "gateway", preset: "securities-gateway", certificateKind: "hardware" });
  writeFileSync(`${dataDir}/config.json`, JSON.stringify(cfg, null, 2));
  for (const id of ["GW1", "GW2", "P1"]) assert.equal(addHolder(t, dataDir, env, id).status, 0);

  const ctx = await openServerContext(dataDir, env, systemClock);
  try {
    const enrolments = enrolmentServiceFor(ctx);
    const made = await enrolments.create({ holderId: "GW2", profileId: "gateway", actor: "test" });
    codes.curl = { ref: made.referenceNumber, code: made.authorizationCode };
    const expired = await enrolments.create({ holderId: "GW2", profileId: "gateway", actor: "test", ttlDays: 1 });
    await ctx.store.db.run("UPDATE enrolments SET expires_at = 1 WHERE id = ?", [expired.enrolment.id]);
    codes.expired = { ref: expired.referenceNumber, code: expired.authorizationCode };
    // Thirty days before expiry: inside both profiles' EST windows.
    const notAfter = new Date(Date.now() + 30 * day);
    for (const [name, holderId, profileId] of [["gateway", "GW1", "gateway"], ["superseding", "GW1", "gateway"], ["personal", "P1", "personal"]] as const) {
      const key = t.path(`${name}-old.key.pem`);
      const csr = execFileSync("openssl", ["req", "-new", ...keyArgs.p256, "-nodes", "-keyout", key, "-subj", "/CN=x", "-outform", "DER"], { stdio: ["ignore", "pipe", "pipe"] });
      const c = await ctx.issuance.issue({ holderId, profileId, csr, actor: "test", notAfter });
      certs[name] = { pem: t.write(`${name}-old.cer.pem`, `-----BEGIN CERTIFICATE-----\n${c.der!.toString("base64").match(/.{1,64}/g)!.join("\n")}\n-----END CERTIFICATE-----\n`), key };
    }
  } finally {
    await ctx.close();
  }
  server = await startUkeyServer(dataDir, env, ["--tls-port", "0", "--client-cert-port", "0"]);
  base = `https://localhost:${server.https}/.well-known/est`;
  reenrolBase = `https://localhost:${server.clientCert}/.well-known/est`;
});

after(async () => {
  await server?.stop();
  t?.cleanup();
});

test("cacerts: a certs-only PKCS#7 in base64 with the issuing and root CA certificates", () => {
  const r = curl("/cacerts");
  assert.equal(r.status, 200);
  assert.equal(header(r, "content-type"), "application/pkcs7-mime");
  // What Cisco libest needs (issue 17): header names in canonical case, base64 ended by a newline.
  for (const name of ["Content-Type", "Content-Transfer-Encoding", "Cache-Control", "Content-Length", "Strict-Transport-Security", "X-RateLimit-Limit"]) {
    assert.match(r.headers, new RegExp(`^${name}: `, "m"), `${name} in ${r.headers}`);
  }
  assert.doesNotMatch(r.headers, /^[a-z][^:]*:/m, "no header name in lower case");
  assert.match(r.body, /^[A-Za-z0-9+/]+=*\n$/);
  const got = p7Certificates(r.body).map(subjectOf).sort();
  assert.deepEqual(got, [
    "subject=CN=ukey-renew demo Issuing CA,O=ukey-renew demo,C=CN",
    "subject=CN=ukey-renew demo Root CA,O=ukey-renew demo,C=CN",
  ]);
  // Byte for byte the certificates the CA serves elsewhere.
  const pems = p7Certificates(r.body).map((p) => p.replace(/\s/g, ""));
  for (const which of ["root", "issuing"]) {
    assert.ok(pems.includes(readFileSync(`${dataDir}/ca/${which}.cer.pem`, "utf8").replace(/\s/g, "")), which);
  }
});

test("csrattrs: the key and signature algorithms of the profiles, DER in base64", () => {
  const r = curl("/csrattrs");
  assert.equal(r.status, 200);
  assert.equal(header(r, "content-type"), "application/csrattrs");
  const parsed = openssl(["asn1parse", "-inform", "DER"], Buffer.from(r.body, "base64"));
  assert.equal(parsed.status, 0, parsed.out);
  for (const name of ["id-ecPublicKey", "prime256v1", "secp384r1", "rsaEncryption", "ecdsa-with-SHA256"]) assert.match(parsed.out, new RegExp(`:${name}\\b`), name);
});

test("simpleenroll: reference number and authorization code as Basic credentials give a certificate openssl verifies, once", () => {
  const { ref, code } = codes.curl;
  const send = (file: string, extra: string[] = []) =>
    curl("/simpleenroll", ["--data-binary", `@${file}`, "-H", "Content-Type: application/pkcs10", ...extra]);

  const none = send(csrFile("anon", "/CN=nobody").file);
  assert.equal(none.status, 401);
  assert.equal(header(none, "www-authenticate"), 'Basic realm="ukey-renew EST"');
  assert.equal(problemCode(none), "EST_CREDENTIALS_REQUIRED");

  const wrong = send(csrFile("wrong", "/CN=nobody").file, ["--user", `${ref}:AAAA-BBBB-CCCC`]);
  assert.equal(wrong.status, 401);
  assert.equal(header(wrong, "www-authenticate"), 'Basic realm="ukey-renew EST"');
  assert.equal(problemCode(wrong), "DOWNLOAD_CODE_INVALID");

  const expired = send(csrFile("late", "/CN=nobody").file, ["--user", `${codes.expired.ref}:${codes.expired.code}`]);
  assert.equal(expired.status, 401);
  assert.equal(problemCode(expired), "CODE_EXPIRED");

  // Refusals that change nothing: the code still works afterwards.
  const other = send(csrFile("other", "/CN=Somebody Else").file, ["--user", `${ref}:${code}`]);
  assert.equal(other.status, 400);
  assert.equal(problemCode(other), "CSR_SUBJECT_MISMATCH");
  const garbage = t.write("garbage.b64", "this is not base64!\n");
  const bad = send(garbage, ["--user", `${ref}:${code}`]);
  assert.equal(bad.status, 400);
  assert.equal(problemCode(bad), "EST_BASE64_MALFORMED");
  const weak = send(csrFile("weak", "/CN=x", keyArgs.rsa1024).file, ["--user", `${ref}:${code}`]);
  assert.equal(weak.status, 400);

  // An empty subject: the record decides it.
  const ok = send(csrFile("gw2", "/").file, ["--user", `${ref}:${code}`]);
  assert.equal(ok.status, 200, ok.body);
  assert.equal(header(ok, "content-type"), "application/pkcs7-mime; smime-type=certs-only");
  const [leaf, ...rest] = p7Certificates(ok.body);
  assert.equal(rest.length, 0, "only the new certificate");
  assert.equal(subjectOf(leaf!), "subject=serialNumber=GW2,CN=Holder GW2,O=ukey-renew demo,C=CN");
  const leafFile = t.write("gw2.cer.pem", leaf!);
  const verify = openssl(["verify", "-CAfile", `${dataDir}/ca/root.cer.pem`, "-untrusted", `${dataDir}/ca/issuing.cer.pem`, leafFile]);
  assert.equal(verify.status, 0, verify.out);
  assert.match(verify.out, /: OK/);

  const again = send(csrFile("gw2-again", "/").file, ["--user", `${ref}:${code}`]);
  assert.equal(again.status, 401);
  assert.equal(header(again, "www-authenticate"), 'Basic realm="ukey-renew EST"');
  assert.equal(problemCode(again), "CODE_ALREADY_USED");
});

test("simplereenroll on the TLS port: 403 naming the client-certificate port, certificate offered or not", () => {
  const csr = csrFile("re-tls-port", gatewaySubject).file;
  for (const extra of [[], ["--cert", certs.gateway.pem, "--key", certs.gateway.key]]) {
    const r = curl("/simplereenroll", ["--data-binary", `@${csr}`, "-H", "Content-Type: application/pkcs10", ...extra]);
    assert.equal(r.status, 403, r.body);
    const p = JSON.parse(r.body) as { code: string; remedy: { en: string; "zh-CN": string } };
    assert.equal(p.code, "CLIENT_CERT_PORT_REQUIRED");
    assert.match(p.remedy.en, new RegExp(`port ${server.clientCert} `));
    assert.match(p.remedy["zh-CN"], new RegExp(`端口 ${server.clientCert}`));
  }
});

test("simplereenroll: the client certificate renews itself; same subject, new key, the old one superseded", () => {
  const old = certs.gateway;
  const client = ["--cert", old.pem, "--key", old.key];
  const send = (file: string, extra: string[]) => curl("/simplereenroll", ["--data-binary", `@${file}`, "-H", "Content-Type: application/pkcs10", ...extra], reenrolBase);

  // 403, not 401: there is no challenge to answer over HTTP (RFC 9110 wants WWW-Authenticate with a 401; issue 17).
  const noCert = send(csrFile("re-none", gatewaySubject).file, []);
  assert.equal(noCert.status, 403);
  assert.equal(header(noCert, "www-authenticate"), undefined);
  assert.equal(problemCode(noCert), "EST_CLIENT_CERT_REQUIRED");

  // A certificate we did not issue, with a subject that looks right.
  const fakeKey = t.path("fake.key.pem");
  const fake = t.path("fake.cer.pem");
  execFileSync("openssl", ["req", "-x509", ...keyArgs.p256, "-nodes", "-keyout", fakeKey, "-subj", gatewaySubject, "-days", "30", "-out", fake], { stdio: "pipe" });
  const forged = send(csrFile("re-fake", gatewaySubject).file, ["--cert", fake, "--key", fakeKey]);
  assert.equal(forged.status, 403);
  assert.equal(problemCode(forged), "EST_CLIENT_CERT_UNKNOWN");

  const personal = send(csrFile("re-personal", "/C=CN/O=ukey-renew demo/CN=Holder P1/serialNumber=P1").file, ["--cert", certs.personal.pem, "--key", certs.personal.key]);
  assert.equal(personal.status, 403);
  assert.equal(problemCode(personal), "EST_VERIFICATION_NOT_POSSIBLE");

  const otherSubject = send(csrFile("re-other", "/C=CN/O=ukey-renew demo/CN=Holder GW2/serialNumber=GW2").file, client);
  assert.equal(otherSubject.status, 400);
  assert.equal(problemCode(otherSubject), "CSR_SUBJECT_MISMATCH");
  const sameKey = t.write("re-same.b64", execFileSync("openssl", ["req", "-new", "-key", old.key, "-subj", gatewaySubject, "-outform", "DER"]).toString("base64"));
  const notRenewed = send(sameKey, client);
  assert.equal(notRenewed.status, 400);
  assert.equal(problemCode(notRenewed), "KEY_NOT_RENEWED");

  const ok = send(csrFile("re-ok", gatewaySubject).file, client);
  assert.equal(ok.status, 200, ok.body);
  assert.equal(header(ok, "content-type"), "application/pkcs7-mime; smime-type=certs-only");
  const [leaf] = p7Certificates(ok.body);
  assert.equal(subjectOf(leaf!), subjectOf(readFileSync(old.pem, "utf8")));
  const leafFile = t.write("re-ok.cer.pem", leaf!);
  assert.equal(openssl(["verify", "-CAfile", `${dataDir}/ca/root.cer.pem`, "-untrusted", `${dataDir}/ca/issuing.cer.pem`, leafFile]).status, 0);
  assert.match(openssl(["x509", "-noout", "-modulus", "-pubkey", "-in", leafFile]).out, /PUBLIC KEY/);
  assert.notEqual(openssl(["pkey", "-pubout", "-in", old.key]).out, openssl(["x509", "-noout", "-pubkey", "-in", leafFile]).out, "a new key");
  assert.equal(openssl(["pkey", "-pubout", "-in", t.path("re-ok.key.pem")]).out, openssl(["x509", "-noout", "-pubkey", "-in", leafFile]).out);

  // The same request again (a client whose reply was lost) gets the same certificate again ...
  const repeated = send(t.path("re-ok.csr.b64"), client);
  assert.equal(repeated.status, 200, repeated.body);
  assert.deepEqual(p7Certificates(repeated.body), [leaf]);
  // ... but a new key is a new renewal, and the superseded certificate is done with EST (the database check is in the last test).
  const twice = send(csrFile("re-twice", gatewaySubject).file, client);
  assert.equal(problemCode(twice), "CERT_SUPERSEDED");
  // The new certificate renews itself in turn only inside its own window: it is five years away.
  const fresh = send(csrFile("re-fresh", gatewaySubject).file, ["--cert", leafFile, "--key", t.path("re-ok.key.pem")]);
  assert.equal(problemCode(fresh), "RENEWAL_NOT_YET_OPEN");
});

test("EST answers only over TLS", () => {
  const r = spawnSync("curl", ["-sS", "-o", "/dev/null", "-w", "%{http_code}", `${server.url}/.well-known/est/cacerts`], { encoding: "utf8" });
  assert.equal(r.stdout, "404");
});

test("an oversized body is refused with 413 and its catalogue code", async () => {
  // Node's client, not curl: the server may answer 413 and close while the body is still being
  // sent, and curl then reports the broken pipe instead of the answer it already has.
  const body = Buffer.from("A".repeat(33 * 1024));
  const r = await new Promise<{ status: number; text: string }>((resolve, reject) => {
    const req = httpsRequest(`${base}/simpleenroll`, {
      method: "POST", ca: readFileSync(`${dataDir}/tls/server.cer.pem`),
      headers: { "content-type": "application/pkcs10", "content-length": body.length, authorization: `Basic ${Buffer.from(`${codes.curl.ref}:${codes.curl.code}`).toString("base64")}` },
    }, (res) => {
      let text = "";
      res.on("data", (c) => { text += String(c); });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on("error", (e) => { if ((e as NodeJS.ErrnoException).code !== "EPIPE" && (e as NodeJS.ErrnoException).code !== "ECONNRESET") reject(e); });
    // Never hang: a connection that closes without an answer fails the test.
    req.on("close", () => setTimeout(() => reject(new Error("closed without an answer")), 2000).unref());
    req.setTimeout(15_000, () => req.destroy(new Error("no answer in 15 s")));
    req.end(body);
  });
  assert.equal(r.status, 413);
  const p = JSON.parse(r.text) as { code: string; message: { en: string; "zh-CN": string } };
  assert.equal(p.code, "REQUEST_TOO_LARGE");
  // The limit is named (issue 17: it read "limit  bytes").
  assert.match(p.message.en, /limit 32768 bytes/);
  assert.match(p.message["zh-CN"], /32768/);
});

test("afterwards the database holds the outcome and every refused attempt, never a code in clear", async () => {
  // The embedded database is locked while the server runs.
  await server.stop();
  const db = new Database(`${dataDir}/db/ukey.sqlite`, { readonly: true });
  try {
    const serial = openssl(["x509", "-noout", "-serial", "-in", certs.gateway.pem]).out.trim().replace(/^serial=/, "").toLowerCase();
    const row = db.prepare("SELECT status, revoked_at AS revokedAt FROM certificates WHERE serial = ?").get(serial.replace(/^(00)+(?=..)/, "")) as unknown;
    // The securities-gateway preset leaves the old certificate to expire: superseded, not revoked.
    assert.deepEqual({ ...(row as object) }, { status: "superseded", revokedAt: null });
    const used = db.prepare("SELECT status FROM enrolments WHERE reference_number = ?").get(codes.curl.ref) as { status: string };
    assert.equal(used.status, "used");
    const actions = (db.prepare("SELECT action, data FROM audit_log").all() as { action: string; data: string }[]);
    const count = (action: string, code?: string) => actions.filter((a) => a.action === action && (!code || a.data.includes(code))).length;
    assert.ok(count("est.enroll.refused", "EST_CREDENTIALS_REQUIRED") >= 1);
    assert.ok(count("enrolment.code-refused") >= 3, "wrong, expired and used codes");
    assert.equal(count("enrolment.redeemed"), 1);
    assert.equal(count("est.reenroll.redelivered"), 1);
    for (const code of ["EST_CLIENT_CERT_REQUIRED", "EST_CLIENT_CERT_UNKNOWN", "EST_VERIFICATION_NOT_POSSIBLE", "CSR_SUBJECT_MISMATCH"]) {
      assert.ok(count("est.reenroll.refused", code) >= 1, code);
    }
    const all = JSON.stringify(actions);
    for (const c of [codes.curl.code, codes.expired.code]) {
      assert.ok(!all.includes(c) && !all.includes(c.replace(/-/g, "")), "no authorization code in the audit log");
    }
  } finally {
    db.close();
  }
});
