import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";

/** The repository root. */
export const repoRoot = resolve(import.meta.dirname, "../../../..");

/** The fenced sh blocks marked `<!-- example: group -->` in docs/<doc>, in order. */
export function docExamples(doc: string, group: string): string[] {
  const text = readFileSync(resolve(repoRoot, "docs", doc), "utf8");
  const re = new RegExp(`<!-- example: ${group} -->\\s*\`\`\`sh\\n([\\s\\S]*?)\`\`\``, "g");
  return [...text.matchAll(re)].map((m) => m[1]!);
}

/**
 * Runs a doc example as a reader would: bash with -euo pipefail in `dir`,
 * the repository's bins (ukey-server) on PATH, plus `env`. Fails the test
 * with the script and its output when it exits non-zero; returns stdout.
 */
export function runExample(dir: string, script: string, env: Record<string, string> = {}): string {
  const r = spawnSync("bash", ["-euo", "pipefail", "-c", script], {
    cwd: dir, encoding: "utf8", timeout: 120_000,
    env: { PATH: `${resolve(repoRoot, "node_modules/.bin")}:${process.env.PATH}`, HOME: process.env.HOME ?? "/tmp", ...env },
  });
  assert.equal(r.status, 0, `example failed:\n${script}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`);
  return r.stdout;
}
