import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createPrivateKey, sign } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createServer } from "node:net";
import { createInterface } from "node:readline";
import { possessionMessage } from "../../src/renewal/possession.js";
import { testBundles } from "./test-bundle.js";

/** The real bin, as operators run it from a development checkout: the TypeScript sources through tsx. */
export const ukeyServerSourceBin = resolve(import.meta.dirname, "../../bin/ukey-server.js");

/**
 * `ukey-server` as tests start it: the bundle of the current sources (scripts/test-bundle.mjs), made the way the
 * production build makes it, which starts in about half the CPU of the sources through tsx. The sources' own path
 * (ukeyServerSourceBin) keeps its tests in cli.test.ts; the production install in test/build.
 */
export const ukeyServerBin = testBundles().server;

export interface TempDir {
  dir: string;
  path(name: string): string;
  write(name: string, content: string | Buffer): string;
  cleanup(): void;
}

/** A private temporary directory. */
export function tempDir(prefix = "ukey-test-"): TempDir {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return {
    dir,
    path: (n) => join(dir, n),
    write: (n, c) => { const p = join(dir, n); writeFileSync(p, c, { mode: 0o600 }); return p; },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

export interface CliResult {
  status: number;
  stdout: string;
  stderr: string;
  json<T = Record<string, unknown>>(): T;
}

/** Runs the real `ukey-server` bin to completion. */
export function runUkeyServer(args: string[], env: Record<string, string> = {}): CliResult {
  const r = spawnSync(process.execPath, [ukeyServerBin, ...args], {
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", ...env },
    encoding: "utf8",
    timeout: 60_000,
  });
  return {
    status: r.status ?? -1,
    stdout: r.stdout,
    stderr: r.stderr,
    json<T>() {
      const line = r.stdout.trim().split("\n").pop() ?? "";
      return JSON.parse(line) as T;
    },
  };
}

/** A started `ukey-server start` process and the ports it listens on. */
export interface RunningServer {
  child: ChildProcess;
  http: number;
  https: number | null;
  /** The client-certificate port (start --client-cert-port), or null. */
  clientCert: number | null;
  url: string;
  stop(): Promise<void>;
}

/** Starts the real server on free ports and waits for its "listening" line. */
export async function startUkeyServer(dataDir: string, env: Record<string, string>, extra: string[] = []): Promise<RunningServer> {
  const child = spawn(process.execPath, [ukeyServerBin, "start", "--data-dir", dataDir, "--port", "0", "--json", ...extra], {
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr!.on("data", (d) => { stderr += String(d); });
  const lines = createInterface({ input: child.stdout! });
  const listening = await new Promise<{ http: number; https: number | null; clientCert: number | null }>((resolveP, reject) => {
    // A start on a loaded 2-core machine can take tens of seconds (from the sources through tsx, more still). A server that never says
    // "listening" is killed: left running, it would keep the test file's process alive until the runner's own timeout.
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`server did not start within 90 s: ${stderr}`));
    }, 90_000);
    lines.on("line", (line) => {
      try {
        const j = JSON.parse(line) as { event?: string; http: number; https: number | null; clientCert: number | null; error?: unknown };
        if (j.event === "listening") { clearTimeout(timer); resolveP(j); }
        if (j.error) { clearTimeout(timer); reject(new Error(line)); }
      } catch { /* log lines of fastify */ }
    });
    child.once("exit", (code) => { clearTimeout(timer); reject(new Error(`server exited ${code}: ${stderr}`)); });
  });
  return {
    child, http: listening.http, https: listening.https, clientCert: listening.clientCert, url: `http://127.0.0.1:${listening.http}`,
    stop: () => new Promise((r) => { if (child.exitCode !== null) return r(); child.once("exit", () => r()); child.kill("SIGTERM"); }),
  };
}

/** A CSR made by the real openssl CLI. */
export function opensslCsr(t: TempDir, name: string, keyArgs: readonly string[], subject = "/CN=requested by CSR"): { csr: string; key: string } {
  const key = t.path(`${name}.key.pem`);
  const csr = t.path(`${name}.csr.pem`);
  execFileSync("openssl", ["req", "-new", ...keyArgs, "-nodes", "-keyout", key, "-subj", subject, "-out", csr], { stdio: "pipe" });
  return { csr, key };
}

export const keyArgs = {
  p256: ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
  p384: ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
  secp256k1: ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp256k1"],
  rsa1024: ["-newkey", "rsa:1024"],
  rsa2048: ["-newkey", "rsa:2048"],
} as const;

