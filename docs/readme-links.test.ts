import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { relative, resolve } from "node:path";

// Issue 16 (12): every relative link of the README and of docs/*.md points at
// a file inside the repository (a link to ../shared/DESIGN.md pointed outside).
const repo = resolve(import.meta.dirname, "..");

test("issue 16 (12): README.md's relative links resolve to files inside the repository", () => {
  const text = readFileSync(resolve(repo, "README.md"), "utf8");
  const links = [...text.matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)].map((m) => m[1]!).filter((l) => !/^[a-z]+:/i.test(l));
  assert.ok(links.length > 5, "the README links its docs");
  for (const l of links) {
    const target = resolve(repo, l);
    assert.ok(!relative(repo, target).startsWith(".."), `${l} points outside the repository`);
    assert.ok(existsSync(target), `${l} does not exist`);
  }
});
