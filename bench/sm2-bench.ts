// npm run bench (after run-bench.ts): SM2 beside P-256, measured in one run
// in interleaved slices, so that load from elsewhere on this shared machine
// falls on every figure alike; compare the ratios, not the times.
//  - raw: the issuing CA key's signature over a TBS-sized message, and one
//    signature verification (SM2: sm-crypto-v2 with the standard ID, Z
//    computed per check as for a CSR; P-256: Node's crypto);
//  - CSR verification (parse + verify) of openssl-made CSRs;
//  - in-process issuance (verify CSR + build from the DER template + sign +
//    durable commit) and its ratio to the raw bound (1 CSR verify + 1 sign);
//  - the KMC's key pair generation, and SM2 pair issuance as the RA does it
//    (verify CSR, KMC key pair + envelope + wrap, escrow in the intents'
//    transaction, two signatures, both certificates and the pair record in
//    one commit) with its ratio to the pair bound;
//  - the KMC's RSA-2048 encryption key (an RSA pair's): key pair generation,
//    and key pair + CMS EnvelopedData for an RSA-2048 signing key.
// Single run: node --import tsx bench/sm2-bench.ts (UKEY_BENCH_SECONDS, UKEY_BENCH_CONCURRENCY).
import "reflect-metadata";
import { execFileSync } from "node:child_process";
import { createPublicKey, generateKeyPairSync, verify as cryptoVerify } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildEnvelopedKeyBlob, sm2GenerateKeyPair, sm2PointOfSpki, sm2Verify, verifyCsr } from "@ukey/ca";
import type { ServerContext } from "@ukey/server";
import { systemClock } from "@ukey/policy";
import { createKmcMasterKeyFile } from "../packages/server/src/kmc/kmc-master-key.js";
import { envelopeKey, generateEncryptionKey } from "../packages/server/src/kmc/key-envelope.js";
import { LocalKmc } from "../packages/server/src/kmc/key-management-centre.js";
import { benchPairProfile, benchProfile, openBenchContext } from "./renewal-bench.js";

const seconds = Number(process.env.UKEY_BENCH_SECONDS ?? 3);
const concurrency = Number(process.env.UKEY_BENCH_CONCURRENCY ?? 256);

type Alg = "p256" | "sm2";
interface Side {
  ctx: ServerContext;
  csrs: Buffer[];
  signature: Buffer;
  verify: () => boolean;
}

function opensslCsrs(dir: string, alg: Alg, n: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const key = join(dir, `${alg}-${i}.key.pem`);
    const csr = join(dir, `${alg}-${i}.csr.der`);
    if (alg === "sm2") {
      execFileSync("openssl", ["genpkey", "-algorithm", "SM2", "-out", key], { stdio: "pipe" });
      execFileSync("openssl", ["req", "-new", "-key", key, "-sm3", "-sigopt", "distid:1234567812345678", "-subj", "/", "-outform", "DER", "-out", csr], { stdio: "pipe" });
    } else {
      execFileSync("openssl", ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-subj", "/", "-outform", "DER", "-out", csr], { stdio: "pipe" });
    }
    out.push(readFileSync(csr));
  }
  return out;
}

