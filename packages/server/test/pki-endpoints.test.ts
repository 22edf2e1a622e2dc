import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { addHolder, initialisedDataDir, keyArgs, openssl, opensslCsr, runUkeyServer, startUkeyServer, tempDir, type RunningServer, type TempDir } from "./support/fixtures.js";

// The real server, spoken to by the real openssl and by fetch, as relying parties do.
let t: TempDir;
let dataDir: string;
let env: Record<string, string>;
let server: RunningServer;
const leaf: Record<"good" | "revoked", string> = { good: "", revoked: "" };
let root: string;
let issuing: string;

before(async () => {
  t = tempDir();
  ({ dataDir, env } = initialisedDataDir(t));
  assert.equal(addHolder(t, dataDir, env, "H100").status, 0);
  for (const which of ["good", "revoked"] as const) {
    const { csr } = opensslCsr(t, which, keyArgs.p256);
    const r = runUkeyServer(["issue", "--data-dir", dataDir, "--holder", "H100", "--profile", "personal", "--csr", csr, "--out", t.path(`${which}.pem`), "--json"], env);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    leaf[which] = t.path(`${which}.pem`);
    if (which === "revoked") {
      const serial = r.json<{ serial: string }>().serial;
      assert.equal(runUkeyServer(["revoke", "--data-dir", dataDir, "--serial", serial, "--reason", "keyCompromise"], env).status, 0);
    }
  }
  root = `${dataDir}/ca/root.cer.pem`;
  issuing = `${dataDir}/ca/issuing.cer.pem`;
  server = await startUkeyServer(dataDir, env);
});
after(async () => {
  await server?.stop();
  t.cleanup();
});

function ocsp(cert: string, extra: string[] = []) {
  return openssl(["ocsp", "-issuer", issuing, "-cert", cert, "-url", `${server.url}/ocsp`, "-CAfile", root, "-resp_text", ...extra]);
}

test("openssl ocsp: good, revoked with reason, and unknown", () => {
  const good = ocsp(leaf.good);
  assert.equal(good.status, 0, good.out);
  assert.match(good.out, /Response verify OK/);
  assert.match(good.out, new RegExp(`${leaf.good.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: good`));

  const revoked = ocsp(leaf.revoked);
  assert.match(revoked.out, /Response verify OK/);
  assert.match(revoked.out, /: revoked/);
  assert.match(revoked.out, /Reason: keyCompromise/);

  // A serial of our issuer that we never issued.
  const unknown = openssl(["ocsp", "-issuer", issuing, "-serial", "0x0badc0de", "-url", `${server.url}/ocsp`, "-CAfile", root]);
  assert.match(unknown.out, /Response verify OK/);
  assert.match(unknown.out, /0x0badc0de: unknown/);
});

test("openssl ocsp gets the pre-signed answer without its nonce (RFC 5019), and GET requests work", async () => {
  const r = ocsp(leaf.good);
  assert.match(r.out, /Response verify OK/);
  assert.doesNotMatch(r.out, /OCSP Nonce/);
  assert.match(r.out, /WARNING: no nonce in response/);
  const reqFile = t.path("req.der");
  assert.equal(openssl(["ocsp", "-issuer", issuing, "-cert", leaf.good, "-reqout", reqFile, "-no_nonce"]).status, 0);
  const b64 = readFileSync(reqFile).toString("base64");
  const res = await fetch(`${server.url}/ocsp/${encodeURIComponent(b64)}`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "application/ocsp-response");
  const respFile = t.write("resp.der", Buffer.from(await res.arrayBuffer()));
  const v = openssl(["ocsp", "-respin", respFile, "-issuer", issuing, "-cert", leaf.good, "-CAfile", root]);
  assert.match(v.out, /Response verify OK/);
  assert.match(v.out, /: good/);
});

test("a malformed OCSP request gets malformedRequest and the catalogue code", async () => {
  const res = await fetch(`${server.url}/ocsp`, { method: "POST", headers: { "content-type": "application/ocsp-request" }, body: Buffer.from("not der at all") });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("x-ukey-error"), "OCSP_REQUEST_MALFORMED");
  const body = Buffer.from(await res.arrayBuffer());
  // OCSPResponse ::= SEQUENCE { responseStatus ENUMERATED malformedRequest(1) }
  assert.deepEqual([...body], [0x30, 0x03, 0x0a, 0x01, 0x01]);
});

