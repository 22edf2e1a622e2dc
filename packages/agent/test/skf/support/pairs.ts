import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { systemClock } from "@ukey/policy";
import { derOfPem } from "../../../src/flows/certificate-id.js";
import { objectLabels } from "../../../src/keys/key-store.js";
import type { SkfBackend } from "../../../src/keys/skf-backend.js";
import { openServerContext } from "../../../../server/src/server-context.js";
import { runUkeyServer, type CliResult } from "../../../../server/test/support/fixtures.js";
import { runUkeyServerHere } from "../../../../server/test/support/in-process-cli.js";
import { totpCodeAt } from "../../../../server/src/admin/operator-credentials.js";
import type { AgentWorld } from "../../support/agent-world.js";

/**
 * Gives a test world (made with an SM2 CA) the seeds' public institution pair profile "gm" (seed 004's
 * gov-supervision preset, 30 days so renewal is open at once) and a key management centre. Before start().
 */
export function enablePairs(w: AgentWorld): void {
  const cfgFile = `${w.dataDir}/config.json`;
  const cfg = JSON.parse(readFileSync(cfgFile, "utf8")) as { profiles: unknown[]; kmc?: unknown };
  cfg.profiles.push({ id: "gm", preset: "gov-supervision", validity: { days: 30 } });
  cfg.kmc = { masterKey: { type: "file" } };
  writeFileSync(cfgFile, JSON.stringify(cfg, null, 2));
  w.env.UKEY_KMC_PASSPHRASE_FILE = w.t.write("kmc-passphrase", "the key management centre's own passphrase\n");
  const init = runUkeyServer(["kmc", "init", "--data-dir", w.dataDir], w.env);
  assert.equal(init.status, 0, init.stderr);
}

/** ukey-server's commands run in this process on one opened data directory; close() releases it. */
export interface Counter {
  run(args: string[]): Promise<CliResult>;
  close(): Promise<void>;
}

/**
 * The counter for a test's setup: ukey-server's own command code run in this process (runUkeyServerHere) against the
 * data directory opened once, as a running server runs the commands its control socket forwards. The CA key is decrypted
 * once (scrypt) instead of once per command, and no process starts per command. The real bin's counter commands are
 * tested in packages/server/test (cli, cli-running-server). Before start(); close it first.
 */
export async function openCounter(w: AgentWorld): Promise<Counter> {
  const context = await openServerContext(w.dataDir, w.env, systemClock);
  return {
    run: (args) => runUkeyServerHere(args, w.env, context),
    close: () => context.close(),
  };
}

/** The two people a key recovery needs: olga (operator) opens it, audrey (auditor) approves it. */
export type RecoveryOperator = "olga" | "audrey";
const recoveryPasswords: Record<RecoveryOperator, string> = { olga: "olga has a long passphrase", audrey: "audrey has a long passphrase" };

/**
 * Adds olga and audrey at `counter` (before start()) and answers their POST to the running server's admin API
 * (`/api/v1/admin${path}`), each signed in with her password and a fresh TOTP code.
 */
export async function addRecoveryOperators(w: AgentWorld, counter: Counter): Promise<(who: RecoveryOperator, path: string, body?: object) => Promise<Response>> {
  const totp: Partial<Record<RecoveryOperator, string>> = {};
  for (const [id, role] of [["olga", "operator"], ["audrey", "auditor"]] as const) {
    const r = await counter.run(["operator", "add", "--data-dir", w.dataDir, "--id", id, "--role", role, "--password-file", w.t.write(`${id}.pw`, `${recoveryPasswords[id]}\n`), "--json"]);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    totp[id] = r.json<{ totpSecret: string }>().totpSecret;
  }
  return async (who, path, body) => {
    const signIn = await fetch(`${w.server!.url}/api/v1/admin/sign-in`, {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ operatorId: who, password: recoveryPasswords[who], totp: totpCodeAt(totp[who]!, new Date()) }),
    });
    assert.equal(signIn.status, 200, await signIn.clone().text());
    const { token } = await signIn.json() as { token: string };
    return fetch(`${w.server!.url}/api/v1/admin${path}`, {
      method: "POST", headers: { authorization: `Bearer ${token}`, ...(body ? { "content-type": "application/json" } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
  };
}

/** A pair issued at the counter (ukey-server issue, server stopped; the real bin, or `counter` when given) onto an SKF key: signing key made on the key, the envelope imported, both certificates installed. */
export async function issuePair(w: AgentWorld, backend: SkfBackend, serial: string, pin: string, holder = "H1", counter?: Counter): Promise<{ oldSign: string; oldEnc: string; oldContainer: string }> {
  const s = await backend.open(serial, pin);
  try {
    const key = await s.generateKeyPair("sm2", "issuing");
    const csr = w.t.write(`csr-${serial}.pem`, await s.createCsr(key.id, ""));
    const out = w.t.path(`cert-${serial}.pem`);
    const args = ["issue", "--data-dir", w.dataDir, "--holder", holder, "--profile", "gm", "--csr", csr, "--out", out, "--token-serial", serial, "--json"];
    const r = counter ? await counter.run(args) : runUkeyServer(args, w.env);
    assert.equal(r.status, 0, r.stderr);
    const issued = r.json<{ serial: string; encryptionCertificate: { serial: string; pem: string }; envelope: { format: string; value: string } }>();
    await s.installCertificate(derOfPem(readFileSync(out, "utf8")), key.id, objectLabels.current(issued.serial));
    await s.importEnvelopedKey!(key.id, Buffer.from(issued.envelope.value, "base64"));
    await s.installCertificate(derOfPem(issued.encryptionCertificate.pem), key.id, objectLabels.current(issued.serial));
    return { oldSign: issued.serial, oldEnc: issued.encryptionCertificate.serial, oldContainer: key.label };
  } finally {
    await s.close();
  }
}

/** The serial (lower-case hex) of a DER certificate given in hex, as OpenSSL reads it. */
export function opensslSerialOf(derHex: string): string {
  if (derHex === "") return "";
  const r = spawnSync("openssl", ["x509", "-inform", "DER", "-noout", "-serial"], { input: Buffer.from(derHex, "hex"), encoding: "utf8" });
  return r.stdout.trim().replace(/^serial=/, "").toLowerCase();
}

/** openssl verify of a DER certificate (hex) under the chain PEM, with the SM2 distinguishing ID; and it is SM2-with-SM3. */
export function opensslVerifySm2(w: AgentWorld, derHex: string, chainPem: string): void {
  const id = Math.random().toString(16).slice(2);
  const cert = w.t.path(`verify-${id}.der`);
  writeFileSync(cert, Buffer.from(derHex, "hex"));
  const chain = w.t.write(`chain-${id}.pem`, chainPem);
  const r = spawnSync("openssl", ["verify", "-x509_strict", "-vfyopt", "distid:1234567812345678", "-CAfile", chain, "-partial_chain", cert], { encoding: "utf8" });
  assert.equal(r.status, 0, `openssl verify: ${r.stdout}${r.stderr}`);
  assert.match(spawnSync("openssl", ["x509", "-inform", "DER", "-in", cert, "-noout", "-text"], { encoding: "utf8" }).stdout, /Signature Algorithm: SM2-with-SM3/);
}
