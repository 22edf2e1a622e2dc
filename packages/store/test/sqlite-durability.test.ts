import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { isUkeyError } from "@ukey/policy";
import { openStore, sqliteFile, type SqliteDatabase } from "../src/index.js";

const fixture = (name: string) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), "ukey-durability-"));
}

/** Spawns a fixture with tsx and collects its stdout lines as they arrive. */
function child(name: string, dataDir: string): { proc: ChildProcess; lines: string[]; waitFor(pred: (lines: string[]) => boolean): Promise<void>; exited: Promise<void> } {
  const proc = spawn(process.execPath, ["--import", "tsx", fixture(name), dataDir], { stdio: ["ignore", "pipe", "pipe"] });
  const lines: string[] = [];
  let partial = "";
  let stderr = "";
  const waiters: (() => void)[] = [];
  proc.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    const parts = (partial + chunk).split("\n");
    partial = parts.pop() ?? "";
    lines.push(...parts);
    for (const w of waiters.splice(0)) w();
  });
  proc.stderr!.setEncoding("utf8").on("data", (chunk: string) => { stderr += chunk; });
  const exited = new Promise<void>((resolve) => proc.on("exit", () => resolve()));
  return {
    proc, lines, exited,
    waitFor: (pred) => new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`child ${name} timed out; stderr: ${stderr}`)), 20_000);
      const check = () => {
        if (pred(lines)) { clearTimeout(timer); resolve(); return; }
        if (proc.exitCode !== null) { clearTimeout(timer); reject(new Error(`child ${name} exited ${proc.exitCode}; stderr: ${stderr}`)); return; }
        waiters.push(check);
      };
      proc.on("exit", () => { for (const w of waiters.splice(0)) w(); });
      check();
    }),
  };
}

describe("SQLite durability and the data directory", () => {
  test("every write reported committed survives kill -9", async () => {
    const dataDir = tempDir();
    try {
      const c = child("crash-writer.ts", dataDir);
      await c.waitFor((l) => l.filter((x) => x.startsWith("crash-")).length >= 150);
      c.proc.kill("SIGKILL");
      await c.exited;
      const printed = c.lines.filter((x) => x.startsWith("crash-"));
      // Reopening at once also shows that the killed process's lock is gone.
      const store = await openStore({ dataDir });
      try {
        const missing: string[] = [];
        for (const id of printed) if (!(await store.holders.get(id))) missing.push(id);
        assert.deepEqual(missing, [], `${missing.length} of ${printed.length} committed writes lost`);
        const v = await store.audit.verify();
        assert.equal(v.ok, true, JSON.stringify(v));
        assert.ok(v.entries >= printed.length);
      } finally {
        await store.close();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test("a second process is refused while the first holds the directory, and admitted once it is killed", async () => {
    const dataDir = tempDir();
    try {
      const c = child("lock-holder.ts", dataDir);
      await c.waitFor((l) => l.some((x) => x.startsWith("locked")));
      await assert.rejects(openStore({ dataDir }), (e: unknown) => {
        assert.ok(isUkeyError(e, "DATA_DIR_LOCKED"), String(e));
        assert.equal(e.detail, `held by process ${c.proc.pid}`);
        return true;
      });
      c.proc.kill("SIGKILL");
      await c.exited;
      const store = await openStore({ dataDir });
      await store.close();
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test("a second store in the same process is refused until the first closes", async () => {
    const dataDir = tempDir();
    try {
      const first = await openStore({ dataDir });
      await assert.rejects(openStore({ dataDir }), (e: unknown) => isUkeyError(e, "DATA_DIR_LOCKED"));
      // The failed attempt disturbed nothing.
      assert.equal((await first.audit.verify()).ok, true);
      await first.close();
      const second = await openStore({ dataDir });
      await second.close();
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  const corruptCases: { name: string; write: (file: string) => Promise<void> }[] = [
    { name: "garbage bytes", write: async (file) => writeFileSync(file, Buffer.alloc(16384, 0x5a)) },
    { name: "a text file", write: async (file) => writeFileSync(file, "this is not a database\n".repeat(200)) },
    { name: "a valid header followed by garbage pages", write: async (file) => {
      const dir = join(file, "..", "..");
      const s = await openStore({ dataDir: dir });
      await s.close();
      const bytes = readFileSync(file);
      for (let i = 100; i < bytes.length; i++) bytes[i] = (i * 7919) & 0xff;
      writeFileSync(file, bytes);
    } },
  ];
  for (const c of corruptCases) {
    test(`reports a corrupt database (${c.name}) and writes nothing`, async () => {
      const dataDir = tempDir();
      try {
        const file = sqliteFile(dataDir);
        mkdirSync(join(dataDir, "db"), { recursive: true });
        await c.write(file);
        const before = readFileSync(file);
        await assert.rejects(openStore({ dataDir }), (e: unknown) => {
          assert.ok(isUkeyError(e, "DATA_DIR_CORRUPT"), String(e));
          return true;
        });
        assert.ok(readFileSync(file).equals(before), "the file was changed");
        assert.equal(existsSync(`${file}-wal`), false);
        assert.equal(existsSync(`${file}-journal`), false);
      } finally {
        rmSync(dataDir, { recursive: true, force: true });
      }
    });
  }

  test("creates the database with its directory on first open", async () => {
    const dataDir = join(tempDir(), "fresh", "nested");
    try {
      const s = await openStore({ dataDir });
      await s.close();
      assert.ok(existsSync(sqliteFile(dataDir)));
    } finally {
      rmSync(join(dataDir, "..", ".."), { recursive: true, force: true });
    }
  });

  test("refuses the bare database inside its own transaction instead of deadlocking", async () => {
    const dataDir = tempDir();
    const store = await openStore({ dataDir });
    (store.db as SqliteDatabase).deadlockWaitMs = 200;
    try {
      await assert.rejects(store.transaction(async () => store.holders.get("x")), (e: unknown) => isUkeyError(e, "INTERNAL"));
      await assert.rejects(store.transaction(async () => store.transaction(async () => 1)), (e: unknown) => isUkeyError(e, "INTERNAL"));
      // And the database is usable afterwards.
      assert.equal(await store.holders.get("x"), undefined);
    } finally {
      await store.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test("queries outside a transaction wait for a running transaction", async () => {
    const dataDir = tempDir();
    const store = await openStore({ dataDir });
    try {
      const order: string[] = [];
      let release!: () => void;
      const gate = new Promise<void>((r) => { release = r; });
      const tx = store.transaction(async (r) => {
        await r.crls.nextNumber("k", 0);
        order.push("tx wrote");
        await gate;
        order.push("tx ends");
      });
      await new Promise((r) => setTimeout(r, 10));
      const read = store.db.query<{ n: number }>("SELECT last_number AS n FROM crl_numbers WHERE issuer_key_id = 'k'").then((rows) => {
        order.push(`read ${rows[0]?.n}`);
      });
      await new Promise((r) => setTimeout(r, 20));
      release();
      await Promise.all([tx, read]);
      assert.deepEqual(order, ["tx wrote", "tx ends", "read 1"]);
    } finally {
      await store.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
