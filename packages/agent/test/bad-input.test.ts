import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import type { DoctorCheck, RenewResult } from "../src/flows/flow-types.js";
import { objectLabels } from "../src/keys/key-store.js";
import { Pkcs11Backend } from "../src/keys/pkcs11-backend.js";
import { possessionMessage } from "../src/flows/renew-flow.js";
import { createAgentWorld, type AgentWorld } from "./support/agent-world.js";

// Bad input of every kind, through the real CLI: each ends with its
// catalogue code and remedy, the documented exit code, and the token and
// the server's order as they were (or consistent, and finished next time).
let w: AgentWorld;
let cert: { serial: string; certId: string };
let garbage: ChildProcess;
let garbageUrl: string;

before(async () => {
  w = createAgentWorld("ukey-agent-bad-");
  cert = await w.issueOnToken("H1", "p256only", "p256");
  // In its own process: the CLI runs are synchronous and would block a server in this one.
  garbage = spawn(process.execPath, ["-e", `
    const s = require("node:http").createServer((req, res) => {
      if (req.url.startsWith("/api/v1/openapi.json")) { res.writeHead(200, { "content-type": "text/html" }); res.end("<html>Wi-Fi login</html>"); return; }
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ id: 42, state: "whatever", nextStep: "dance" }));
    });
    s.listen(0, "127.0.0.1", () => console.log(s.address().port));
  `], { stdio: ["ignore", "pipe", "inherit"] });
  const port = await new Promise<string>((r) => garbage.stdout!.once("data", (d) => r(String(d).trim())));
  garbageUrl = `http://127.0.0.1:${port}`;
  await w.start();
});
after(async () => {
  garbage?.kill();
  await w?.cleanup();
});

const unchanged = () => {
  const o = w.objects();
  assert.equal(o.certificates.length, 1, o.raw);
  assert.equal(o.privateKeys.length, 1, o.raw);
  assert.equal(o.certificates[0]!.label, objectLabels.current(cert.serial));
};

test("no token: TOKEN_NOT_PRESENT with its remedy, exit 4", () => {
  const dir = w.t.path("empty-hsm");
  mkdirSync(`${dir}/tokens`, { recursive: true });
  const conf = w.t.write("empty-softhsm2.conf", `directories.tokendir = ${dir}/tokens\nobjectstore.backend = file\nlog.level = ERROR\n`);
  for (const cmd of [["status"], ["renew"]]) {
    const r = w.ukey([...cmd, "--json"], { env: { SOFTHSM2_CONF: conf } });
    assert.equal(r.status, 4, r.stderr);
    assert.match(r.stderr, /TOKEN_NOT_PRESENT/);
    assert.match(r.stderr, /What to do: Connect the UKey/);
    assert.equal(r.json<{ error: { code: string; remedy: { en: string } } }>().error.code, "TOKEN_NOT_PRESENT");
  }
});

test("wrong PIN from a file: TOKEN_PIN_INCORRECT, exit 4, not retried, nothing changed", () => {
  const wrong = w.t.write("wrong-pin", "999999\n");
  const r = w.ukey(["renew", "--pin-file", wrong]);
  assert.equal(r.status, 4, r.stderr);
  assert.match(r.stderr, /TOKEN_PIN_INCORRECT/);
  assert.match(r.stderr, /forgotten-PIN path/);
  unchanged();
  const zh = w.ukey(["renew", "--pin-file", wrong, "--lang", "zh"]);
  assert.match(zh.stderr, /错误 TOKEN_PIN_INCORRECT: UKey 密码（PIN）错误。/);
  assert.match(zh.stderr, /怎么办: /);
});

test("a --ca-file that is missing or holds no certificate", () => {
  const notPem = w.t.write("not-a-ca.pem", "hello\n");
  const bad = w.ukey(["status", "--ca-file", notPem]);
  assert.equal(bad.status, 1, bad.stderr);
  assert.match(bad.stderr, /PEM_MALFORMED/);
  const missing = w.ukey(["status", "--ca-file", w.t.path("no-such-ca.pem")]);
  assert.equal(missing.status, 2, `a file named on the command line that cannot be read is a usage error: ${missing.stderr}`);
  assert.match(missing.stderr, /FILE_UNREADABLE/);
});

test("a module path that is not a PKCS#11 library, or no file at all", () => {
  const notLib = w.t.write("not-a-module.so", "this is not a shared library\n");
  const r = w.ukey(["status", "--module", notLib]);
  assert.equal(r.status, 4, r.stderr);
  assert.match(r.stderr, /HSM_MODULE_LOAD_FAILED/);
  const missing = w.ukey(["status", "--module", w.t.path("no-such-module.so")]);
  assert.equal(missing.status, 4, missing.stderr);
  assert.match(missing.stderr, /TOKEN_DRIVER_MISSING/);
  assert.match(missing.stderr, /--module/);
});

