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
