// npm run bench: the raw rates of the CA key and of CSR verification, then
// in-process issuance and OCSP over HTTP, each as a ratio to its raw bound,
// all measured in this one run on this machine (compare ratios, not times).
import "reflect-metadata";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { webcrypto } from "node:crypto";
import * as x509 from "@peculiar/x509";
import { verifyCsr } from "@ukey/ca";
import { benchAgents, benchRenewals, measureRenewals, openBenchContext, prepareRenewalJobs, renewalLine } from "./renewal-bench.js";
import { measurePortal } from "./web-bench.js";
import { measureOcsp } from "./ocsp-bench.js";
import { measureCrl } from "./crl-bench.js";
import { measureSignInFlood, signInFloodLine, signInFloodMet } from "./sign-in-flood-bench.js";

const seconds = Number(process.env.UKEY_BENCH_SECONDS ?? 3);
const concurrency = Number(process.env.UKEY_BENCH_CONCURRENCY ?? 256);

async function rate(label: string, fn: () => unknown | Promise<unknown>, secs = seconds): Promise<number> {
  const end = performance.now() + secs * 1000;
  let n = 0;
  const start = performance.now();
  while (performance.now() < end) {
    for (let i = 0; i < 50; i++) await fn();
    n += 50;
  }
  const r = n / ((performance.now() - start) / 1000);
  console.log(`${label.padEnd(48)} ${r.toFixed(0).padStart(8)} /s`);
  return r;
}

const dir = mkdtempSync(join(tmpdir(), "ukey-bench-"));
try {
  // A possession-only profile (as seed 004's) and holder B1 for the renewal bench.
  const ctx = await openBenchContext(dir);

  // 64 distinct P-256 CSRs from openssl, cycled: verification cost does not depend on which.
  const csrs: Buffer[] = [];
  for (let i = 0; i < 64; i++) {
    const key = join(dir, `k${i}.pem`);
    execFileSync("openssl", ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-subj", `/CN=b${i}`, "-outform", "DER", "-out", join(dir, `c${i}.der`)], { stdio: "pipe" });
    csrs.push(readFileSync(join(dir, `c${i}.der`)));
  }

  console.log(`ukey-renew bench (P-256 CA key in an encrypted file; ${seconds}s per measure; concurrency ${concurrency}; node ${process.version})`);
  const tbsLike = Buffer.alloc(600, 7);
  // Side by side: raw sign, raw verification and issuance are measured in
  // alternating slices, so that load from elsewhere on this shared machine
  // falls on both sides of the ratio alike.
  const slices = Math.max(3, Math.round(seconds * 2));
  const totals = { sign: { n: 0, ms: 0 }, verify: { n: 0, ms: 0 }, issue: { n: 0, ms: 0 } };
  const timed = async (into: { n: number; ms: number }, ms: number, fn: () => unknown) => {
    const start = performance.now();
    const end = start + ms;
    while (performance.now() < end) {
      for (let i = 0; i < 20; i++) await fn();
      into.n += 20;
    }
    into.ms += performance.now() - start;
  };
  let k = 0;
  let next = 0;
  for (let slice = 0; slice < slices; slice++) {
    await timed(totals.sign, 150, () => ctx.ca.issuingSigner.sign(tbsLike));
    await timed(totals.verify, 250, () => verifyCsr(csrs[k++ % csrs.length]!));
    // Issuance: verify CSR + build + sign + durable commit (group commit), `concurrency` requests in flight.
    const start = performance.now();
    const end = start + 600;
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        await ctx.issuance.issue({ holderId: "B1", profileId: "personal", csr: csrs[next++ % csrs.length]!, actor: "bench" });
        totals.issue.n++;
      }
    }));
    totals.issue.ms += performance.now() - start;
  }
  const perSecond = (t: { n: number; ms: number }) => t.n / (t.ms / 1000);
  const sign = perSecond(totals.sign);
  const verify = perSecond(totals.verify);
  const bound = 1 / (1 / sign + 1 / verify);
  const issuance = perSecond(totals.issue);
  console.log(`${"raw: CA key sign (P-256, ECDSA-SHA256)".padEnd(48)} ${sign.toFixed(0).padStart(8)} /s`);
  console.log(`${"raw: CSR verification (parse + verify)".padEnd(48)} ${verify.toFixed(0).padStart(8)} /s`);
  console.log(`${"raw bound for issuance (1 verify + 1 sign)".padEnd(48)} ${bound.toFixed(0).padStart(8)} /s`);
  console.log(`${"in-process issuance (durable, group commit)".padEnd(48)} ${issuance.toFixed(0).padStart(8)} /s   ratio to raw bound ${(issuance / bound).toFixed(2)} (target >= 0.50; ${slices} interleaved slices)`);

  // For scale: the naive way, one @peculiar/x509 generator call per certificate, no storage.
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const keys = await webcrypto.subtle.generateKey(alg, false, ["sign", "verify"]) as webcrypto.CryptoKeyPair;
  const leafKeys = await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"]) as webcrypto.CryptoKeyPair;
  x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
  const naive = await rate("reference: naive @peculiar/x509 generator loop", () => x509.X509CertificateGenerator.create({
    serialNumber: "01", issuer: "CN=Bench CA", subject: "CN=Bench Holder", notBefore: new Date(), notAfter: new Date(Date.now() + 86_400_000),
    signingAlgorithm: alg, publicKey: leafKeys.publicKey, signingKey: keys.privateKey,
  }), Math.min(seconds, 2));
  console.log(`${"issuance / naive generator".padEnd(48)} ${(issuance / naive).toFixed(1).padStart(8)} x`);

  // Renewals over HTTP through the whole order path (see renewal-bench.ts).
  // The warm-up takes some; when the list runs out before the time, the rate is over the renewals measured.
  // Holders renewing at once (benchAgents): each waits for its answers, so throughput is agents / latency until the event loop is full.
  for (const agents of benchAgents()) {
    const jobsFile = await prepareRenewalJobs(ctx, "B1", benchRenewals(), dir, `jobs-${agents}`);
    const rr = await measureRenewals(ctx, jobsFile, agents, Math.max(seconds, 5));
    // A renewal verifies two signatures (possession, CSR) and makes one.
    console.log(renewalLine(rr, agents, 1 / (2 / verify + 1 / sign)));
  }
  // After the renewals, whose figures stay comparable with earlier runs: OCSP over HTTP from pre-signed
  // responses against the HTTP bound of the same server (ocsp-bench.ts), then with UKEY_BENCH_OCSP_ROWS
  // (1,000,000; 0 to skip) more certificates in the embedded database; then CRL generation with
  // UKEY_BENCH_CRL_REVOKED (1,000,000; 0 to skip) revoked ones (crl-bench.ts).
  await measureOcsp(ctx, dir, seconds, Number(process.env.UKEY_BENCH_OCSP_ROWS ?? 1_000_000));
  await measureCrl(ctx, Number(process.env.UKEY_BENCH_CRL_REVOKED ?? 1_000_000));
  // One holder's renewal time during a flood of bogus operator sign-ins against without, in a data directory of its own (sign-in-flood-bench.ts).
  const flood = await measureSignInFlood(dir);
  console.log(signInFloodLine(flood));
  if (!signInFloodMet(flood)) process.exitCode = 1;
  // The portal: JavaScript gzipped and first render in Chromium, against their targets (web-bench.ts).
  if (!(await measurePortal(ctx))) process.exitCode = 1;
  await ctx.close();
  if (issuance / bound < 0.5) process.exitCode = 1;
} finally {
  rmSync(dir, { recursive: true, force: true });
}
