import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { derToPem } from "@ukey/ca";
import { systemClock } from "@ukey/policy";
import { openServerContext } from "../src/server-context.js";
import { startUkeyServer, tempDir, type RunningServer, type TempDir } from "./support/fixtures.js";
import { docExamples, runExample } from "./support/doc-examples.js";

// docs/est.md's shell examples, run as written (as docs/docs-examples.test.ts
// does for the other documents), against the real server on its TLS port.

const examples = (group: string) => docExamples("est.md", group);

let t: TempDir;
let server: RunningServer | undefined;
const sh = (script: string): string => runExample(t.dir, script, { UKEY_CA_PASSPHRASE_FILE: t.path("ca-passphrase") });

async function start(): Promise<(block: string) => string> {
  server = await startUkeyServer(t.path("data"), { UKEY_CA_PASSPHRASE_FILE: t.path("ca-passphrase") }, ["--tls-port", "0", "--client-cert-port", "0"]);
  const { https, clientCert } = server;
  return (block) => sh(block.replaceAll("https://localhost:8443", `https://localhost:${https}`).replaceAll("https://localhost:8444", `https://localhost:${clientCert}`));
}

before(() => { t = tempDir("ukey-est-docs-"); });
after(async () => { await server?.stop(); t.cleanup(); });

test("est.md: an integrator enrols with curl and openssl alone, once per code", async () => {
  const operator = examples("est-operator");
  assert.equal(operator.length, 1);
  sh(operator[0]!);
  const run = await start();
  const client = examples("est-client");
  assert.equal(client.length, 3);
  assert.match(run(client[0]!), /^2$/m, "two CA certificates");
  // One shell session, as a reader types them: the second block uses the first one's REF and CODE.
  const out = run(`${client[1]!}\n${client[2]!}`);
  assert.match(out, /device\.cer\.pem: OK\nCODE_ALREADY_USED\n$/);
  assert.match(execFileSync("openssl", ["x509", "-in", t.path("device.cer.pem"), "-noout", "-subject"], { encoding: "utf8" }), /CN = Trading Gateway 1, serialNumber = GW0001/);
});

test("est.md: re-enrolment with the current certificate inside its EST window", async () => {
  // The certificate just enrolled is five years from its window; one for the same key 30 days before expiry takes its place.
  await server?.stop();
  const ctx = await openServerContext(t.path("data"), { UKEY_CA_PASSPHRASE_FILE: t.path("ca-passphrase") }, systemClock);
  try {
    const csr = execFileSync("openssl", ["req", "-new", "-key", t.path("device.key.pem"), "-subj", "/", "-outform", "DER"]);
    const c = await ctx.issuance.issue({ holderId: "GW0001", profileId: "gateway", csr, actor: "test", notAfter: new Date(Date.now() + 30 * 86_400_000) });
    writeFileSync(t.path("device.cer.pem"), derToPem(c.der!, "CERTIFICATE"));
  } finally {
    await ctx.close();
  }
  const run = await start();
  const reenrol = examples("est-reenrol");
  assert.equal(reenrol.length, 1);
  assert.match(run(reenrol[0]!), /: OK/);
  const subject = (f: string) => execFileSync("openssl", ["x509", "-in", t.path(f), "-noout", "-subject"], { encoding: "utf8" });
  assert.equal(subject("device-new.cer.pem"), subject("device.cer.pem"));
  const pub = (args: string[]) => execFileSync("openssl", args, { encoding: "utf8" });
  assert.equal(pub(["x509", "-in", t.path("device-new.cer.pem"), "-noout", "-pubkey"]), pub(["pkey", "-in", t.path("device-new.key.pem"), "-pubout"]));
});
