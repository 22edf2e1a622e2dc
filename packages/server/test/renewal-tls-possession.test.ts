import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { addHolder, initialisedDataDir, keyArgs, opensslCsr, runUkeyServer, startUkeyServer, tempDir, type RunningServer, type TempDir } from "./support/fixtures.js";

// Proof of possession by TLS client certificate (the holder's certificate
// in a browser or a TLS-capable client): on the client-certificate port an
// empty possession request proves with the certificate the handshake
// authenticated; the credential it answers then drives the renewal on any
// port. Another certificate, none, or another port proves nothing.
let t: TempDir;
let server: RunningServer;
let holder: { cert: Buffer; key: Buffer; certId: string };
let stranger: { cert: Buffer; key: Buffer };

before(async () => {
  t = tempDir();
  const { dataDir, env } = initialisedDataDir(t);
  const cfg = JSON.parse(readFileSync(`${dataDir}/config.json`, "utf8"));
  cfg.profiles.push({ id: "short", preset: "gov-supervision", keyAlgorithms: ["rsa2048", "p256"], certificates: null, validity: { days: 20 } });
  writeFileSync(`${dataDir}/config.json`, JSON.stringify(cfg, null, 2));
  assert.equal(addHolder(t, dataDir, env, "T1").status, 0);
  const { csr, key } = opensslCsr(t, "holder", keyArgs.p256);
  const out = t.path("holder.pem");
  const r = runUkeyServer(["issue", "--data-dir", dataDir, "--holder", "T1", "--profile", "short", "--csr", csr, "--out", out, "--json"], env);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  holder = { cert: readFileSync(out), key: readFileSync(key), certId: r.json<{ certId: string }>().certId };
  execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", t.path("s.key"), "-subj", "/CN=Holder T1", "-days", "30", "-out", t.path("s.pem")], { stdio: "pipe" });
  stranger = { cert: readFileSync(t.path("s.pem")), key: readFileSync(t.path("s.key")) };
  server = await startUkeyServer(dataDir, env, ["--tls-port", "0", "--client-cert-port", "0"]);
});
after(async () => {
  await server?.stop();
  t.cleanup();
});

function tls(port: number, method: string, path: string, body: unknown, opts: { client?: { cert: Buffer; key: Buffer }; credential?: string } = {}): Promise<{ status: number; body: Record<string, unknown> & { code?: string } }> {
  const payload = Buffer.from(JSON.stringify(body ?? {}));
  return new Promise((resolve, reject) => {
    const req = request({
      host: "127.0.0.1", port, path, method, rejectUnauthorized: false, ...(opts.client ?? {}),
      headers: { "content-type": "application/json", "content-length": payload.length, ...(opts.credential ? { authorization: `Bearer ${opts.credential}` } : {}) },
    }, (res) => {
      let data = "";
      res.on("data", (d) => { data += String(d); });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(data) as Record<string, unknown> }));
    });
    req.on("error", reject);
    req.end(payload);
  });
}

test("the holder's certificate as TLS client certificate proves possession; the credential drives the renewal on another port", async () => {
  const started = await (await fetch(`${server.url}/api/v1/orders`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ certId: holder.certId }) })).json() as { id: string };
  const possession = `/api/v1/orders/${started.id}/possession`;
  const refusals: Array<[string, number, { client?: { cert: Buffer; key: Buffer } }, number, string]> = [
    ["another certificate with the holder's name", server.clientCert!, { client: stranger }, 401, "POSSESSION_PROOF_FAILED"],
    ["no certificate", server.clientCert!, {}, 400, "REQUEST_INVALID"],
    ["the right certificate on the TLS port, which never asks for one", server.https!, { client: holder }, 403, "CLIENT_CERT_PORT_REQUIRED"],
  ];
  for (const [what, port, opts, status, code] of refusals) {
    const r = await tls(port, "POST", possession, {}, opts);
    assert.equal(r.status, status, `${what}: ${JSON.stringify(r.body)}`);
    assert.equal(r.body.code, code, what);
    assert.equal(r.body.credential, undefined, what);
  }
  const proved = await tls(server.clientCert!, "POST", possession, {}, { client: holder });
  assert.equal(proved.status, 200, JSON.stringify(proved.body));
  assert.equal(proved.body.state, "verified");
  const credential = (proved.body.credential as { token: string }).token;
  const csr = readFileSync(opensslCsr(t, "next", keyArgs.p256, "/").csr, "utf8");
  const issued = await tls(server.https!, "POST", `/api/v1/orders/${started.id}/csr`, { csr }, { credential });
  assert.equal(issued.body.state, "issued", JSON.stringify(issued.body));
  assert.equal((await tls(server.https!, "POST", `/api/v1/orders/${started.id}/complete`, {}, { credential })).body.state, "completed");
});
