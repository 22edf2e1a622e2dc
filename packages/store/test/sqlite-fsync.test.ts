import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

// What makes a commit durable here is our own fdatasync of the WAL file
// (SQLite runs with synchronous=NORMAL so that the sync leaves the event
// loop). The kill -9 test cannot see a missing sync — the page cache
// survives a killed process — so this one watches the system calls.
test("every reported commit is preceded by an fdatasync of the WAL file", () => {
  const dir = mkdtempSync(join(tmpdir(), "ukey-fsync-"));
  try {
    const child = resolve(import.meta.dirname, "support/commit-loop.ts");
    const r = spawnSync("strace", ["-f", "-y", "-e", "trace=fdatasync,write", "-e", "signal=none", process.execPath, "--import", "tsx", child, dir], { encoding: "utf8", timeout: 60_000 });
    assert.equal(r.error, undefined, "strace is needed for this test (scripts/ensure-system-deps.sh installs it)");
    assert.equal(r.status, 0, r.stderr.slice(-2000));
    const lines = r.stderr.split("\n");
    // With several threads strace may split a call into "<unfinished ...>" and "<... resumed>" lines;
    // the call's first line carries the file, so that is what is counted.
    const walSync = (l: string) => /fdatasync\(\d+<[^>]*ukey\.sqlite-wal>/.test(l);
    // The child writes "committed i" to stdout only after transaction() resolved.
    for (let i = 0; i < 5; i++) {
      const reported = lines.findIndex((l) => l.includes(`committed ${i}`) && /write\(1/.test(l));
      assert.ok(reported > 0, `commit ${i} was reported`);
      const syncs = lines.slice(0, reported).filter(walSync).length;
      assert.ok(syncs >= i + 1, `before commit ${i} was reported the WAL was synced ${syncs} times`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
