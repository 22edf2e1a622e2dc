import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { get as httpsGet } from "node:https";
import { systemClock } from "@ukey/policy";
import { openServerContext } from "../src/server-context.js";
import { addHolder, initialisedDataDir, keyArgs, opensslCsr, startUkeyServer, tempDir, ukeyServerBin } from "./support/fixtures.js";
import { runUkeyServerHere } from "./support/in-process-cli.js";

// Issue 18, part 5: `ukey-server reload` and SIGHUP make a running server
// take over config.json's profiles and delivery; an invalid file or a
// change that needs a restart is refused and changes nothing. The real bin
// runs the server and the first reload; the other commands run ukey-server's
// command code in this process (runCli), which reaches the running server
// through its control socket exactly as the bin does, without a process
// start of its own.

interface Run { status: number; stdout: string; stderr: string }

function ukeyServer(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((done) => {
    execFile(process.execPath, [ukeyServerBin, ...args], {
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", ...env }, encoding: "utf8", timeout: 120_000,
    }, (err, stdout, stderr) => done({ status: err ? (typeof err.code === "number" ? err.code : -1) : 0, stdout, stderr }));
  });
}

/** The CLI in this process: forwarded to the running server over its control socket, as from the bin. */
const cli = (args: string[]): Promise<Run> => runUkeyServerHere(args);

const lastJson = <T>(r: Run): T => JSON.parse(r.stdout.trim().split("\n").pop()!) as T;
const errorCode = (r: Run) => lastJson<{ error: { code: string; message: { en: string } } }>(r).error;