/** Runs openssl and returns its exit status and output. */
export function openssl(args: string[], input?: Buffer): { status: number; out: string } {
  const r = spawnSync("openssl", args, { input, encoding: "utf8" });
  return { status: r.status ?? -1, out: (r.stdout ?? "") + (r.stderr ?? "") };
}

/** A data directory initialised by the real CLI with a passphrase file. */
export function initialisedDataDir(t: TempDir, algorithm = "p256", extraArgs: string[] = []): { dataDir: string; env: Record<string, string> } {
  const pass = t.write("ca-passphrase", "correct horse battery staple\n");
  const env = { UKEY_CA_PASSPHRASE_FILE: pass };
  const dataDir = t.path("data");
  const r = runUkeyServer(["init", "--data-dir", dataDir, "--algorithm", algorithm, "--json", ...extraArgs], env);
  if (r.status !== 0) throw new Error(`init failed: ${r.stdout}${r.stderr}`);
  return { dataDir, env };
}

/** Adds a holder through the CLI. */
export function addHolder(t: TempDir, dataDir: string, env: Record<string, string>, id: string, extra: string[] = []): CliResult {
  const idFile = t.write(`${id}.idnum`, "11010119900307123X\n");
  return runUkeyServer(["holder", "add", "--data-dir", dataDir, "--id", id, "--name", `Holder ${id}`, "--id-type", "resident-id", "--id-number-file", idFile, "--json", ...extra], env);
}

/**
 * What the agent does for proof of possession: signs the order's challenge
 * message (possessionMessage) with the current key, here a PEM key file
 * standing in for the token. Returns the base64 signature.
 */
export function signPossession(orderId: string, challenge: string, keyFile: string): string {
  const key = createPrivateKey(readFileSync(keyFile));
  return sign("sha256", possessionMessage(orderId, challenge), { key, dsaEncoding: "der" }).toString("base64");
}

/** An auditor account made by `ukey-server operator add` (server stopped), to read what the admin API shows. */
export interface Auditor {
  id: string;
  password: string;
  totpSecret: string;
}

/** Adds auditor `id` to a data directory through the real CLI. */
export function addAuditor(t: TempDir, dataDir: string, env: Record<string, string>, id = "auditor1"): Auditor {
  const password = `read only ${id} 7Qx!`;
  const r = runUkeyServer(["operator", "add", "--data-dir", dataDir, "--id", id, "--role", "auditor", "--password-file", t.write(`${id}.password`, password), "--json"], env);
  if (r.status !== 0) throw new Error(`operator add failed: ${r.stdout}${r.stderr}`);
  return { id, password, totpSecret: r.json<{ totpSecret: string }>().totpSecret };
}

/**
 * Reads the admin API of a running server as an auditor: signs in once
 * (password and the TOTP code of now) and keeps the session.
 */
export function adminReader(baseUrl: () => string, auditor: Auditor): <T>(path: string) => Promise<T> {
  let token: string | undefined;
  return async <T>(path: string) => {
    if (!token) {
      const { totpCodeAt } = await import("../../src/admin/operator-credentials.js");
      const res = await fetch(`${baseUrl()}/api/v1/admin/sign-in`, {
        method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify({ operatorId: auditor.id, password: auditor.password, totp: totpCodeAt(auditor.totpSecret, new Date()) }),
      });
      if (res.status !== 200) throw new Error(`auditor sign-in: ${res.status} ${await res.text()}`);
      token = ((await res.json()) as { token: string }).token;
    }
    const res = await fetch(`${baseUrl()}/api/v1/admin${path}`, { headers: { authorization: `Bearer ${token}` } });
    if (res.status !== 200) throw new Error(`GET /api/v1/admin${path}: ${res.status} ${await res.text()}`);
    return await res.json() as T;
  };
}

/** The six-digit codes of the messages of `purpose` in the server's outbox file (its SMS and e-mail stand-in), oldest first. */
export function outboxCodes(dataDir: string, purpose: string): string[] {
  const lines = readFileSync(join(dataDir, "outbox.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { text: string; purpose: string });
  return lines.filter((l) => l.purpose === purpose).map((l) => /(\d{6})/.exec(l.text)?.[1] ?? "");
}

/** A TCP port on 127.0.0.1 that was free a moment ago (listened on with port 0, then closed). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}
