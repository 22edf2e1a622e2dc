import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";

// Issue 18, service definitions: the systemd unit of deploy/systemd is
// checked by systemd's own tools. `systemd-analyze verify` needs no running
// systemd; `security --offline=true` scores the unit file itself. Debian's
// systemd package comes from scripts/ensure-system-deps.sh; without it this
// test fails and says so.

const unit = resolve(import.meta.dirname, "../../../../deploy/systemd/ukey-server.service");

function analyze(args: string[]): { status: number; out: string } {
  const r = spawnSync("systemd-analyze", args, { encoding: "utf8" });
  if (r.error) throw new Error(`*** systemd-analyze IS REQUIRED (Debian package systemd, scripts/ensure-system-deps.sh): ${r.error.message} ***`);
  return { status: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

/** The unit's settings: key -> every value given (a key may repeat). */
function settings(): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const line of readFileSync(unit, "utf8").split("\n")) {
    const kv = /^([A-Za-z]+)=(.*)$/.exec(line.trim());
    if (kv) m.set(kv[1]!, [...(m.get(kv[1]!) ?? []), kv[2]!]);
  }
  return m;
}

test("the ukey-server unit passes systemd-analyze verify", () => {
  const r = analyze(["verify", unit]);
  assert.equal(r.status, 0, r.out);
  assert.equal(r.out.trim(), "", `verify printed warnings: ${r.out}`);
});

test("the ukey-server unit's exposure by systemd-analyze security is low, and it has the hardening the issue names", () => {
  const r = analyze(["security", "--offline=true", "--no-pager", unit]);
  const m = /Overall exposure level for ukey-server\.service: ([0-9.]+) (\w+)/.exec(r.out);
  assert.ok(m, r.out);
  const exposure = Number(m[1]);
  const notMet = r.out.split("\n").filter((l) => l.startsWith("✗")).map((l) => l.replace(/\s{2,}.*$/, "").slice(2));
  console.log(`# systemd-analyze security: exposure ${exposure} ${m[2]} (0 is best, 10 worst); not set: ${notMet.join(", ")}`);
  // 1.4 today; what is left is explained in the unit (network access, V8's executable memory, setrlimit).
  assert.ok(exposure <= 1.5, `exposure ${exposure}: ${r.out}`);
  const s = settings();
  const one = (k: string) => s.get(k)?.join(" ");
  assert.equal(one("User"), "ukey");
  assert.equal(one("ProtectSystem"), "strict");
  assert.equal(one("NoNewPrivileges"), "yes");
  assert.equal(one("StateDirectory"), "ukey", "the data directory is the one writable place (StateDirectory)");
  assert.deepEqual(s.get("ReadWritePaths"), ["-/var/backups/ukey"], "and the backup folder");
  assert.match(one("LoadCredential") ?? "", /^ca-passphrase:/);
  assert.match(one("Environment") ?? "", /UKEY_CA_PASSPHRASE_FILE=%d\/ca-passphrase/, "the passphrase file is the credential's copy");
  assert.match(one("ExecStart") ?? "", /ukey-server\.js start --data-dir \/var\/lib\/ukey$/);
});
