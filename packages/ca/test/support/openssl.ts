import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Result of one openssl run. */
export interface OpensslResult {
  status: number;
  stdout: string;
  stderr: string;
}

/** Runs the real openssl CLI; fails loudly when it is missing. */
export function openssl(args: string[], input?: string | Buffer): OpensslResult {
  const r = spawnSync("openssl", args, { input, encoding: "buffer" });
  if (r.error) throw new Error(`openssl cannot run (install the openssl package): ${r.error.message}`);
  return { status: r.status ?? -1, stdout: r.stdout.toString("utf8"), stderr: r.stderr.toString("utf8") };
}

/** A temporary directory and a helper to write files into it. */
export function tempDir(prefix = "ukey-ca-"): { dir: string; write(name: string, data: string | Buffer): string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return {
    dir,
    write(name, data) {
      const p = join(dir, name);
      writeFileSync(p, data);
      return p;
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