const tbsLike = Buffer.alloc(600, 7);
const dir = mkdtempSync(join(tmpdir(), "ukey-sm2-bench-"));
try {
  const sides = {} as Record<Alg, Side>;
  for (const alg of ["p256", "sm2"] as const) {
    mkdirSync(join(dir, alg));
    const ctx = await openBenchContext(join(dir, alg), alg, { pairs: alg === "sm2" });
    const signer = ctx.ca.issuingSigner;
    const signature = await signer.sign(tbsLike);
    const verify = alg === "sm2"
      ? ((point: Buffer) => () => sm2Verify(tbsLike, signature, point))(sm2PointOfSpki(signer.spki))
      : ((key: ReturnType<typeof createPublicKey>) => () => cryptoVerify("sha256", tbsLike, { key, dsaEncoding: "der" }, signature))(createPublicKey({ key: signer.spki, format: "der", type: "spki" }));
    if (!verify()) throw new Error(`${alg}: the CA's own signature does not verify`);
    sides[alg] = { ctx, csrs: opensslCsrs(dir, alg, 32), signature, verify };
  }

  const slices = Math.max(3, Math.round(seconds * 2));
  const zero = () => ({ n: 0, ms: 0 });
  const totals = {
    p256: { sign: zero(), verify: zero(), csr: zero(), issue: zero() },
    sm2: { sign: zero(), verify: zero(), csr: zero(), issue: zero() },
  };
  // The KMC's share of a pair: a key pair, and the envelope for the holder's key; then the whole KMC call
  // (key pair, envelope, wrap, escrow row and audit entry committed).
  const kmcTotals = { keygen: zero(), envelope: zero(), issue: zero(), pair: zero(), rsaKeygen: zero(), rsaEnvelope: zero() };
  const rsaHolderSpki = generateKeyPairSync("rsa", { modulusLength: 2048 }).publicKey.export({ format: "der", type: "spki" });
  const pairKmc = sides.sm2.ctx.kmc!.kmc;
  const holderPoint = sm2GenerateKeyPair().publicKey;
  const holderSpki = verifyCsr(sides.sm2.csrs[0]!).spki;
  const kmc = new LocalKmc({ store: sides.sm2.ctx.store, masterKey: await createKmcMasterKeyFile(join(dir, "kmc-master.json"), "bench kmc passphrase"), clock: systemClock });
  const timed = async (into: { n: number; ms: number }, ms: number, fn: () => unknown) => {
    const start = performance.now();
    const end = start + ms;
    while (performance.now() < end) {
      for (let i = 0; i < 10; i++) await fn();
      into.n += 10;
    }
    into.ms += performance.now() - start;
  };
  let k = 0;
  for (let slice = 0; slice < slices; slice++) {
    for (const alg of ["p256", "sm2"] as const) {
      const s = sides[alg];
      const t = totals[alg];
      await timed(t.sign, 100, () => s.ctx.ca.issuingSigner.sign(tbsLike));
      await timed(t.verify, 100, s.verify);
      await timed(t.csr, 100, () => verifyCsr(s.csrs[k++ % s.csrs.length]!));
      const start = performance.now();
      const end = start + 400;
      let next = 0;
      await Promise.all(Array.from({ length: concurrency }, async () => {
        while (performance.now() < end) {
          await s.ctx.issuance.issue({ holderId: "B1", profileId: benchProfile.id, csr: s.csrs[next++ % s.csrs.length]!, actor: "bench" });
          t.issue.n++;
        }
      }));
      t.issue.ms += performance.now() - start;
    }
    await timed(kmcTotals.keygen, 100, () => sm2GenerateKeyPair());
    await timed(kmcTotals.envelope, 100, () => buildEnvelopedKeyBlob(sm2GenerateKeyPair(), holderPoint));
    const kStart = performance.now();
    const kEnd = kStart + 300;
    await Promise.all(Array.from({ length: 32 }, async () => {
      while (performance.now() < kEnd) {
        await kmc.issueEncryptionKey({ holderId: "B1", holderSigningSpki: holderSpki, actor: "bench" });
        kmcTotals.issue.n++;
      }
    }));
    kmcTotals.issue.ms += performance.now() - kStart;
    // RSA key generation is slow and uneven: one slice of at least a few keys.
    await timed(kmcTotals.rsaKeygen, 200, () => generateEncryptionKey(rsaHolderSpki));
    await timed(kmcTotals.rsaEnvelope, 200, async () => envelopeKey(await generateEncryptionKey(rsaHolderSpki), rsaHolderSpki));
    // Pairs as the RA issues them (renewal-order-service.ts, download-service.ts), without the order's own rows.
    const pStart = performance.now();
    const pEnd = pStart + 400;
    let p = 0;
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (performance.now() < pEnd) {
        const csr = verifyCsr(sides.sm2.csrs[p++ % sides.sm2.csrs.length]!);
        const prepared = await pairKmc.prepareEncryptionKey({ holderId: "B1", holderSigningSpki: csr.spki, actor: "bench" });
        await sides.sm2.ctx.issuance.issuePair({
          holderId: "B1", profileId: benchPairProfile.id, csr, actor: "bench",
          encryption: { spki: prepared.spki, escrowId: prepared.escrowId },
          onIntent: async (r) => { await pairKmc.recordIn(r, prepared, Date.now()); return undefined; },
        });
        kmcTotals.pair.n++;
      }
    }));
    kmcTotals.pair.ms += performance.now() - pStart;
  }
  const per = (x: { n: number; ms: number }) => x.n / (x.ms / 1000);
  const line = (label: string, value: number, tail = "") => console.log(`${label.padEnd(52)} ${value.toFixed(0).padStart(8)} /s${tail}`);
  console.log(`ukey-renew SM2 bench (SM2 and P-256 CA keys in encrypted files; ${slices} interleaved slices; concurrency ${concurrency}; node ${process.version})`);
  const figures = {} as Record<Alg, { sign: number; verify: number; csr: number; bound: number; issue: number }>;
  for (const alg of ["p256", "sm2"] as const) {
    const t = totals[alg];
    const f = { sign: per(t.sign), verify: per(t.verify), csr: per(t.csr), bound: 0, issue: per(t.issue) };
    f.bound = 1 / (1 / f.sign + 1 / f.csr);
    figures[alg] = f;
    const name = alg === "sm2" ? "SM2 (SM3withSM2, ID 1234567812345678)" : "P-256 (ECDSA-SHA256)";
    line(`raw: CA key sign, ${name}`, f.sign);
    line(`raw: signature verify, ${name}`, f.verify);
    line(`raw: CSR verification (parse + verify), ${alg}`, f.csr);
    line(`raw bound for issuance (1 CSR verify + 1 sign), ${alg}`, f.bound);
    line(`in-process issuance (durable, group commit), ${alg}`, f.issue, `   ratio to raw bound ${(f.issue / f.bound).toFixed(2)} (target >= 0.50)`);
  }
  const keygen = per(kmcTotals.keygen);
  const envelope = per(kmcTotals.envelope);
  const kmcIssue = per(kmcTotals.issue);
  line("KMC: SM2 key pair generation", keygen);
  line("KMC: key pair + GM/T 0016 envelope", envelope);
  line("KMC: issueEncryptionKey (+ wrap, escrow, audit; durable)", kmcIssue, `   ratio to key pair + envelope ${(kmcIssue / envelope).toFixed(2)}`);
  line("KMC: RSA-2048 key pair generation (RSA pairs)", per(kmcTotals.rsaKeygen));
  line("KMC: RSA-2048 key pair + CMS EnvelopedData", per(kmcTotals.rsaEnvelope));
  // A pair costs one signing-CSR verification, two CA signatures and the KMC's key pair and envelope.
  const pairBound = 1 / (1 / figures.sm2.csr + 2 / figures.sm2.sign + 1 / envelope);
  line("SM2 pair bound (1 CSR verify + 2 signs + key pair + envelope)", pairBound);
  const pairs = per(kmcTotals.pair);
  line("SM2 pair issuance (durable: escrow, 2 certificates, pair)", pairs, `   ratio to pair bound ${(pairs / pairBound).toFixed(2)}; raw SM2 sign ${figures.sm2.sign.toFixed(0)} /s in this run`);
  const r = (a: number, b: number) => (a / b).toFixed(2).padStart(8);
  console.log(`${"SM2 / P-256: sign".padEnd(52)} ${r(figures.sm2.sign, figures.p256.sign)} x`);
  console.log(`${"SM2 / P-256: verify".padEnd(52)} ${r(figures.sm2.verify, figures.p256.verify)} x`);
  console.log(`${"SM2 / P-256: issuance".padEnd(52)} ${r(figures.sm2.issue, figures.p256.issue)} x`);
  for (const alg of ["p256", "sm2"] as const) await sides[alg].ctx.close();
  if (figures.sm2.issue / figures.sm2.bound < 0.5) process.exitCode = 1;
} finally {
  rmSync(dir, { recursive: true, force: true });
}
