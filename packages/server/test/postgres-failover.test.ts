import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmodSync, cpSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { errorCodes, isUkeyError, systemClock } from "@ukey/policy";
import { openStore } from "@ukey/store";
import { openBenchContext, prepareRenewalJobs } from "../../../bench/renewal-bench.js";
import { runCli } from "../src/cli.js";
import { signPossession, startUkeyServer, tempDir, type RunningServer, freePort } from "./support/fixtures.js";
import { OrderApi } from "./support/order-api.js";

// Issue 18, part 3: PostgreSQL failover. A primary and a synchronous
// streaming standby (scripts/ensure-postgres-pair.sh, two private clusters);
// two `ukey-server start` instances on a connection string that lists both
// hosts with target_session_attrs=read-write; renewals under load over HTTP;
// the primary is killed (SIGKILL, every process of it), the standby promoted
// (pg_ctl promote), and the instances carry on without a restart. And a
// standby alone is refused: it cannot take writes.

const script = join(import.meta.dirname, "../../../scripts/ensure-postgres-pair.sh");
const t = tempDir("ukey-failover-");
// The clusters run as the postgres user: their directory is outside the private temporary directory.
const pairDir = mkdtempSync("/tmp/ukey-pg-pair-");
chmodSync(pairDir, 0o755);
let pairEnv: Record<string, string>;
let url = "";
let ports: { primary: number; standby: number };
const servers: RunningServer[] = [];


function pair(action: "start" | "stop"): string {
  try {
    return execFileSync("bash", [script, action], { env: { ...process.env, ...pairEnv }, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 180_000 });
  } catch (e) {
    throw new Error(`\n\n*** PostgreSQL IS REQUIRED: ${script} ${action} failed: ${(e as Error).message}\n${String((e as { stderr?: unknown }).stderr ?? "")}\n`);
  }
}

async function sql<T>(port: number, text: string, params: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ connectionString: `postgres://postgres@127.0.0.1:${port}/postgres` });
  await c.connect();
  try {
    return (await c.query(text, params)).rows as T[];
  } finally {
    await c.end();
  }
}

/** The CLI in this process (no start-up of its own), for a start that must be refused. Fails after 60 s if it serves instead. */
async function cli(args: string[], env: Record<string, string>): Promise<{ status: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const status = await Promise.race([
    runCli(args, { out: (x) => { out += x; }, err: (x) => { err += x; }, env, clock: systemClock }),
    new Promise<number>((_, reject) => setTimeout(() => reject(new Error(`ukey-server ${args[0]} was not refused within 60 s: ${out}${err}`)), 60_000).unref()),
  ]);
  return { status, out, err };
}

/** The renewal API of a running server over HTTP, as the agent calls it. */
function httpOrderApi(base: string): OrderApi {
  return new OrderApi(async (o) => {
    const body = o.payload === undefined ? undefined : JSON.stringify(o.payload);
    const res = await fetch(`${base}${String(o.url)}`, {
      method: o.method ?? "GET",
      headers: { ...(o.headers as Record<string, string> | undefined), ...(body ? { "content-type": "application/json" } : {}) },
      ...(body ? { body } : {}),
    });
    const text = await res.text();
    return { statusCode: res.status, headers: Object.fromEntries(res.headers), json: () => JSON.parse(text) as unknown };
  });
}

before(async () => {
  ports = { primary: await freePort(), standby: await freePort() };
  pairEnv = { UKEY_PG_PAIR_DIR: pairDir, UKEY_PG_PAIR_PRIMARY_PORT: String(ports.primary), UKEY_PG_PAIR_STANDBY_PORT: String(ports.standby) };
  url = pair("start").trim().split("\n").pop()!;
  assert.equal(url, `postgres://postgres@127.0.0.1:${ports.primary},127.0.0.1:${ports.standby}/postgres?target_session_attrs=read-write`);
  const [rep] = await sql<{ sync_state: string }>(ports.primary, "SELECT sync_state FROM pg_stat_replication");
  assert.equal(rep?.sync_state, "sync", "the standby replicates synchronously");
});

