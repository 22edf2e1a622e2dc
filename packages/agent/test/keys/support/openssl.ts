import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Runs a command and returns its stdout; throws with its output when it fails (loudly: these tools are required). */
export function run(cmd: string, args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv; stderr?: boolean } = {}): string {
  const r = spawnSync(cmd, args, { encoding: "utf8", input: opts.input, env: opts.env ?? process.env });
  if (r.error || r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.status}): ${r.error?.message ?? ""}${r.stderr}${r.stdout}`);
  return opts.stderr ? `${r.stdout}${r.stderr}` : r.stdout;
}

/** A throw-away directory, removed by cleanup(). */
export function tempDir(prefix = "ukey-keys-"): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A test CA made with openssl: issues certificates for CSRs (PEM) with a given serial. */
export class OpenSslCa {
  readonly dir: string;
  readonly certPem: string;
  #n = 0;

  constructor(dir: string) {
    this.dir = dir;
    run("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", join(dir, "ca.key"),
      "-out", join(dir, "ca.pem"), "-days", "30", "-subj", "/CN=Test Agent CA"]);
    this.certPem = readFileSync(join(dir, "ca.pem"), "utf8");
  }

  /** Issues a certificate for `csrPem`; returns its DER. */
  issue(csrPem: string, serialHex: string, subject = "/CN=Zhang San/O=Example Bank"): Buffer {
    const n = ++this.#n;
    const csr = join(this.dir, `r${n}.csr`);
    const out = join(this.dir, `c${n}.der`);
    writeFileSync(csr, csrPem);
    run("openssl", ["x509", "-req", "-in", csr, "-CA", join(this.dir, "ca.pem"), "-CAkey", join(this.dir, "ca.key"),
      "-set_serial", `0x${serialHex}`, "-days", "10", "-subj", subject, "-outform", "DER", "-out", out]);
    return readFileSync(out);
  }
}
