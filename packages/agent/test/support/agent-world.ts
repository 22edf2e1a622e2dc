import "reflect-metadata";
import { spawn, spawnSync } from "node:child_process";
import { randomBytes, webcrypto } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import * as x509 from "@peculiar/x509";
import type { KeyAlgorithm } from "@ukey/policy";
import type { KeyStoreBackend } from "../../src/keys/key-store.js";
import { Pkcs11Backend } from "../../src/keys/pkcs11-backend.js";
import { Pkcs12Backend, fileTokenSerial } from "../../src/keys/pkcs12-backend.js";
import { objectLabels } from "../../src/keys/key-store.js";
import { derOfPem } from "../../src/flows/certificate-id.js";
import { createSoftHsmToken, type SoftHsmToken } from "../../../ca/test/support/softhsm.js";
import {
  addAuditor, addHolder, adminReader, initialisedDataDir, runUkeyServer, startUkeyServer, tempDir, type RunningServer, type TempDir,
} from "../../../server/test/support/fixtures.js";
import { testBundles } from "../../../server/test/support/test-bundle.js";

/** The real `ukey` bin as run from a development checkout: the TypeScript sources through tsx. */
export const ukeySourceBin = resolve(import.meta.dirname, "../../bin/ukey.js");

/** `ukey` as tests start it: the bundle of the current sources (scripts/test-bundle.mjs), as the production build makes it. */
export const ukeyBin = testBundles().agent;

export interface UkeyRun {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  json<T = Record<string, unknown>>(): T;
}

/**
 * A server data directory with test profiles, holders and a SoftHSM2
 * token, before and after the real server starts. Profiles (config.json):
 * - "e2e": possession only, 30-day certificates (so a new one is inside
 *   the 90-day window at once), P-256 and RSA-2048, the old certificate
 *   revoked as superseded on completion;
 * - "e2e-leave": the same, old certificate left to expire;
 * - "long": possession only, 1825 days (renewal not yet open);
 * - "p256only": as "e2e", P-256 keys only;
 * - "stepup": as "e2e", with step-up once expired more than 5 days;
 * - "otp": ID number and a one-time code by SMS (to the outbox).
 */
export interface AgentWorld {
  t: TempDir;
  dataDir: string;
  env: Record<string, string>;
  hsm: SoftHsmToken;
  pinFile: string;
  server: RunningServer | undefined;
  /** Generates a key on the token, has the server issue a certificate for it (server stopped), installs it labelled current(serial). */
  issueOnToken(holder: string, profile: string, algorithm: KeyAlgorithm, tokenSerial?: string, backend?: KeyStoreBackend): Promise<{ serial: string; certId: string; notAfter: string }>;
  /** A new PKCS#12 file protected by the world's PIN, holding a certificate issued as issueOnToken does. */
  issueInFile(holder: string, profile: string, path: string): Promise<{ serial: string; certId: string; notAfter: string }>;
  /**
   * Like issueOnToken, but the certificate comes from an earlier CA with the
   * dates given (e.g. already expired) and is imported (`ukey-server import`,
   * server stopped) for a new holder `holder` under `profile`.
   */
  importOnToken(holder: string, profile: string, algorithm: KeyAlgorithm, notBefore: Date, notAfter: Date, tokenSerial?: string): Promise<{ serial: string }>;
  /** Another token in the same SoftHSM2 configuration (PIN 123456, SO PIN 87654321); returns its serial. */
  addToken(label: string): string;
  start(): Promise<RunningServer>;
  /**
   * What the operators see of an order (the admin API, as an auditor): its
   * state and new certificate's serial. The renewal API shows an order only
   * to whoever proved possession of its key.
   */
  order(id: string): Promise<{ state: string; newSerial: string | null }>;
  /** What the operators see of a certificate (the admin API, as an auditor). */
  certificate(serial: string): Promise<{ serial: string; certId: string; status: string; revokedAt: number | null }>;
  stop(): Promise<void>;
  /** Runs `ukey ARGS --module M --pin-file P [--server URL]` (each unless ARGS has it) with SOFTHSM2_CONF; stdin fed from `input`. */
  ukey(args: string[], opts?: { input?: string; env?: Record<string, string>; noDefaults?: boolean }): UkeyRun;
  /** Like ukey, answering on stdin as stderr shows each question: `answer(stderrSoFar)` returns a line to write, or undefined to wait. */
  ukeyInteractive(args: string[], answer: (stderr: string) => string | undefined): Promise<UkeyRun>;
  /** The objects on a token as OpenSC's pkcs11-tool lists them after login. */
  objects(tokenLabel?: string, pin?: string): TokenObjects;
  cleanup(): Promise<void>;
}

