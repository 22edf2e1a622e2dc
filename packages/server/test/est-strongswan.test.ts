import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:https";
import type { AddressInfo } from "node:net";
import { systemClock } from "@ukey/policy";
import { enrolmentServiceFor } from "../src/enrolment-service.js";
import { openServerContext } from "../src/server-context.js";
import { addHolder, initialisedDataDir, openssl, startUkeyServer, tempDir, type RunningServer, type TempDir } from "./support/fixtures.js";

// A third-party EST client against the real server: strongSwan's `pki`
// (Debian strongswan-pki with its curl and openssl plugins; installed by
// scripts/ensure-system-deps.sh). Missing, the suite fails: it never skips.
const day = 86_400_000;
let t: TempDir;
let dataDir: string;
let server: RunningServer;
/** The TLS port, which never asks for a client certificate. */
let url: string;
/** The client-certificate port, where re-enrolment goes. */
let reenrolUrl: string;
let enrolment: { ref: string; code: string };
let renewable: { cert: string; key: string };

/** Runs strongSwan's pki; its plugin-loading chatter on stderr is dropped. */
function pki(args: string[]): { status: number; out: string } {
  const r = spawnSync("pki", args, { encoding: "utf8", timeout: 60_000 });
  if (r.error) throw new Error(`strongSwan's pki cannot run (${r.error.message}): install strongswan-pki, libstrongswan-extra-plugins and libstrongswan-standard-plugins (scripts/ensure-system-deps.sh)`);
  const out = `${r.stdout}${r.stderr}`.split("\n").filter((l) => !/^plugin '|TPM 2\.0/.test(l)).join("\n");
  return { status: r.status ?? -1, out };
}

/** A fresh P-256 key and a DER PKCS#10 made by pki itself. */
function pkiCsr(name: string, dn: string): { key: string; csr: string } {
  const key = t.path(`${name}.key.pem`);
  const csr = t.path(`${name}.csr.der`);
  const gen = spawnSync("pki", ["--gen", "--type", "ecdsa", "--size", "256", "--outform", "pem"]);
  assert.equal(gen.status, 0, String(gen.stderr));
  writeFileSync(key, gen.stdout);
  const req = spawnSync("pki", ["--req", "--in", key, "--type", "priv", "--dn", dn, "--outform", "der"]);
  assert.equal(req.status, 0, String(req.stderr));
  writeFileSync(csr, req.stdout);
  return { key, csr };
}

before(async () => {
  const which = spawnSync("pki", ["--help"], { encoding: "utf8" });
  assert.ok(!which.error, "strongSwan's pki is missing: run scripts/ensure-system-deps.sh (Debian strongswan-pki)");
  assert.match(`${which.stdout}${which.stderr}`, /--est\b/, "this pki has no --est");
  assert.ok(/loaded plugins:.*\bcurl\b/.test(`${which.stdout}${which.stderr}`), "pki has no curl plugin: install libstrongswan-extra-plugins");

  t = tempDir();
  let env: Record<string, string>;
  ({ dataDir, env } = initialisedDataDir(t));
  const cfg = JSON.parse(readFileSync(`${dataDir}/config.json`, "utf8"));
  cfg.profiles.push({ id: "gateway", preset: "securities-gateway", certificateKind: "hardware" });
  writeFileSync(`${dataDir}/config.json`, JSON.stringify(cfg, null, 2));
  for (const id of ["SW1", "SW2"]) assert.equal(addHolder(t, dataDir, env, id).status, 0);
  const ctx = await openServerContext(dataDir, env, systemClock);
  try {
    const made = await enrolmentServiceFor(ctx).create({ holderId: "SW1", profileId: "gateway", actor: "test" });
    enrolment = { ref: made.referenceNumber, code: made.authorizationCode };
    // A gateway certificate 30 days before expiry, inside its EST window; its key made by pki.
    const old = pkiCsr("sw2-old", "CN=anything");
    const c = await ctx.issuance.issue({ holderId: "SW2", profileId: "gateway", csr: readFileSync(old.csr), actor: "test", notAfter: new Date(Date.now() + 30 * day) });
    renewable = { cert: t.write("sw2-old.cer.der", c.der!), key: old.key };
  } finally {
    await ctx.close();
  }
  server = await startUkeyServer(dataDir, env, ["--tls-port", "0", "--client-cert-port", "0"]);
  // pki appends /.well-known/est/<operation> itself.
  url = `https://localhost:${server.https}`;
  reenrolUrl = `https://localhost:${server.clientCert}`;
});

after(async () => {
  await server?.stop();
  t?.cleanup();
});

const tlsTrust = () => ["--cacert", `${dataDir}/tls/server.cer.pem`];
const caTrust = () => ["--cacert", `${dataDir}/ca/root.cer.pem`, "--cacert", `${dataDir}/ca/issuing.cer.pem`];

test("pki --estca fetches the root and issuing CA certificates", () => {
  const out = t.path("ca.pem");
  const r = pki(["--estca", "--url", url, ...tlsTrust(), "--caout", out, "--outform", "pem"]);
  assert.equal(r.status, 0, r.out);
  assert.match(r.out, /Root CA cert "C=CN, O=ukey-renew demo, CN=ukey-renew demo Root CA"/);
  assert.match(r.out, /Sub CA cert "C=CN, O=ukey-renew demo, CN=ukey-renew demo Issuing CA"[\s\S]*Sub CA cert is trusted/);
});

test("pki --est --userpass enrols with the reference number and authorization code; the code then stops working", () => {
  const { csr } = pkiCsr("sw1", "C=CN, O=ukey-renew demo, CN=Holder SW1, serialNumber=SW1");
  const out = t.path("sw1.cer.pem");
  const args = ["--est", "--url", url, ...tlsTrust(), ...caTrust(), "--in", csr, "--userpass", `${enrolment.ref}:${enrolment.code}`, "--outform", "pem"];
  const r = spawnSync("pki", args, { encoding: "utf8", timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /Issued certificate "C=CN, O=ukey-renew demo, CN=Holder SW1, serialNumber=SW1"/);
  assert.match(r.stderr, /Issued certificate is trusted/);
  writeFileSync(out, r.stdout);
  assert.equal(openssl(["verify", "-CAfile", `${dataDir}/ca/root.cer.pem`, "-untrusted", `${dataDir}/ca/issuing.cer.pem`, out]).status, 0);

  const again = pki(["--est", "--url", url, ...tlsTrust(), ...caTrust(), "--in", csr, "--userpass", `${enrolment.ref}:${enrolment.code}`]);
  assert.notEqual(again.status, 0);
  assert.match(again.out, /HTTP 401/);
});

test("pki --est --cert --key re-enrols with the current certificate over TLS client authentication, on the client-certificate port", () => {
  const { csr, key } = pkiCsr("sw2-new", "C=CN, O=ukey-renew demo, CN=Holder SW2, serialNumber=SW2");
  // The TLS port asks for no certificate, so pki cannot present one there.
  const tlsPort = pki(["--est", "--url", url, ...tlsTrust(), ...caTrust(), "--in", csr, "--cert", renewable.cert, "--key", renewable.key]);
  assert.notEqual(tlsPort.status, 0);
  assert.match(tlsPort.out, /HTTP 403/, "CLIENT_CERT_PORT_REQUIRED");
  const args = ["--est", "--url", reenrolUrl, ...tlsTrust(), ...caTrust(), "--in", csr, "--cert", renewable.cert, "--key", renewable.key, "--outform", "pem"];
  const r = spawnSync("pki", args, { encoding: "utf8", timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /Issued certificate "C=CN, O=ukey-renew demo, CN=Holder SW2, serialNumber=SW2"/);
  const out = t.write("sw2-new.cer.pem", r.stdout);
  assert.equal(openssl(["verify", "-CAfile", `${dataDir}/ca/root.cer.pem`, "-untrusted", `${dataDir}/ca/issuing.cer.pem`, out]).status, 0);
  // The new certificate is for the new key.
  assert.equal(openssl(["x509", "-noout", "-pubkey", "-in", out]).out, openssl(["pkey", "-pubout", "-in", key]).out);

  // Once renewed, the old certificate is done with EST.
  const again = pki(["--est", "--url", reenrolUrl, ...tlsTrust(), ...caTrust(), "--in", pkiCsr("sw2-again", "C=CN, O=ukey-renew demo, CN=Holder SW2, serialNumber=SW2").csr, "--cert", renewable.cert, "--key", renewable.key]);
  assert.notEqual(again.status, 0);
  assert.match(again.out, /HTTP 409/, "CERT_SUPERSEDED");
});

test("the base64 strongSwan takes: one line, a final line break allowed, none inside (LF or CRLF, any width)", async () => {
  // What pki --estca 5.9 makes of a /cacerts body, from a stub TLS server sending the same PKCS#7 in each layout.
  const key = t.path("stub.key.pem");
  const cert = t.path("stub.cer.pem");
  assert.equal(openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost", "-days", "2"]).status, 0);
  const p7 = t.path("stub.p7");
  assert.equal(openssl(["crl2pkcs7", "-nocrl", "-certfile", cert, "-outform", "DER", "-out", p7]).status, 0);
  const b64 = readFileSync(p7).toString("base64");
  const wrap = (n: number, nl: string) => (b64.match(new RegExp(`.{1,${n}}`, "g")) ?? []).join(nl);
  const layouts: Record<string, string> = {
    "one line": b64, "one line + LF": `${b64}\n`, "one line + CRLF": `${b64}\r\n`,
    "64 columns, LF": `${wrap(64, "\n")}\n`, "64 columns, CRLF": `${wrap(64, "\r\n")}\r\n`, "76 columns, CRLF": `${wrap(76, "\r\n")}\r\n`,
    "64 columns, no final break": wrap(64, "\n"),
  };
  const stub = createServer({ key: readFileSync(key), cert: readFileSync(cert) }, (req, res) => {
    const body = layouts[decodeURIComponent((req.url ?? "").split("/")[1] ?? "")];
    if (body === undefined) return void res.writeHead(404).end();
    // pki reads no chunked answer: it wants a Content-Length.
    res.writeHead(200, { "Content-Type": "application/pkcs7-mime", "Content-Transfer-Encoding": "base64", "Content-Length": Buffer.byteLength(body) }).end(body);
  });
  await new Promise<void>((r) => stub.listen(0, "127.0.0.1", r));
  try {
    const port = (stub.address() as AddressInfo).port;
    const taken: Record<string, boolean> = {};
    for (const [i, name] of Object.keys(layouts).entries()) {
      // pki is a child process: run it without blocking this process's event loop, where the stub answers.
      const r = await new Promise<{ status: number | null; out: string }>((resolve) => {
        const c = spawn("pki", ["--estca", "--url", `https://localhost:${port}/${encodeURIComponent(name)}`, "--cacert", cert, "--caout", t.path(`stub-out-${i}.pem`)]);
        let out = "";
        c.stdout.on("data", (d) => { out += String(d); });
        c.stderr.on("data", (d) => { out += String(d); });
        c.on("close", (status) => resolve({ status, out }));
      });
      taken[name] = r.status === 0 && /Root CA cert is trusted/.test(r.out);
    }
    assert.deepEqual(taken, {
      "one line": true, "one line + LF": true, "one line + CRLF": true,
      "64 columns, LF": false, "64 columns, CRLF": false, "76 columns, CRLF": false, "64 columns, no final break": false,
    });
  } finally {
    await new Promise((r) => stub.close(r));
  }
});

test("what the server sends is one line ended by LF, which OpenSSL's base64 decoder reads in the mode libest chooses for it", () => {
  // The TLS port's certificate is the data directory's own: ask with curl, which is told to trust it.
  const body = spawnSync("curl", ["-sf", "--cacert", `${dataDir}/tls/server.cer.pem`, `${url}/.well-known/est/cacerts`], { encoding: "latin1" });
  assert.equal(body.status, 0, body.stderr);
  const text = body.stdout;
  assert.match(text, /^[A-Za-z0-9+/]+=*\n$/, "one line of base64 and a final LF");
  const der = Buffer.from(text, "base64");
  // libest's est_base64_decode reads without line breaks (BIO_FLAGS_BASE64_NO_NL, as openssl base64 -A) when no
  // LF comes before the last character, as here; OpenSSL's line mode would stop at a line longer than its 1 KiB buffer.
  assert.equal(text.indexOf("\n"), text.length - 1);
  assert.ok(text.length > 1024, "long enough to show the mode matters");
  const r = spawnSync("openssl", ["base64", "-d", "-A"], { input: text });
  assert.equal(r.status, 0);
  assert.ok(Buffer.from(r.stdout).equals(der), "openssl base64 -d -A");
});