test("reload and SIGHUP: profiles change for the next issuance without a restart; invalid and restart-only changes are refused and change nothing", async () => {
  const t = tempDir();
  try {
    const { dataDir, env } = initialisedDataDir(t);
    assert.equal(addHolder(t, dataDir, env, "H1", ["--phone", "13800138000"]).status, 0);
    const configPath = `${dataDir}/config.json`;
    const original = JSON.parse(readFileSync(configPath, "utf8")) as Record<string, unknown>;
    let base = original;
    const withPersonalDays = (days: number, extra: Record<string, unknown> = {}) =>
      writeFileSync(configPath, JSON.stringify({ ...base, profiles: [{ id: "personal", validity: { days }, keyAlgorithms: ["p256", "p384"] }], ...extra }, null, 2));

    // Without a running server there is no configuration in force to reload.
    const alone = await cli(["reload", "--data-dir", dataDir, "--json"]);
    assert.equal(alone.status, 1, alone.stdout + alone.stderr);
    assert.equal(errorCode(alone).code, "SERVER_NOT_RUNNING");

    const server = await startUkeyServer(dataDir, env, ["--tls-port", "0"]);
    let log = "";
    server.child.stdout!.on("data", (d) => { log += String(d); });
    const logLine = (event: string, after: number) => new Promise<Record<string, unknown>>((resolveLine, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${event} in the log: ${log}`)), 60_000);
      const look = () => {
        for (const l of log.slice(after).split("\n")) {
          try {
            const j = JSON.parse(l) as Record<string, unknown>;
            if (j.event === event) {
              clearTimeout(timer);
              server.child.stdout!.off("data", look);
              resolveLine(j);
              return;
            }
          } catch { /* a partial line */ }
        }
      };
      server.child.stdout!.on("data", look);
      look();
    });
    let n = 0;
    const issuedDays = async (): Promise<number> => {
      const c = opensslCsr(t, `k${n}`, keyArgs.p256);
      const out = t.path(`leaf${n++}.pem`);
      const r = await cli(["issue", "--data-dir", dataDir, "--holder", "H1", "--profile", "personal", "--csr", c.csr, "--out", out, "--json"]);
      assert.equal(r.status, 0, r.stdout + r.stderr);
      const x = new X509Certificate(readFileSync(out));
      return Math.round((Date.parse(x.validTo) - Date.parse(x.validFrom)) / 86_400_000);
    };
    try {
      const before = await issuedDays();
      assert.notEqual(before, 30);
      // EST is served on the TLS listener only; its certificate is the server's own, not under test here.
      const csrattrs = () => new Promise<string>((done, fail) => {
        httpsGet({ host: "127.0.0.1", port: server.https!, path: "/.well-known/est/csrattrs", rejectUnauthorized: false }, (res) => {
          let body = "";
          res.setEncoding("utf8").on("data", (d: string) => { body += d; }).on("end", () => (res.statusCode === 200 ? done(body) : fail(new Error(`${res.statusCode} ${body}`))));
        }).on("error", fail);
      });
      const attrsBefore = await csrattrs();

      // A valid change of a profile and of the SMS channel: the next certificate and the next code follow it, the server never restarted.
      base = { ...original, delivery: { sms: { type: "outbox", file: "sms-after-reload.jsonl" } } };
      withPersonalDays(30);
      const ok = await ukeyServer(["reload", "--data-dir", dataDir, "--json"]);
      assert.equal(ok.status, 0, ok.stdout + ok.stderr);
      assert.deepEqual(lastJson(ok), { reloaded: true, profiles: ["personal"], delivery: true });
      assert.equal(await issuedDays(), 30);
      // EST's CSR attributes offer the reloaded profiles' key algorithms (P-384 now, RSA no more).
      assert.notEqual(await csrattrs(), attrsBefore);
      const signIn = await fetch(`${server.url}/api/v1/holder/sign-in`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ holderId: "H1" }) });
      assert.equal(signIn.status, 200, await signIn.clone().text());
      const smsFile = `${dataDir}/sms-after-reload.jsonl`;
      const sent = () => { try { return readFileSync(smsFile, "utf8"); } catch { return ""; } };
      for (let i = 0; i < 600 && !sent().includes("13800138000"); i++) await new Promise((r) => setTimeout(r, 50));
      assert.match(sent(), /13800138000/, "the sign-in code went to the reloaded SMS channel");
      assert.doesNotMatch((() => { try { return readFileSync(`${dataDir}/outbox.jsonl`, "utf8"); } catch { return ""; } })(), /13800138000/);

      // Not JSON: refused with its line; the 30 days stay in force.
      writeFileSync(configPath, readFileSync(configPath, "utf8").replace(/"days": 30/, `"days": 45,,`));
      const broken = await cli(["reload", "--data-dir", dataDir, "--json"]);
      assert.equal(broken.status, 1);
      assert.equal(errorCode(broken).code, "CONFIG_INVALID");
      assert.match(errorCode(broken).message.en, /line \d+/);
      // Valid JSON, a wrong value.
      withPersonalDays(-5);
      const wrong = await cli(["reload", "--data-dir", dataDir, "--json"]);
      assert.equal(wrong.status, 1);
      assert.equal(errorCode(wrong).code, "CONFIG_INVALID");
      assert.match(errorCode(wrong).message.en, /profiles\.0/);
      // A port and a profile at once: refused as a whole, naming the field that needs a restart.
      withPersonalDays(60, { listen: { ...(original.listen as object), port: 18_099 } });
      const restart = await cli(["reload", "--data-dir", dataDir, "--json"]);
      assert.equal(restart.status, 1);
      assert.equal(errorCode(restart).code, "CONFIG_RELOAD_NEEDS_RESTART");
      assert.match(errorCode(restart).message.en, /listen\.port/);
      assert.equal(await issuedDays(), 30);

      // SIGHUP does the same: refused first (the port is still changed), then taken over.
      let mark = log.length;
      server.child.kill("SIGHUP");
      const refused = await logLine("config.reload-refused", mark);
      assert.equal(refused.code, "CONFIG_RELOAD_NEEDS_RESTART");
      assert.equal(await issuedDays(), 30);
      withPersonalDays(60);
      mark = log.length;
      server.child.kill("SIGHUP");
      const reloaded = await logLine("config.reloaded", mark);
      assert.deepEqual(reloaded.profiles, ["personal"]);
      assert.equal(await issuedDays(), 60);

      // Another user can neither signal the server nor reach its control socket (0600 in a 0700 directory).
      const hup = spawnSync("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "kill", "-HUP", String(server.child.pid)], { encoding: "utf8" });
      assert.notEqual(hup.status, 0, "a signal from another user must be refused by the kernel");
      assert.match(hup.stderr, /not permitted/i);
      const sock = spawnSync("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", process.execPath, "-e",
        `require("net").connect(${JSON.stringify(`${dataDir}/run/control.sock`)}).on("connect", () => process.exit(0)).on("error", (e) => { console.error(e.code); process.exit(3); })`], { encoding: "utf8" });
      assert.equal(sock.status, 3, sock.stdout + sock.stderr);
      assert.match(sock.stderr, /EACCES/);
    } finally {
      await server.stop();
    }

    // Audited: the two reloads that took effect, each with what changed; refusals wrote nothing.
    const ctx = await openServerContext(dataDir, env, systemClock);
    try {
      const entries = await ctx.store.audit.list(0, 1000);
      const reloads = entries.filter((e) => e.action === "config.reloaded");
      assert.deepEqual(reloads.map((e) => [e.actor, e.data]), [["cli", { profiles: ["personal"], delivery: true }], ["signal", { profiles: ["personal"], delivery: false }]]);
      assert.equal(entries.filter((e) => e.action === "profile.updated" && e.subjectId === "personal").length, 2);
    } finally {
      await ctx.close();
    }
  } finally {
    t.cleanup();
  }
});
