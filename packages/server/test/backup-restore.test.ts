import { test, after } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, lstatSync, readdirSync, readFileSync, statSync, truncateSync, writeFileSync, copyFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { systemClock } from "@ukey/policy";
import { openStore } from "@ukey/store";
import { openBenchContext, prepareRenewalJobs } from "../../../bench/renewal-bench.js";
import { issuingCaBinding } from "../src/ca-runtime.js";
import { parseCertId } from "../src/cert-id.js";
import { askRunningServer } from "../src/control-channel.js";
import { dataDirLayout } from "../src/data-dir.js";
import { startUkeyServer, tempDir, ukeyServerBin, type RunningServer } from "./support/fixtures.js";
import { runUkeyServerHere } from "./support/in-process-cli.js";
import { OrderApi } from "./support/order-api.js";

// Issue 18, backup and restore: `ukey-server backup` beside a running server
// while renewals go on (through its control socket), `restore` into a new
// directory, and every refusal of the "bad input" changing nothing.
// The backup runs the real bin beside the real server; the restores, which
// no server takes part in, run the CLI's code in this process.

const t = tempDir("ukey-backup-");
const servers: RunningServer[] = [];
after(async () => {
  for (const s of servers) await s.stop();
  t.cleanup();
});

interface Run { status: number; stdout: string; stderr: string }

/** The real bin, asynchronously (the backup runs while the test drives renewals). */
function ukeyServer(args: string[], env: Record<string, string>): Promise<Run> {
  return new Promise((done) => {
    execFile(process.execPath, [ukeyServerBin, ...args], {
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", ...env }, encoding: "utf8", timeout: 180_000,
    }, (err, stdout, stderr) => done({ status: err ? (typeof err.code === "number" ? err.code : -1) : 0, stdout, stderr }));
  });
}

/** The CLI in this process (no start-up of its own): for the restores and the refusals, which each take a second of scrypt. */
const cli = (args: string[], env: Record<string, string>): Promise<Run> => runUkeyServerHere(args, env);

const ok = (r: Run, what: string) => assert.equal(r.status, 0, `${what}: ${r.stdout}${r.stderr}`);
const json = <T>(r: Run): T => JSON.parse(r.stdout.trim().split("\n").pop()!) as T;
const refusedWith = (r: Run, code: string, what: string) => {
  assert.equal(r.status, 1, `${what}: ${r.stdout}${r.stderr}`);
  assert.equal(json<{ error: { code: string } }>(r).error.code, code, `${what}: ${r.stdout}`);
};

/** Every file under `dir` (the control socket left out) with its SHA-256: what "changes nothing" compares. */
function treeDigest(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const st = lstatSync(p);
      if (st.isDirectory()) walk(p);
      else if (st.isFile()) out[p.slice(dir.length)] = createHash("sha256").update(readFileSync(p)).digest("hex");
    }
  };
  walk(dir);
  return out;
}

/** Names beside `dir` that a restore would have left (its staging directory). */
const leftovers = (dir: string) => readdirSync(dirname(dir)).filter((n) => n.includes(".restoring-"));

