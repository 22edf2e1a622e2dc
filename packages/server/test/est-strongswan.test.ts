import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
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
