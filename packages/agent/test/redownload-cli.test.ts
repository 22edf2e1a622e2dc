import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { createAgentWorld, type AgentWorld } from "./support/agent-world.js";

// Issue 16, seed 000 at the terminal: after initialising a key, `ukey download
// --self-service --customer N` asks the ID number and the SMS code (read
// from the demo outbox) and downloads the certificate again onto the blank
// key with the real agent, server and SoftHSM2; the old one is superseded.
let w: AgentWorld;
let old: { serial: string };
let blank: string;

before(async () => {
  w = createAgentWorld("ukey-agent-redownload-");
  const cfgFile = `${w.dataDir}/config.json`;
  const cfg = JSON.parse(readFileSync(cfgFile, "utf8"));
  cfg.profiles.find((p: { id: string }) => p.id === "long").selfServiceRedownload = true;
  writeFileSync(cfgFile, JSON.stringify(cfg, null, 2));
  old = await w.issueOnToken("H3", "long", "p256", w.addToken("before-init"));
  blank = w.addToken("initialised");
  await w.start();
});
after(async () => {
  await w?.cleanup();
});

test("ukey download --self-service: ID number, a wrong then the right SMS code, the certificate on the initialised key", async () => {
  const outbox = `${w.dataDir}/outbox.jsonl`;
  let codes = 0;
  const r = await w.ukeyInteractive(["download", "--self-service", "--customer", "H3", "--token", blank, "--json"], (err) => {
    if (/ID number on record: $/.test(err)) return "11010119900307123X";
    if (/type the 6 digits \(or r to send it again\): $/.test(err)) {
      const code = smsCode(outbox);
      return ++codes === 1 ? (code === "000000" ? "000001" : "000000") : code;
    }
    return undefined;
  });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(codes, 2, "a wrong code is asked again");
  assert.match(r.stderr, /SMS_CODE_INVALID/);
  assert.match(r.stderr, /A code was sent to 159\*{5}005/);
  const serial = r.json<{ certificate: { serialHex: string } }>().certificate.serialHex;
  assert.notEqual(serial, old.serial);
  assert.ok(w.objects("initialised").certificates.some((c) => c.serialHex === serial));
  assert.equal((await w.certificate(old.serial)).status, "superseded");
});

test("ukey download --self-service without --customer, or with codes: wrong usage, exit 2", () => {
  for (const args of [["download", "--self-service"], ["download", "--self-service", "--customer", "H3", "--ref", "1234567897", "--code", "X"]]) {
    const r = w.ukey([...args, "--token", blank]);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /--self-service --customer/);
  }
});

/**
 * The code of the last SMS in the outbox file. The SMS leaves through the server's outbox after the answer that
 * prompts for it, so the file may not hold it yet when the prompt appears: wait for it (up to 15 s) rather than read
 * an empty file. The prompt's answer is given synchronously, so the wait blocks; the server is another process.
 */
function smsCode(outbox: string): string {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const last = existsSync(outbox) ? readFileSync(outbox, "utf8").trim().split("\n").at(-1) ?? "" : "";
    try {
      const code = /(\d{6})/.exec((JSON.parse(last) as { text: string }).text)?.[1];
      if (code) return code;
    } catch { /* not written yet, or written halfway */ }
    if (Date.now() > deadline) throw new Error(`no SMS with a code in ${outbox} after 15 s: ${JSON.stringify(last)}`);
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
  }
}
