import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash, X509Certificate } from "node:crypto";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { request } from "node:https";
import { initialisedDataDir, runUkeyServer, startUkeyServer, tempDir, type RunningServer, type TempDir } from "./support/fixtures.js";

// Operator sign-in with a client certificate whose key is pinned on the
// account, through the real server's client-certificate port (the handshake
// proves the key); the TLS port and plain HTTP never see a certificate.
let t: TempDir;
let server: RunningServer;
const certs: Record<string, { cert: Buffer; key: Buffer }> = {};

function clientCert(name: string): { cert: Buffer; key: Buffer; spki: string } {
  execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", t.path(`${name}.key`),
    "-subj", `/CN=${name}`, "-days", "30", "-out", t.path(`${name}.pem`)], { stdio: "pipe" });
  const cert = readFileSync(t.path(`${name}.pem`));
  const spki = new X509Certificate(cert).publicKey.export({ type: "spki", format: "der" });
  return { cert, key: readFileSync(t.path(`${name}.key`)), spki: createHash("sha256").update(spki).digest("hex") };
}

before(async () => {
  t = tempDir();
  const { dataDir, env } = initialisedDataDir(t);
  const pinned = clientCert("olga");
  certs.pinned = pinned;
  certs.stranger = clientCert("stranger");
  const r = runUkeyServer(["operator", "add", "--data-dir", dataDir, "--id", "olga", "--role", "operator", "--password-file", t.write("pw", "olga's long passphrase"), "--cert-spki-sha256", pinned.spki], env);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  server = await startUkeyServer(dataDir, env, ["--tls-port", "0", "--client-cert-port", "0"]);
});
after(async () => {
  await server?.stop();
  t.cleanup();
});

function tlsPost(path: string, client?: { cert: Buffer; key: Buffer }, headers: Record<string, string> = {}, port = server.clientCert!): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: "127.0.0.1", port, path, method: path.endsWith("sign-in/certificate") ? "POST" : "GET", rejectUnauthorized: false, headers, ...(client ?? {}),
    }, (res) => {
      let data = "";
      res.on("data", (d) => { data += String(d); });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(data) as Record<string, unknown> }));
    });
    req.on("error", reject);
    req.end();
  });
}

test("a pinned client certificate signs in; none, an unpinned one, or plain HTTP does not", async () => {
  const cases: { name: string; client?: { cert: Buffer; key: Buffer }; status: number; code?: string }[] = [
    { name: "pinned certificate", client: certs.pinned, status: 200 },
    { name: "no certificate", status: 401, code: "OPERATOR_SIGN_IN_FAILED" },
    { name: "certificate not pinned on any account", client: certs.stranger, status: 401, code: "OPERATOR_SIGN_IN_FAILED" },
  ];
  for (const c of cases) {
    const r = await tlsPost("/api/v1/admin/sign-in/certificate", c.client);
    assert.equal(r.status, c.status, `${c.name}: ${JSON.stringify(r.body)}`);
    if (c.code) assert.equal(r.body.code, c.code, c.name);
    else {
      const me = await tlsPost("/api/v1/admin/me", undefined, { authorization: `Bearer ${String(r.body.token)}` });
      assert.deepEqual([me.body.id, me.body.role], ["olga", "operator"]);
    }
  }
  // Elsewhere no certificate is asked for: the refusal names the port that asks.
  const tlsPort = await tlsPost("/api/v1/admin/sign-in/certificate", certs.pinned, {}, server.https!);
  assert.equal(tlsPort.status, 403, JSON.stringify(tlsPort.body));
  assert.equal(tlsPort.body.code, "CLIENT_CERT_PORT_REQUIRED");
  assert.deepEqual(tlsPort.body.params, { port: server.clientCert });
  const plain = await fetch(`${server.url}/api/v1/admin/sign-in/certificate`, { method: "POST" });
  assert.equal(plain.status, 403);
  assert.equal((await plain.json() as { code: string }).code, "CLIENT_CERT_PORT_REQUIRED");
});

test("refused password sign-ins pause that address's password sign-ins, never the account's certificate sign-in", async () => {
  const codes: string[] = [];
  for (let i = 0; i < 6; i++) {
    const r = await fetch(`${server.url}/api/v1/admin/sign-in`, {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ operatorId: "olga", password: `not olga's password ${i}`, totp: "000000" }),
    });
    codes.push(((await r.json()) as { code: string }).code);
  }
  assert.deepEqual(codes, [...Array(4).fill("OPERATOR_SIGN_IN_FAILED"), "OPERATOR_SIGN_IN_BACKED_OFF", "OPERATOR_SIGN_IN_BACKED_OFF"]);
  const r = await tlsPost("/api/v1/admin/sign-in/certificate", certs.pinned);
  assert.equal(r.status, 200, JSON.stringify(r.body));
});
