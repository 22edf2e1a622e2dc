import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, statSync } from "node:fs";
import { createInterface } from "node:readline";
import { tempDir, ukeyServerBin } from "./support/fixtures.js";

// The database directory is 0700 and every file the store writes (the
// database, its WAL, the lock owner's pid) 0600, whatever the umask the
// operator's shell has: the CLI runs under the caller's umask.
const t = tempDir();
after(() => t.cleanup());
const pass = t.write("ca-passphrase", "correct horse battery staple\n");
const env = { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", UKEY_CA_PASSPHRASE_FILE: pass };

/** `sh -c 'umask U; exec node ukey-server ARGS'`: the bin under that umask, as an operator's shell runs it. */
function underUmask(umask: number, args: string[]): [string, string[]] {
  return ["sh", ["-c", `umask ${umask.toString(8).padStart(3, "0")} && exec "$0" "$@"`, process.execPath, ukeyServerBin, ...args]];
}

const mode = (path: string) => (statSync(path).mode & 0o777).toString(8);

for (const umask of [0o022, 0o000]) {
  test(`with umask ${umask.toString(8).padStart(3, "0")}: db/ is 0700 and the database, its WAL and the owner file 0600`, async () => {
    const dataDir = t.path(`data-${umask}`);
    const [cmd, args] = underUmask(umask, ["init", "--data-dir", dataDir, "--json"]);
    const init = spawnSync(cmd, args, { env, encoding: "utf8" });
    assert.equal(init.status, 0, init.stdout + init.stderr);
    const db = `${dataDir}/db/ukey.sqlite`;
    assert.equal(mode(`${dataDir}/db`), "700");
    assert.equal(mode(db), "600");

    // While a server runs: the WAL and the owner file exist.
    const [startCmd, startArgs] = underUmask(umask, ["start", "--data-dir", dataDir, "--port", "0", "--json"]);
    const server = spawn(startCmd, startArgs, { env, stdio: ["ignore", "pipe", "pipe"] });
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("the server did not start")), 60_000);
        createInterface({ input: server.stdout! }).on("line", (line) => {
          if (line.includes('"event":"listening"')) { clearTimeout(timer); resolve(); }
        });
        server.once("exit", (code) => { clearTimeout(timer); reject(new Error(`the server exited ${code}`)); });
      });
      assert.deepEqual(
        { dir: mode(`${dataDir}/db`), db: mode(db), wal: mode(`${db}-wal`), owner: mode(`${db}.owner`) },
        { dir: "700", db: "600", wal: "600", owner: "600" });
    } finally {
      await new Promise<void>((resolve) => { server.once("exit", () => resolve()); server.kill("SIGTERM"); });
    }
  });
}

test("a data directory of an earlier release (db/ 0755, ukey.sqlite 0644) is made private when it is opened", () => {
  const dataDir = t.path("data-earlier");
  const [cmd, args] = underUmask(0o022, ["init", "--data-dir", dataDir, "--json"]);
  assert.equal(spawnSync(cmd, args, { env, encoding: "utf8" }).status, 0);
  chmodSync(`${dataDir}/db`, 0o755);
  chmodSync(`${dataDir}/db/ukey.sqlite`, 0o644);
  const [vCmd, vArgs] = underUmask(0o022, ["audit", "verify", "--data-dir", dataDir, "--json"]);
  const r = spawnSync(vCmd, vArgs, { env, encoding: "utf8" });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.equal(mode(`${dataDir}/db`), "700");
  assert.equal(mode(`${dataDir}/db/ukey.sqlite`), "600");
});
