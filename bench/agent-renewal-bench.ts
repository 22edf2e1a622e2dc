// npm run bench, agent section (issue 5.7): whole renewals on SoftHSM2 with
// no human input (a possession-only profile), the agent's renew flow in this
// process against a real server process: log in, start the order, sign the
// challenge on the token, generate the new key on the token, CSR, issuance,
// install and read back, installed, complete, clean-up, relabel. N in
// sequence per algorithm, each renewing the certificate the previous one
// installed; prints p50 and p95 against the targets.
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import type { KeyAlgorithm } from "@ukey/policy";
import { Pkcs11Backend, objectLabels, renewFlow } from "@ukey/agent";
import type { Prompter } from "../packages/agent/src/prompter.js";
import { createSoftHsmToken } from "../packages/ca/test/support/softhsm.js";
import { addHolder, initialisedDataDir, runUkeyServer, startUkeyServer, tempDir } from "../packages/server/test/support/fixtures.js";
import { derOfPem } from "../packages/agent/src/flows/certificate-id.js";

const n = Number(process.env.UKEY_BENCH_AGENT_RENEWALS ?? 20);
const targets: Record<string, number> = { p256: 0.5, rsa2048: 1.5 };

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

const t = tempDir("ukey-bench-agent-");
const hsm = createSoftHsmToken("bench-p256", "123456", "87654321");
try {
  const { dataDir, env } = initialisedDataDir(t);
  const cfgFile = `${dataDir}/config.json`;
  const cfg = JSON.parse(readFileSync(cfgFile, "utf8"));
  // 30-day certificates: each new one is inside the renewal window at once, so the next renewal can follow.
  cfg.profiles.push({ id: "bench-agent", preset: "gov-supervision", certificates: null, validity: { days: 30 }, keyAlgorithms: ["p256", "rsa2048"] });
  writeFileSync(cfgFile, JSON.stringify(cfg, null, 2));
  if (addHolder(t, dataDir, env, "A1").status !== 0) throw new Error("holder add failed");
  // A second token for RSA, in the same SoftHSM2 configuration.
  const made = spawnSync("softhsm2-util", ["--init-token", "--free", "--label", "bench-rsa", "--pin", hsm.pin, "--so-pin", hsm.soPin], { encoding: "utf8" });
  if (made.status !== 0) throw new Error(made.stderr);
  const backend = new Pkcs11Backend(hsm.module);
  const serials: Record<string, string> = {};
  for (const token of await backend.listTokens()) serials[token.label] = token.serial;

  const tokenFor: Record<string, string> = { p256: serials["bench-p256"]!, rsa2048: serials["bench-rsa"]! };
  for (const [alg, tokenSerial] of Object.entries(tokenFor) as [KeyAlgorithm, string][]) {
    const s = await backend.open(tokenSerial, hsm.pin);
    try {
      const key = await s.generateKeyPair(alg, "bench");
      const csr = t.write(`csr-${alg}.pem`, await s.createCsr(key.id, ""));
      const out = t.path(`cert-${alg}.pem`);
      const r = runUkeyServer(["issue", "--data-dir", dataDir, "--holder", "A1", "--profile", "bench-agent", "--csr", csr, "--out", out, "--json"], env);
      if (r.status !== 0) throw new Error(`issue failed: ${r.stdout}${r.stderr}`);
      const serial = r.json<{ serial: string }>().serial;
      await s.installCertificate(derOfPem(readFileSync(out, "utf8")), key.id, objectLabels.current(serial));
    } finally {
      await s.close();
    }
  }

  const server = await startUkeyServer(dataDir, env);
  const prompter: Prompter = {
    pin: async () => hsm.pin,
    idNumber: async () => { throw new Error("not asked for a possession-only profile"); },
    oneTimeCode: async () => { throw new Error("not asked for a possession-only profile"); },
    stepUp: async () => { throw new Error("not asked"); },
    confirm: async () => false,
    progress: () => {},
  };
  try {
    console.log(`\nagent renewal end to end on SoftHSM2 (in-process agent, server process on loopback; ${n} in sequence per algorithm after 1 warm-up)`);
    for (const [alg, tokenSerial] of Object.entries(tokenFor)) {
      const ctx = { backend, server: { url: server.url }, prompter, channel: "cli" as const };
      await renewFlow(ctx, { tokenSerial });
      const times: number[] = [];
      const start = performance.now();
      for (let i = 0; i < n; i++) {
        const t0 = performance.now();
        await renewFlow(ctx, { tokenSerial });
        times.push((performance.now() - t0) / 1000);
      }
      const total = (performance.now() - start) / 1000;
      times.sort((a, b) => a - b);
      const p50 = percentile(times, 50);
      const p95 = percentile(times, 95);
      const target = targets[alg]!;
      const name = alg === "p256" ? "P-256" : "RSA-2048";
      console.log(`${`agent renewal ${name}`.padEnd(48)} p50 ${p50.toFixed(3)} s   p95 ${p95.toFixed(3)} s   (target p95 <= ${target} s: ${p95 <= target ? "met" : "NOT met"}; ${n} in ${total.toFixed(1)} s)`);
    }
  } finally {
    await server.stop();
    await backend.close();
  }
} finally {
  hsm.cleanup();
  t.cleanup();
}
