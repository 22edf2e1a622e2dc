import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { createInterface } from "node:readline";
import { totpCodeAt } from "../src/admin/operator-credentials.js";
import { openssl, tempDir } from "./support/fixtures.js";

// The README's first command, `npm start`, is scripts/start.sh: first run
// initialises a demo (CA, holder, certificate) and serves; a second run
// only serves.
const repo = resolve(import.meta.dirname, "../../..");

async function runStart(dataDir: string, port: number): Promise<{ stop(): Promise<number | null>; output: string[] }> {
  const child = spawn("bash", ["scripts/start.sh"], {
    cwd: repo,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", UKEY_DATA_DIR: dataDir, UKEY_PORT: String(port) },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  const output: string[] = [];
  let stderr = "";
  child.stderr!.on("data", (d) => { stderr += String(d); });
  await new Promise<void>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`npm start did not serve:\n${output.join("\n")}\n${stderr}`)), 90_000);
    createInterface({ input: child.stdout! }).on("line", (l) => {
      output.push(l);
      if (l.includes("ukey-server listening on")) { clearTimeout(timer); ok(); }
    });
    child.once("exit", (c) => { clearTimeout(timer); fail(new Error(`npm start exited ${c}:\n${output.join("\n")}\n${stderr}`)); });
  });
  return {
    output,
    stop: () => new Promise((r) => { child.once("exit", (c) => r(c)); process.kill(-child.pid!, "SIGTERM"); }),
  };
}

test("npm start initialises a demo on first run, serves it, and only serves on the next run", async () => {
  const t = tempDir();
  const dataDir = t.path("data");
  const port = 20000 + Math.floor(Math.random() * 20000);
  try {
    const first = await runStart(dataDir, port);
    try {
      assert.ok(first.output.some((l) => l.includes("first run: initialising")));
      const demoCert = `${dataDir}.demo-cert.pem`;
      assert.ok(existsSync(demoCert));
      const r = openssl(["ocsp", "-issuer", `${dataDir}/ca/issuing.cer.pem`, "-cert", demoCert, "-url", `http://127.0.0.1:${port}/ocsp`, "-CAfile", `${dataDir}/ca/root.cer.pem`]);
      assert.match(r.out, /: good/);
      assert.match(openssl(["x509", "-in", demoCert, "-noout", "-text"]).out, new RegExp(`URI:http://localhost:${port}/crl/issuing.crl`));
      // The second demo holder's file token: a PKCS#12 opened by its PIN,
      // holding a key and a certificate that expires in 60 days (inside the
      // demo-file profile's renewal window), chained to the demo CA.
      const token = `${dataDir}.demo-token.p12`;
      const pin = `${dataDir}.secrets/demo-token-pin`;
      const certOut = t.path("demo2.pem");
      assert.equal(openssl(["pkcs12", "-in", token, "-passin", `file:${pin}`, "-clcerts", "-nokeys", "-out", certOut]).status, 0);
      assert.match(openssl(["pkcs12", "-in", token, "-passin", `file:${pin}`, "-nocerts", "-nodes"]).out, /BEGIN PRIVATE KEY/);
      assert.notEqual(openssl(["pkcs12", "-in", token, "-passin", "pass:wrong-pin", "-nokeys"]).status, 0);
      const endDate = /notAfter=(.*)/.exec(openssl(["x509", "-in", certOut, "-noout", "-enddate"]).out)?.[1];
      const daysLeft = (Date.parse(endDate ?? "") - Date.now()) / 86_400_000;
      assert.ok(daysLeft > 58 && daysLeft <= 61, `demo file certificate expires in ${daysLeft} days`);
      assert.match(openssl(["verify", "-CAfile", `${dataDir}/ca/root.cer.pem`, "-untrusted", `${dataDir}/ca/issuing.cer.pem`, certOut]).out, /: OK/);
      assert.ok(first.output.some((l) => l.includes("ukey renew") && l.includes(token)), "start tells how to renew the demo token");
      // Issue 16 (11): the portal's and the console's addresses, and a first operator who can sign in with what start wrote down.
      assert.ok(first.output.some((l) => l.includes(`http://localhost:${port}/`) && /portal/.test(l)), first.output.join("\n"));
      assert.ok(first.output.some((l) => l.includes(`http://localhost:${port}/console/`)), first.output.join("\n"));
      assert.ok(first.output.some((l) => l.includes("ukey agent start") && l.includes(token)), "start tells how to use the demo token in the portal");
      const password = readFileSync(`${dataDir}.secrets/operator-password`, "utf8").trim();
      const secret = /TOTP secret: (\S+)/.exec(readFileSync(`${dataDir}.secrets/operator-admin.txt`, "utf8"))?.[1];
      assert.ok(secret, "the TOTP secret is written down for the demo");
      const signIn = await fetch(`http://127.0.0.1:${port}/api/v1/admin/sign-in`, {
        method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify({ operatorId: "admin", password, totp: totpCodeAt(secret, new Date()) }),
      });
      assert.equal(signIn.status, 200, await signIn.clone().text());
    } finally {
      await first.stop();
    }
    const second = await runStart(dataDir, port);
    try {
      assert.ok(!second.output.some((l) => l.includes("first run")));
      const res = await fetch(`http://127.0.0.1:${port}/healthz`);
      assert.equal(res.status, 200);
    } finally {
      await second.stop();
    }
  } finally {
    t.cleanup();
  }
});