/** The CRL number of the CRL the server serves now (openssl reads it). */
async function crlNumber(url: string): Promise<number> {
  const der = Buffer.from(await (await fetch(`${url}/crl/issuing.crl`)).arrayBuffer());
  const r = spawnSync("openssl", ["crl", "-inform", "DER", "-noout", "-crlnumber"], { input: der, encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  const m = /crlNumber=(?:0x)?([0-9A-Fa-f]+)/.exec(r.stdout);
  assert.ok(m, r.stdout);
  return parseInt(m[1]!, 16);
}

/** The renewal API of a running server over HTTP, as the agent calls it. */
function httpOrderApi(url: string): OrderApi {
  return new OrderApi(async (o) => {
    const body = o.payload === undefined ? undefined : JSON.stringify(o.payload);
    const res = await fetch(`${url}${String(o.url)}`, {
      method: o.method ?? "GET",
      headers: { ...(o.headers as Record<string, string> | undefined), ...(body ? { "content-type": "application/json" } : {}) },
      ...(body ? { body } : {}),
    });
    const text = await res.text();
    return { statusCode: res.status, headers: Object.fromEntries(res.headers), json: () => JSON.parse(text) as unknown };
  });
}

test("a backup taken while renewals run restores every certificate reported before it, with an intact audit log and CRL numbers that never go back; each bad restore is refused and changes nothing", async () => {
  // A CA with the possession-only bench profile, holder B1 and certificates to renew (made in-process, then closed).
  const ctx = await openBenchContext(t.dir);
  const dataDir = ctx.layout.dir;
  const caPass = join(t.dir, "pass");
  const renewals = 200;
  const jobsFile = await prepareRenewalJobs(ctx, "B1", renewals, t.dir);
  await ctx.close();
  const jobs = (JSON.parse(readFileSync(jobsFile, "utf8")) as Array<{ certId: string; oldKey: string; csr: string }>).map((j, i) => {
    const keyFile = t.write(`old-${i}.key.pem`, j.oldKey);
    return { ...j, keyFile };
  });
  const backupPass = t.write("backup-passphrase", "backup passphrase, kept apart\n");
  const caEnv = { UKEY_CA_PASSPHRASE_FILE: caPass };
  // The backup command gets no CA passphrase: it can only succeed through the running server.
  const backupEnv = { UKEY_BACKUP_PASSPHRASE_FILE: backupPass };

  const server = await startUkeyServer(dataDir, caEnv);
  servers.push(server);
  // A revocation before the backup (of a certificate the load leaves alone): the CRL served now has a number the backup knows.
  const early = parseCertId(jobs.pop()!.certId).serial;
  ok(await cli(["revoke", "--data-dir", dataDir, "--serial", early, "--reason", "keyCompromise", "--json"], {}), "revoke before the backup");
  const crlBefore = await crlNumber(server.url);

  const api = httpOrderApi(server.url);
  const completed: Array<{ serial: string; at: number }> = [];
  let next = 0;
  let stop = false;
  const failures: string[] = [];
  const worker = async () => {
    while (!stop && next < jobs.length) {
      const job = jobs[next++]!;
      try {
        const { id, proved } = await api.startAndProve(job.certId, job.keyFile, "web");
        if (proved.status !== 200) throw new Error(`possession ${proved.status} ${JSON.stringify(proved.body)}`);
        const issued = await api.call<{ newCertificate?: { serial: string } }>("POST", `/api/v1/orders/${id}/csr`, { csr: job.csr });
        if (issued.status !== 200) throw new Error(`csr ${issued.status} ${JSON.stringify(issued.body)}`);
        const done = await api.call("POST", `/api/v1/orders/${id}/complete`);
        if (done.status !== 200) throw new Error(`complete ${done.status} ${JSON.stringify(done.body)}`);
        completed.push({ serial: issued.body.newCertificate!.serial, at: Date.now() });
      } catch (e) {
        failures.push(String(e));
      }
      // An agent's pace, not a flood: the load lasts through the backup on a slow machine.
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const load = Promise.all(Array.from({ length: 4 }, worker));
  while (completed.length < 20 && next < jobs.length) await new Promise((r) => setTimeout(r, 20));

  const reportedBefore = completed.map((c) => c.serial);
  const backupStarted = Date.now();
  const out = t.path("backups/ukey-backup.ukb");
  // The real bin, beside the running server: it has no CA passphrase, so only the server can run it.
  const backup = await ukeyServer(["backup", "--data-dir", dataDir, "--out", out, "--json"], backupEnv);
  ok(backup, "backup under load");
  const backupEnded = Date.now();
  const during = completed.filter((c) => c.at > backupStarted && c.at < backupEnded).length;
  const report = json<{ file: string; bytes: number; database: { certificates: number; auditSeq: number }; copyMs: number; totalMs: number }>(backup);
  assert.equal(report.file, out);
  assert.equal(statSync(out).mode & 0o777, 0o600, "the backup file is private");
  assert.ok(during > 0, "renewals completed while the backup ran");
  // Another revocation after the backup, and the CRL that says so: its number is not in the backup.
  const late = completed.at(-1)!.serial;
  ok(await cli(["revoke", "--data-dir", dataDir, "--serial", late, "--reason", "keyCompromise", "--json"], {}), "revoke after the backup");
  const crlAfter = await crlNumber(server.url);
  assert.ok(crlAfter > crlBefore);
  stop = true;
  await load;
  assert.deepEqual(failures, [], "every renewal of the load completed");
  console.log(`# backup under load: ${reportedBefore.length} renewals reported before it began, ${during} completed while it ran (${backupEnded - backupStarted} ms end to end, `
    + `database copy ${report.copyMs} ms, ${report.bytes} bytes, ${report.database.certificates} certificates); ${completed.length} renewals in all`);

  // Restore into a new directory (no server there).
  const restored = t.path("restored");
  const r = await cli(["restore", "--data-dir", restored, "--in", out, "--json"], backupEnv);
  console.log(`# restore: ${r.stdout.length ? json<{ totalMs: number }>(r).totalMs : "?"} ms`);
  ok(r, "restore");
  const rr = json<{ crlNumbers: Record<string, number>; replaced: string | null; database: { auditSeq: number } }>(r);
  assert.equal(rr.replaced, null);
  assert.deepEqual(leftovers(restored), []);
  const verify = await cli(["audit", "verify", "--data-dir", restored, "--json"], caEnv);
  ok(verify, "audit verify on the restored directory");
  const verified = json<{ entries: number }>(verify);
  assert.equal(verified.entries, rr.database.auditSeq + 1, "the restored log ends with the restore's own entry");
  {
    const store = await openStore({ dataDir: restored, ca: issuingCaBinding(dataDirLayout(restored)), clock: systemClock });
    try {
      const missing: string[] = [];
      for (const s of reportedBefore) if (!(await store.certificates.get(s))) missing.push(s);
      assert.deepEqual(missing, [], "every certificate reported before the backup began is in the restored database");
      assert.equal((await store.certificates.get(early))?.status, "revoked");
      const entries = await store.db.query<{ action: string }>("SELECT action FROM audit_log ORDER BY seq DESC LIMIT 1");
      assert.equal(entries[0]?.action, "data.restored");
    } finally {
      await store.close();
    }
  }
  // The restored CA serves, and its next CRL's number is past every CRL the old one signed, the one after the backup included.
  const second = await startUkeyServer(restored, caEnv);
  servers.push(second);
  assert.equal((await fetch(`${second.url}/readyz`)).status, 200);
  const crlRestored = await crlNumber(second.url);
  assert.ok(crlRestored > crlAfter, `restored CRL number ${crlRestored} > ${crlAfter}`);
  await second.stop();

  // Bad input: each refused with its code, and nothing changed.
  const restoredDigest = treeDigest(restored);
  const truncated = t.path("truncated.ukb");
  copyFileSync(out, truncated);
  truncateSync(truncated, statSync(out).size - 1000);
  const tampered = t.path("tampered.ukb");
  const bytes = readFileSync(out);
  bytes[bytes.length - 5000] = bytes[bytes.length - 5000]! ^ 0x01;
  writeFileSync(tampered, bytes);
  const headerTampered = t.path("header-tampered.ukb");
  const hb = readFileSync(out);
  const at = hb.indexOf(Buffer.from('"createdAt":"'));
  hb[at + 14] = hb[at + 14] === 0x31 ? 0x32 : 0x31;
  writeFileSync(headerTampered, hb);
  const notABackup = t.write("not-a-backup.ukb", "hello, I am not a backup\n");
  const wrongPass = t.write("wrong-passphrase", "not the passphrase of that backup\n");
  const other = tempDir("ukey-backup-other-");
  const otherCa = { dataDir: other.path("data") };
  ok(await cli(["init", "--data-dir", otherCa.dataDir, "--json"], { UKEY_CA_PASSPHRASE_FILE: other.write("ca-passphrase", "another CA's passphrase\n") }), "init another CA");
  const otherDigest = treeDigest(otherCa.dataDir);
  try {
    const fresh = (n: string) => t.path(`fresh-${n}`);
    const refusals: Run[] = [];
    for (const [args, env] of [
      [["restore", "--data-dir", fresh("t"), "--in", truncated, "--json"], backupEnv],
      [["restore", "--data-dir", fresh("x"), "--in", tampered, "--json"], backupEnv],
      [["restore", "--data-dir", fresh("h"), "--in", headerTampered, "--json"], backupEnv],
      [["restore", "--data-dir", fresh("n"), "--in", notABackup, "--json"], backupEnv],
      [["restore", "--data-dir", fresh("p"), "--in", out, "--json"], { UKEY_BACKUP_PASSPHRASE_FILE: wrongPass }],
      [["restore", "--data-dir", otherCa.dataDir, "--in", out, "--json"], backupEnv],
      // Over the running server's directory.
      [["restore", "--data-dir", dataDir, "--in", out, "--json"], backupEnv],
      // Over the restored directory, which now has the restore's entry and a CRL the backup lacks.
      [["restore", "--data-dir", restored, "--in", out, "--json"], backupEnv],
      [["restore", "--data-dir", fresh("s"), "--in", out, "--json"], {}],
      [["backup", "--data-dir", dataDir, "--out", out, "--json"], backupEnv],
    ] as Array<[string[], Record<string, string>]>) refusals.push(await cli(args, env));
    refusedWith(refusals[0]!, "BACKUP_TRUNCATED", "truncated");
    refusedWith(refusals[1]!, "BACKUP_TAMPERED", "a payload byte changed");
    refusedWith(refusals[2]!, "BACKUP_TAMPERED", "a header byte changed");
    refusedWith(refusals[3]!, "BACKUP_DAMAGED", "not a backup");
    refusedWith(refusals[4]!, "BACKUP_PASSPHRASE_WRONG", "wrong passphrase");
    refusedWith(refusals[5]!, "BACKUP_OTHER_CA", "another CA's directory");
    refusedWith(refusals[6]!, "DATA_DIR_LOCKED", "over a running server");
    refusedWith(refusals[7]!, "BACKUP_OLDER_THAN_DATABASE", "over a newer database");
    refusedWith(refusals[8]!, "SECRET_FILE_REQUIRED", "no passphrase");
    assert.equal(refusals[9]!.status, 2, "a backup never replaces a file");
    for (const n of ["t", "x", "h", "n", "p", "s"]) assert.equal(existsSync(fresh(n)), false, `nothing made for ${n}`);
    assert.deepEqual(treeDigest(restored), restoredDigest);
    assert.deepEqual(treeDigest(otherCa.dataDir), otherDigest);
    assert.deepEqual(leftovers(restored), []);
    assert.deepEqual(leftovers(otherCa.dataDir), []);
    // restore is never run by a server for its control socket's callers.
    const viaSocket = await askRunningServer(dataDir, ["restore", "--data-dir", dataDir, "--in", out, "--backup-passphrase-file", backupPass, "--json"]);
    assert.equal(viaSocket?.code, 1);
    assert.equal((JSON.parse(viaSocket!.out.trim()) as { error: { code: string } }).error.code, "DATA_DIR_LOCKED");
    // The running server still serves from its own directory.
    assert.equal((await fetch(`${server.url}/readyz`)).status, 200);
  } finally {
    other.cleanup();
  }
});