test("a server that answers nonsense: SERVER_RESPONSE_INVALID, exit 5, token unchanged", () => {
  const r = w.ukey(["renew", "--server", garbageUrl, "--json"]);
  assert.equal(r.status, 5, r.stderr);
  assert.match(r.stderr, /SERVER_RESPONSE_INVALID/);
  assert.match(r.stderr, /UKEY_SERVER names the institution's renewal server/);
  unchanged();
});

test("a server nobody answers at: SERVER_UNREACHABLE, exit 5; no server at all: usage, exit 2", () => {
  const r = w.ukey(["renew", "--server", "http://127.0.0.1:9"]);
  assert.equal(r.status, 5, r.stderr);
  assert.match(r.stderr, /SERVER_UNREACHABLE/);
  unchanged();
  const none = w.ukey(["renew"], { noDefaults: true });
  assert.equal(none.status, 2, none.stderr);
  assert.match(none.stderr, /CLI_USAGE/);
});

test("a PIN on the command line is refused (CLI_USAGE, exit 2); so are unknown commands and options", () => {
  for (const args of [["renew", "--pin", "123456"], ["renew", "--pin=123456"], ["fly"], ["renew", "--colour"]]) {
    const r = w.ukey(args);
    assert.equal(r.status, 2, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, /CLI_USAGE/);
  }
  assert.match(w.ukey(["renew", "--pin", "123456"]).stderr, /--pin-file/);
  const agent = w.ukey(["agent", "pairings", "--json"], { noDefaults: true });
  assert.equal(agent.status, 0, `ukey agent is the local service's command: ${agent.stderr}`);
  assert.deepEqual(agent.json(), { pairings: [] });
  const help = w.ukey(["--help"], { noDefaults: true });
  assert.equal(help.status, 0);
  assert.match(help.stdout, /Exit codes: 0 done; 1 other failure;\s+2 wrong usage; 3 refused/);
});

test("a CSR the server refuses (a pending key of a kind the profile does not allow): exit 3, the key dropped, the next run renews", async () => {
  // An earlier agent (say, an older version) proved possession and left a P-384 key pending; the profile takes P-256 only.
  const started = await (await fetch(`${w.server!.url}/api/v1/orders`, {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ certId: cert.certId, channel: "cli" }),
  })).json() as { id: string; challenge: { value: string } };
  const backend = new Pkcs11Backend(w.hsm.module);
  try {
    const s = await backend.open(w.hsm.tokenSerial, w.hsm.pin);
    try {
      const old = (await s.listCertificates())[0]!;
      const signature = await s.sign(old.id, possessionMessage(started.id, started.challenge.value));
      const proved = await fetch(`${w.server!.url}/api/v1/orders/${started.id}/possession`, {
        method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify({ challenge: started.challenge.value, signature: Buffer.from(signature).toString("base64") }),
      });
      assert.equal(proved.status, 200, await proved.text());
      await s.generateKeyPair("p384", objectLabels.pending(started.id));
    } finally {
      await s.close();
    }
  } finally {
    await backend.close();
  }
  const r = w.ukey(["renew"]);
  assert.equal(r.status, 3, r.stderr);
  assert.match(r.stderr, /KEY_ALGORITHM_NOT_ALLOWED/);
  unchanged();
  assert.equal(w.objects().privateKeys.length, 1, "the unfit pending key is gone");
  const order = await w.order(started.id);
  assert.equal(order.state, "verified", "the order waits for a fitting key");

  const again = w.ukey(["renew", "--json"]);
  assert.equal(again.status, 0, again.stderr);
  const out = again.json<RenewResult>();
  assert.equal(out.orderId, started.id);
  const o = w.objects();
  assert.equal(o.certificates.length, 1, o.raw);
  assert.equal(o.certificates[0]!.serialHex, out.certificate.serialHex);
  assert.match(o.raw, /Private Key Object; EC/);
  cert = { serial: out.certificate.serialHex, certId: "" };
});

test("ukey explain: catalogue codes and the legacy codes of today's systems", () => {
  const ours = w.ukey(["explain", "RENEWAL_WINDOW_CLOSED"], { noDefaults: true });
  assert.equal(ours.status, 0, ours.stderr);
  assert.match(ours.stdout, /RENEWAL_WINDOW_CLOSED: The online renewal period ended/);
  const legacy = w.ukey(["explain", "0116", "--json"], { noDefaults: true });
  assert.equal(legacy.status, 0, legacy.stderr);
  const j = legacy.json<{ results: { ours: { code: string }[]; legacy?: { legacyCode: string } }[] }>();
  assert.equal(j.results[0]!.legacy?.legacyCode, "0116");
  assert.ok(j.results[0]!.ours.length > 0);
  const iis = w.ukey(["explain", "403.7", "--lang", "zh"], { noDefaults: true });
  assert.equal(iis.status, 0);
  assert.match(iis.stdout, /HTTP 403.7/);
  const none = w.ukey(["explain", "zzzz-no-such"], { noDefaults: true });
  assert.equal(none.status, 2);
});

test("ukey doctor: every check passes on a good setup; a wrong server or module fails its check with a code", () => {
  const pairings = `${w.t.dir}/.ukey`;
  mkdirSync(pairings, { recursive: true });
  writeFileSync(`${pairings}/pairings.json`, JSON.stringify({ version: 1, pairings: [] }));
  const ok = w.ukey(["doctor", "--json"]);
  assert.equal(ok.status, 0, ok.stdout + ok.stderr);
  const checks = ok.json<{ checks: DoctorCheck[] }>().checks;
  assert.deepEqual(checks.map((c) => c.id), ["module", "token", "pin", "storage", "certificate", "server", "trust", "clock", "pairings"]);
  assert.ok(checks.every((c) => c.ok), JSON.stringify(checks));

  writeFileSync(`${pairings}/pairings.json`, "{ not json");
  const bad = w.ukey(["doctor", "--server", garbageUrl, "--module", w.t.path("nope.so"), "--json"]);
  const byId = Object.fromEntries(bad.json<{ checks: DoctorCheck[] }>().checks.map((c) => [c.id, c]));
  assert.equal(byId.module!.code, "TOKEN_DRIVER_MISSING");
  assert.equal(byId.server!.code, "SERVER_RESPONSE_INVALID");
  assert.equal(byId.pairings!.code, "CONFIG_INVALID");
  assert.equal(bad.status, 4, "the first failing check's exit code");
  const human = w.ukey(["doctor", "--server", "http://127.0.0.1:9"]);
  assert.match(human.stdout, /✗ server +Cannot reach the renewal server/);
  assert.match(human.stdout, /SERVER_UNREACHABLE: Check the network connection/);
});