after(async () => {
  for (const s of servers) await s.stop();
  // No cluster outlives the test, whatever happened in it.
  pair("stop");
  rmSync(pairDir, { recursive: true, force: true });
  rmSync(`${pairDir}.lock`, { force: true });
  t.cleanup();
});

test("the host list is tried in order and the writable server kept; a standby alone is refused with DATABASE_READ_ONLY", async () => {
  // The standby listed first: it answers, but cannot write, so the primary behind it is chosen.
  const reversed = `postgres://postgres@127.0.0.1:${ports.standby},127.0.0.1:${ports.primary}/postgres?target_session_attrs=read-write`;
  const store = await openStore({ databaseUrl: reversed });
  try {
    const [where] = await store.db.query<{ port: number }>("SELECT inet_server_port() AS port");
    assert.equal(Number(where!.port), ports.primary);
  } finally {
    await store.close();
  }
  // A connection string that names only the standby: it answers, but no server on it can write.
  const standbyOnly = `postgres://postgres@127.0.0.1:${ports.standby}/postgres`;
  await assert.rejects(openStore({ databaseUrl: standbyOnly }), (e: unknown) => isUkeyError(e, "DATABASE_READ_ONLY"));
});

test("two instances on the two-host URL carry on after the primary is killed and the standby promoted: every renewal reported completed is there", async () => {
  const env = { UKEY_DATABASE_URL: url };
  const ctx = await openBenchContext(t.dir, "p256", { env });
  const renewals = 120;
  const jobsFile = await prepareRenewalJobs(ctx, "B1", renewals, t.dir);
  await ctx.close();
  const jobs = (JSON.parse(readFileSync(jobsFile, "utf8")) as Array<{ certId: string; oldKey: string; csr: string }>)
    .map((j, i) => ({ ...j, keyFile: t.write(`old-${i}.key.pem`, j.oldKey) }));
  // Each instance its own copy of the data directory (config, CA files), as on two hosts.
  const dataDirs = [join(t.dir, "data"), join(t.dir, "data-2")];
  cpSync(dataDirs[0]!, dataDirs[1]!, { recursive: true });
  const serverEnv = { UKEY_CA_PASSPHRASE_FILE: join(t.dir, "pass"), UKEY_DATABASE_URL: url };

  // "A standby that is behind": an instance whose URL names only the standby is refused at start, and changes nothing;
  // so is a malformed connection string.
  const counts = () => sql<{ a: number; s: number; c: number }>(ports.primary,
    "SELECT (SELECT COUNT(*) FROM audit_log)::int AS a, (SELECT COUNT(*) FROM schema_version)::int AS s, (SELECT COUNT(*) FROM certificates)::int AS c");
  const before = await counts();
  const refused = await cli(["start", "--data-dir", dataDirs[1]!, "--port", "0", "--json"],
    { ...serverEnv, UKEY_DATABASE_URL: `postgres://postgres@127.0.0.1:${ports.standby}/postgres` });
  assert.equal(refused.status, 1, refused.out + refused.err);
  const problem = (JSON.parse(refused.out.trim().split("\n").pop()!) as { error: { code: string; message: { en: string } } }).error;
  assert.equal(problem.code, "DATABASE_READ_ONLY");
  assert.match(problem.message.en, new RegExp(`no primary that takes writes among 127\\.0\\.0\\.1:${ports.standby}\\. Nothing was written`));
  // A connection string with more ports than hosts: refused at start, before any connection.
  const bad = await cli(["start", "--data-dir", dataDirs[1]!, "--port", "0", "--json"],
    { ...serverEnv, UKEY_DATABASE_URL: `host=127.0.0.1,127.0.0.1 port=${ports.primary},${ports.standby},5432 dbname=postgres user=postgres password=hunter2` });
  assert.equal(bad.status, 1, bad.out + bad.err);
  assert.equal((JSON.parse(bad.out.trim().split("\n").pop()!) as { error: { code: string } }).error.code, "DATABASE_URL_INVALID");
  assert.doesNotMatch(bad.out + bad.err, /hunter2/);
  assert.deepEqual(await counts(), before, "nothing changed");

  const logs = ["", ""];
  servers.push(...await Promise.all(dataDirs.map((d) => startUkeyServer(d, serverEnv))));
  for (const [i, s] of servers.entries()) {
    s.child.stdout!.on("data", (x) => { logs[i] += String(x); });
    s.child.stderr!.on("data", (x) => { logs[i] += String(x); });
  }
  const pids = servers.map((s) => s.child.pid);
  try {
    const calls: Array<{ at: number; ok: boolean; code?: string }> = [];
    const completed: Array<{ serial: string; at: number }> = [];
    const unexplained: string[] = [];
    let next = 0;
    let stop = false;
    const step = async <T>(what: Promise<{ status: number; body: T & { code?: string } }>) => {
      let a;
      try {
        a = await what;
      } catch (e) {
        // No HTTP answer at all: the instance itself failed, which this test forbids.
        unexplained.push(String(e));
        calls.push({ at: Date.now(), ok: false, code: "NO_ANSWER" });
        return undefined;
      }
      calls.push({ at: Date.now(), ok: a.status < 300, ...(a.status < 300 ? {} : { code: String(a.body.code) }) });
      return a.status < 300 ? a : undefined;
    };
    const worker = async (w: number) => {
      const api = httpOrderApi(servers[w % 2]!.url);
      while (!stop && next < jobs.length) {
        const job = jobs[next++]!;
        // As the agent does: a step refused for a passing cause is sent again (a CSR for the same key, a completion:
        // the server answers with the result if it had already done it); a proof needs a fresh challenge, so the
        // order is resumed (POST /orders answers the same order).
        let id: string | undefined;
        let serial: string | undefined;
        for (let attempt = 0; !stop; attempt++) {
          if (attempt > 0) await new Promise((r) => setTimeout(r, 100));
          if (!id) {
            const started = await step(api.start(job.certId, "web"));
            if (!started) continue;
            const { challenge } = started.body;
            const proved = await step(api.call("POST", `/api/v1/orders/${started.body.id}/possession`, {
              challenge: challenge.value, signature: signPossession(started.body.id, challenge.value, job.keyFile),
            }));
            if (!proved) continue;
            id = started.body.id;
          }
          if (!serial) {
            const issued = await step(api.call<{ newCertificate?: { serial: string } }>("POST", `/api/v1/orders/${id}/csr`, { csr: job.csr }));
            if (!issued) continue;
            serial = issued.body.newCertificate!.serial;
          }
          if (!await step(api.call("POST", `/api/v1/orders/${id}/complete`))) continue;
          completed.push({ serial, at: Date.now() });
          break;
        }
      }
    };
    const load = Promise.all(Array.from({ length: 4 }, (_, w) => worker(w)));
    let killedAt = 0;
    let promoteAt = 0;
    let promotedAt = 0;
    let reportedBefore: string[] = [];
    try {
      const waitFor = async (cond: () => boolean, what: string, ms = 60_000) => {
        const deadline = Date.now() + ms;
        while (!cond()) {
          if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
          await new Promise((r) => setTimeout(r, 20));
        }
      };
      await waitFor(() => completed.length >= 20, "20 renewals before the failover");

      // The primary's machine dies: the postmaster and every backend, at once.
      const postmaster = Number(readFileSync(join(pairDir, "primary/postmaster.pid"), "utf8").split("\n")[0]);
      const children = execFileSync("sh", ["-c", `pgrep -P ${postmaster} || true`], { encoding: "utf8" }).split("\n").filter(Boolean).map(Number);
      killedAt = Date.now();
      for (const pid of [postmaster, ...children]) {
        try { process.kill(pid, "SIGKILL"); } catch { /* already gone */ }
      }
      reportedBefore = completed.map((c) => c.serial);
      // Until a standby is promoted, the instances are not ready, and say why.
      await waitFor(() => calls.some((c) => c.at > killedAt && !c.ok), "a refusal after the kill", 30_000);
      const readyDuring = await fetch(`${servers[0]!.url}/readyz`);
      assert.equal(readyDuring.status, 503);
      const readyBody = await readyDuring.text();
      const readyCode = (JSON.parse(readyBody) as { code: string }).code;
      assert.ok(["DATABASE_READ_ONLY", "DATABASE_UNAVAILABLE"].includes(readyCode), readyCode);
      // The hosts tried and the driver's message stay in the server's log: the answer names the log line.
      for (const port of [...url.matchAll(/:(\d{4,5})/g)].map((m) => m[1]!)) assert.ok(!readyBody.includes(port), `the answer names no database port: ${readyBody}`);
      // What a cluster manager or an operator takes to decide: a fixed second here, so the window is seen and measured.
      await new Promise((r) => setTimeout(r, 1000));
      promoteAt = Date.now();
      const promote = [pgCtl(), "-D", join(pairDir, "standby"), "-w", "promote"];
      // The clusters belong to the postgres user when the tests run as root (as the pair script makes them).
      if (process.getuid?.() === 0) execFileSync("runuser", ["-u", "postgres", "--", ...promote], { stdio: "pipe" });
      else execFileSync(promote[0]!, promote.slice(1), { stdio: "pipe" });
      promotedAt = Date.now();

      await waitFor(() => completed.filter((c) => c.at > promotedAt).length >= 20, "20 renewals after the promotion");
    } finally {
      stop = true;
      await load;
    }

    // Every renewal a client was told had completed is on the new primary.
    const serials = completed.map((c) => c.serial);
    const present = await sql<{ serial: string }>(ports.standby, "SELECT serial FROM certificates WHERE serial = ANY($1::text[])", [serials]);
    assert.equal(present.length, serials.length, "every renewal reported completed is present after the failover");
    assert.ok(reportedBefore.every((s) => present.some((p) => p.serial === s)));

    // The same processes serve, ready again.
    assert.deepEqual(servers.map((s) => s.child.pid), pids);
    assert.ok(servers.every((s) => s.child.exitCode === null), "no instance exited or restarted");
    for (const s of servers) assert.equal((await fetch(`${s.url}/readyz`)).status, 200);

    // What clients saw: catalogue codes only, each one the agent retries or explains.
    assert.deepEqual(unexplained, [], "every request got an HTTP answer");
    const failed = calls.filter((c) => !c.ok);
    const byCode: Record<string, number> = {};
    for (const c of failed) byCode[c.code!] = (byCode[c.code!] ?? 0) + 1;
    for (const code of Object.keys(byCode)) assert.ok((errorCodes as readonly string[]).includes(code), `${code} is a catalogue code`);
    for (const code of Object.keys(byCode)) {
      assert.ok(["DATABASE_UNAVAILABLE", "DATABASE_READ_ONLY"].includes(code), `clients saw ${code} (${byCode[code]}x): only the database's unavailability is expected`);
    }
    const firstFailure = failed[0]?.at ?? killedAt;
    const firstSuccessAfter = calls.find((c) => c.ok && c.at > firstFailure)!.at;
    const outage = (firstSuccessAfter - firstFailure) / 1000;
    const promoteToService = (firstSuccessAfter - promotedAt) / 1000;
    assert.ok(promoteToService < 5, `service came back ${promoteToService} s after the promotion`);
    console.log(`# PostgreSQL failover: ${completed.length} renewals reported completed (${reportedBefore.length} before the kill), ${present.length} present after it; `
      + `${outage.toFixed(2)} s without service (first failed to first succeeded request; the promotion came ${((promoteAt - killedAt) / 1000).toFixed(2)} s after the kill `
      + `and took ${((promotedAt - promoteAt) / 1000).toFixed(2)} s; service ${promoteToService.toFixed(2)} s after it); `
      + `errors seen by clients: ${JSON.stringify(byCode)} of ${calls.length} requests`);
  } catch (e) {
    for (const [i, l] of logs.entries()) console.log(`# instance ${i} (exit ${servers[i]!.child.exitCode}) log:\n${l.split("\n").slice(-40).join("\n")}`);
    throw e;
  }
});

/** pg_ctl of the newest PostgreSQL installed (Debian keeps it out of PATH), as the pair script finds it. */
function pgCtl(): string {
  const dir = execFileSync("sh", ["-c", "ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r | head -n 1"], { encoding: "utf8" }).trim();
  return dir ? `${dir}/pg_ctl` : "pg_ctl";
}