test("CRL: openssl verify -crl_check accepts the good certificate and rejects the revoked one", async () => {
  const res = await fetch(`${server.url}/crl/issuing.crl`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "application/pkix-crl");
  const crlDer = t.write("issuing.crl", Buffer.from(await res.arrayBuffer()));
  const crlPem = t.path("issuing.crl.pem");
  assert.equal(openssl(["crl", "-inform", "DER", "-in", crlDer, "-out", crlPem]).status, 0);
  const text = openssl(["crl", "-in", crlPem, "-noout", "-text"]).out;
  assert.match(text, /X509v3 CRL Number/);
  assert.match(text, /X509v3 Authority Key Identifier/);
  assert.match(text, /Key Compromise/);
  assert.match(readFileSync(crlPem, "utf8"), /-----BEGIN X509 CRL-----/);
  const pemRes = await fetch(`${server.url}/crl/issuing.pem`);
  assert.match(await pemRes.text(), /^-----BEGIN X509 CRL-----/);

  const good = openssl(["verify", "-crl_check", "-CAfile", root, "-untrusted", issuing, "-CRLfile", crlPem, leaf.good]);
  assert.equal(good.status, 0, good.out);
  const bad = openssl(["verify", "-crl_check", "-CAfile", root, "-untrusted", issuing, "-CRLfile", crlPem, leaf.revoked]);
  assert.notEqual(bad.status, 0);
  assert.match(bad.out, /certificate revoked/);
});

test("the root CRL lets openssl check the whole chain (-crl_check_all)", async () => {
  const rootCrl = t.write("root.crl", Buffer.from(await (await fetch(`${server.url}/crl/root.crl`)).arrayBuffer()));
  const issuingCrl = t.write("issuing2.crl", Buffer.from(await (await fetch(`${server.url}/crl/issuing.crl`)).arrayBuffer()));
  const both = t.path("both.crl.pem");
  const a = openssl(["crl", "-inform", "DER", "-in", rootCrl]).out.match(/-----BEGIN X509 CRL-----[\s\S]+?-----END X509 CRL-----/)![0];
  const b = openssl(["crl", "-inform", "DER", "-in", issuingCrl]).out.match(/-----BEGIN X509 CRL-----[\s\S]+?-----END X509 CRL-----/)![0];
  (await import("node:fs")).writeFileSync(both, `${a}\n${b}\n`);
  const r = openssl(["verify", "-crl_check_all", "-CAfile", root, "-untrusted", issuing, "-CRLfile", both, leaf.good]);
  assert.equal(r.status, 0, r.out);
});

test("CA certificates are served where the AIA points", async () => {
  const der = Buffer.from(await (await fetch(`${server.url}/ca/issuing.cer`)).arrayBuffer());
  const pem = readFileSync(issuing, "utf8").replace(/-----[^-]+-----|\s/g, "");
  assert.equal(der.toString("base64"), pem);
});

test("oversized bodies, wrong media types and unknown routes get problem documents", async () => {
  const big = await fetch(`${server.url}/ocsp`, { method: "POST", headers: { "content-type": "application/ocsp-request" }, body: Buffer.alloc(200_000) });
  assert.equal(big.status, 413);
  const p = await big.json() as { code: string; message: Record<string, string>; remedy: Record<string, string> };
  assert.equal(p.code, "REQUEST_TOO_LARGE");
  assert.ok(p.message["zh-CN"] && p.remedy.en);
  const media = await fetch(`${server.url}/ocsp`, { method: "POST", headers: { "content-type": "text/plain" }, body: "x" });
  assert.equal(media.status, 415);
  assert.equal((await media.json() as { code: string }).code, "UNSUPPORTED_MEDIA_TYPE");
  const nf = await fetch(`${server.url}/nope`);
  assert.equal(nf.status, 404);
  assert.equal((await nf.json() as { code: string }).code, "ROUTE_NOT_FOUND");
});

test("while the server runs, audit verify runs through it and kmc init is refused (DATA_DIR_LOCKED)", () => {
  const r = runUkeyServer(["audit", "verify", "--data-dir", dataDir, "--json"], env);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.equal(r.json<{ ok: boolean }>().ok, true);
  const kmc = runUkeyServer(["kmc", "init", "--data-dir", dataDir, "--json"], env);
  assert.equal(kmc.status, 1);
  assert.equal((JSON.parse(kmc.stdout.trim()) as { error: { code: string } }).error.code, "DATA_DIR_LOCKED");
});
