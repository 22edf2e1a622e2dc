import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, symlinkSync } from "node:fs";
import { docExamples, runExample } from "../../server/test/support/doc-examples.js";
import { createAgentWorld, ukeyBin, type AgentWorld } from "./support/agent-world.js";

// docs/agent-cli.md's example, run as written by bash with `ukey` on PATH,
// against the real server and a SoftHSM2 token holding a certificate in
// its renewal window.
let w: AgentWorld;

before(async () => {
  w = createAgentWorld("ukey-agent-docs-");
  await w.issueOnToken("H1", "e2e", "p256");
  w.t.write("pin.txt", `${w.hsm.pin}\n`);
  await w.start();
});
after(async () => {
  await w?.cleanup();
});

test("agent-cli.md's holder example runs as written", () => {
  const blocks = docExamples("agent-cli.md", "holder");
  assert.equal(blocks.length, 1);
  const bin = `${w.t.dir}/bin`;
  mkdirSync(bin);
  symlinkSync(ukeyBin, `${bin}/ukey`);
  const out = runExample(w.t.dir, blocks[0]!, {
    PATH: `${bin}:${process.env.PATH}`, HOME: w.t.dir, LANG: "en_US.UTF-8",
    UKEY_SERVER: w.server!.url, UKEY_PKCS11_MODULE: w.hsm.module, SOFTHSM2_CONF: w.hsm.conf,
  });
  assert.match(out, /UKey ukey-holder/);
  assert.equal(w.objects().certificates.length, 1);
});