export interface TokenObjects {
  certificates: { label: string; id: string; serialHex?: string }[];
  privateKeys: { label: string; id: string }[];
  publicKeys: { label: string; id: string }[];
  raw: string;
}

const profiles = [
  { id: "e2e", preset: "gov-supervision", certificates: null, validity: { days: 30 }, keyAlgorithms: ["p256", "rsa2048"] },
  { id: "e2e-leave", preset: "gov-supervision", certificates: null, validity: { days: 30 }, keyAlgorithms: ["p256", "rsa2048"], renewal: { onCompletion: "leave-to-expire" } },
  { id: "long", preset: "gov-supervision", certificates: null, validity: { days: 1825 }, keyAlgorithms: ["p256", "rsa2048"] },
  { id: "p256only", preset: "gov-supervision", certificates: null, validity: { days: 30 }, keyAlgorithms: ["p256"] },
  { id: "stepup", preset: "gov-supervision", certificates: null, validity: { days: 30 }, keyAlgorithms: ["p256"], renewal: { stepUp: { afterDaysExpired: 5 } } },
  { id: "otp", preset: "gov-supervision", certificates: null, validity: { days: 30 }, keyAlgorithms: ["p256"], verification: { idNumber: true, oneTimeCode: "sms" } },
];

/** Builds the world: data directory (a P-256 CA, or SM2 when asked), profiles, holders H1..H3 (H3 with a phone), one SoftHSM2 token. The server is not started. */
export function createAgentWorld(prefix = "ukey-agent-", opts: { caAlgorithm?: "p256" | "sm2" } = {}): AgentWorld {
  const t = tempDir(prefix);
  const { dataDir, env } = initialisedDataDir(t, opts.caAlgorithm);
  const cfgFile = `${dataDir}/config.json`;
  const cfg = JSON.parse(readFileSync(cfgFile, "utf8"));
  cfg.profiles.push(...profiles);
  writeFileSync(cfgFile, JSON.stringify(cfg, null, 2));
  for (const h of ["H1", "H2"]) must(addHolder(t, dataDir, env, h), `holder ${h}`);
  must(addHolder(t, dataDir, env, "H3", ["--phone", "15900000005"]), "holder H3");
  const admin = adminReader(() => world.server!.url, addAuditor(t, dataDir, env));
  const hsm = createSoftHsmToken("ukey-holder", "123456", "87654321");
  const pinFile = t.write("pin", `${hsm.pin}\n`);
  /**
   * --module, --pin-file and --server, each unless the test gave its own, and
   * --yes for renew and download (their preview is confirmed without a
   * terminal only so) unless the test gives --no-yes (dropped: it asks).
   */
  const defaultArgs = (args: string[]) => [
    ...((args[0] === "renew" || args[0] === "download") && !args.includes("--yes") && !args.includes("--no-yes") ? ["--yes"] : []),
    ...(args.includes("--module") || args.includes("--pkcs12") || args.includes("--file") ? [] : ["--module", hsm.module]),
    ...(args.includes("--pin-file") ? [] : ["--pin-file", pinFile]),
    ...(args.includes("--server") || !world.server ? [] : ["--server", world.server.url]),
  ];
  const world: AgentWorld = {
    t, dataDir, env, hsm, pinFile, server: undefined,
    async issueInFile(holder, profile, path) {
      const backend = new Pkcs12Backend(path);
      await backend.initToken(fileTokenSerial(path), "", hsm.pin);
      return world.issueOnToken(holder, profile, "p256", fileTokenSerial(path), backend);
    },
    async issueOnToken(holder, profile, algorithm, tokenSerial = hsm.tokenSerial, given) {
      const backend = given ?? new Pkcs11Backend(hsm.module);
      try {
        const s = await backend.open(tokenSerial, hsm.pin);
        try {
          const key = await s.generateKeyPair(algorithm, "issuing");
          const csrFile = t.write(`csr-${key.id}.pem`, await s.createCsr(key.id, ""));
          const out = t.path(`cert-${key.id}.pem`);
          const r = runUkeyServer(["issue", "--data-dir", dataDir, "--holder", holder, "--profile", profile, "--csr", csrFile, "--out", out, "--token-serial", tokenSerial, "--json"], env);
          must(r, "issue");
          const issued = r.json<{ serial: string; certId: string; notAfter: string }>();
          await s.installCertificate(derOfPem(readFileSync(out, "utf8")), key.id, objectLabels.current(issued.serial));
          await s.relabel(key.id, objectLabels.current(issued.serial));
          return issued;
        } finally {
          await s.close();
        }
      } finally {
        await backend.close();
      }
    },
    async importOnToken(holder, profile, algorithm, notBefore, notAfter, tokenSerial = hsm.tokenSerial) {
      const crypto = webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0];
      x509.cryptoProvider.set(crypto);
      const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
      const caKeys = await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"]) as webcrypto.CryptoKeyPair;
      const ca = await x509.X509CertificateGenerator.createSelfSigned({
        serialNumber: "01", name: "C=CN, O=Earlier CA, CN=Earlier Issuing CA", notBefore: new Date(Date.now() - 3650 * 86_400_000),
        notAfter: new Date(Date.now() + 3650 * 86_400_000), signingAlgorithm: alg, keys: caKeys,
        extensions: [new x509.BasicConstraintsExtension(true, 0, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
          await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey)],
      });
      const backend = new Pkcs11Backend(hsm.module);
      try {
        const s = await backend.open(tokenSerial, hsm.pin);
        try {
          const key = await s.generateKeyPair(algorithm, "importing");
          const csr = new x509.Pkcs10CertificateRequest(await s.createCsr(key.id, ""));
          // Ten whole bytes, top bit clear: already the canonical form the server and the agent write.
          const serial = `7${randomBytes(9).toString("hex")}f`;
          const leaf = await x509.X509CertificateGenerator.create({
            serialNumber: serial, issuer: ca.subject, subject: `C=CN, O=Earlier CA, CN=${holder}`, notBefore, notAfter,
            signingAlgorithm: alg, publicKey: csr.publicKey, signingKey: caKeys.privateKey,
            extensions: [new x509.BasicConstraintsExtension(false, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
              await x509.AuthorityKeyIdentifierExtension.create(ca.publicKey)],
          });
          const certs = t.write(`import-${serial}.pem`, leaf.toString("pem") + "\n");
          const chain = t.write(`import-ca-${serial}.pem`, ca.toString("pem") + "\n");
          const holders = t.write(`import-${serial}.csv`, `id,kind,name,id_type,id_number,phone,email,organisation_id,profile,cert_serials\n${holder},person,Holder ${holder},resident-id,11010119900307123X,,,,${profile},${serial}\n`);
          must(runUkeyServer(["import", "--data-dir", dataDir, "--certs", certs, "--holders", holders, "--chain", chain, "--json"], env), "import");
          await s.installCertificate(new Uint8Array(leaf.rawData), key.id, objectLabels.current(serial));
          await s.relabel(key.id, objectLabels.current(serial));
          return { serial };
        } finally {
          await s.close();
        }
      } finally {
        await backend.close();
      }
    },
    addToken(label) {
      const env = { ...process.env, SOFTHSM2_CONF: hsm.conf };
      const init = spawnSync("softhsm2-util", ["--init-token", "--free", "--label", label, "--pin", hsm.pin, "--so-pin", hsm.soPin], { env, encoding: "utf8" });
      if (init.status !== 0) throw new Error(`softhsm2-util failed: ${init.stderr}`);
      const slots = spawnSync("softhsm2-util", ["--show-slots"], { env, encoding: "utf8" }).stdout;
      const block = slots.split(/Token info:/).find((b) => new RegExp(`Label:\\s+${label}\\s*$`, "m").test(b));
      const serial = block && /Serial number:\s+(\S+)/.exec(block)?.[1];
      if (!serial) throw new Error(`no serial for token ${label}: ${slots}`);
      return serial;
    },
    async start() {
      world.server = await startUkeyServer(dataDir, env);
      return world.server;
    },
    order: (id) => admin(`/orders/${id}`),
    certificate: (serial) => admin(`/certificates/${serial}`),
    async stop() {
      await world.server?.stop();
      world.server = undefined;
    },
    ukey(args, opts = {}) {
      const defaults = opts.noDefaults ? [] : defaultArgs(args);
      const r = spawnSync(process.execPath, [ukeyBin, ...args.filter((a) => a !== "--no-yes"), ...defaults], {
        env: { PATH: process.env.PATH ?? "", HOME: t.dir, SOFTHSM2_CONF: hsm.conf, LANG: "en_US.UTF-8", ...opts.env },
        input: opts.input ?? "",
        encoding: "utf8",
        timeout: 300_000,
      });
      return {
        status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr,
        json<T>() {
          const line = r.stdout.trim().split("\n").pop() ?? "";
          try {
            return JSON.parse(line) as T;
          } catch {
            throw new Error(`not JSON on stdout: ${r.stdout}\nstderr: ${r.stderr}`);
          }
        },
      };
    },
    ukeyInteractive(args, answer) {
      const defaults = defaultArgs(args);
      const child = spawn(process.execPath, [ukeyBin, ...args.filter((a) => a !== "--no-yes"), ...defaults], {
        env: { PATH: process.env.PATH ?? "", HOME: t.dir, SOFTHSM2_CONF: hsm.conf, LANG: "en_US.UTF-8" },
        stdio: ["pipe", "pipe", "pipe"],
      });
      let stdout = "";
      let stderr = "";
      let answered = 0;
      child.stdout.on("data", (d) => { stdout += String(d); });
      child.stderr.on("data", (d) => {
        stderr += String(d);
        for (;;) {
          const line = answer(stderr.slice(answered));
          if (line === undefined) break;
          answered = stderr.length;
          child.stdin.write(line + "\n");
        }
      });
      return new Promise((resolveRun) => {
        child.on("close", (status, signal) => resolveRun({
          status, signal, stdout, stderr,
          json<T>() { return JSON.parse(stdout.trim().split("\n").pop() ?? "") as T; },
        }));
      });
    },
    objects(tokenLabel = hsm.tokenLabel, pin = hsm.pin) {
      const r = spawnSync("pkcs11-tool", ["--module", hsm.module, "--token-label", tokenLabel, "--login", "--pin", pin, "-O"], {
        env: { ...process.env, SOFTHSM2_CONF: hsm.conf }, encoding: "utf8",
      });
      if (r.status !== 0) throw new Error(`pkcs11-tool failed (OpenSC is required): ${r.error?.message ?? ""}${r.stderr}`);
      return parseObjects(r.stdout);
    },
    async cleanup() {
      await world.stop();
      hsm.cleanup();
      t.cleanup();
    },
  };
  return world;
}

/** Parses `pkcs11-tool -O`: one block per object, starting with its type. */
export function parseObjects(out: string): TokenObjects {
  const objects: TokenObjects = { certificates: [], privateKeys: [], publicKeys: [], raw: out };
  const blocks = out.split(/\n(?=\S)/);
  for (const b of blocks) {
    const label = /label:\s*(.*)/.exec(b)?.[1]?.trim() ?? "";
    const id = /ID:\s*([0-9a-f]+)/i.exec(b)?.[1]?.toLowerCase() ?? "";
    if (/^Certificate Object/.test(b)) {
      const serial = /serial:\s*([0-9A-Fa-f]+)/.exec(b)?.[1];
      objects.certificates.push({ label, id, ...(serial ? { serialHex: serial.toLowerCase().replace(/^(00)+(?=.)/, "") } : {}) });
    } else if (/^Private Key Object/.test(b)) objects.privateKeys.push({ label, id });
    else if (/^Public Key Object/.test(b)) objects.publicKeys.push({ label, id });
  }
  return objects;
}

function must(r: { status: number; stdout: string; stderr: string }, what: string): void {
  if (r.status !== 0) throw new Error(`${what} failed: ${r.stdout}${r.stderr}`);
}
