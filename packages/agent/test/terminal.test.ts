import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createAgentWorld, ukeyBin, type AgentWorld } from "./support/agent-world.js";

// The PIN at a real terminal (a pseudo-terminal made by util-linux's
// `script`): echo is off before the prompt shows, and a wrong PIN is asked
// again with how many tries are left when the module says.
let w: AgentWorld;

before(async () => {
  w = createAgentWorld("ukey-agent-tty-");
  await w.issueOnToken("H1", "e2e", "p256");
});
after(async () => {
  await w?.cleanup();
});

/** Runs ukey on a pseudo-terminal, typing each answer the moment its prompt appears; resolves with everything the terminal showed. */
function onTerminal(args: string[], answers: { prompt: RegExp; type: string }[]): Promise<{ screen: string; status: number | null }> {
  const child = spawn("script", ["-qec", [process.execPath, ukeyBin, ...args].map((a) => `'${a}'`).join(" "), "/dev/null"], {
    env: { PATH: process.env.PATH ?? "", HOME: w.t.dir, SOFTHSM2_CONF: w.hsm.conf, LANG: "en_US.UTF-8" }, stdio: ["pipe", "pipe", "pipe"],
  });
  let screen = "";
  let seen = 0;
  const queue = [...answers];
  child.stdout.on("data", (d) => {
    screen += String(d);
    const next = queue[0];
    if (next && next.prompt.test(screen.slice(seen))) {
      queue.shift();
      seen = screen.length;
      child.stdin.write(`${next.type}\r`);
    }
  });
  child.on("error", (e) => { throw new Error(`util-linux script is required for the terminal tests: ${e.message}`); });
  return new Promise((resolve) => child.on("close", (status) => resolve({ screen, status })));
}

test("the PIN typed at a terminal is not echoed; a wrong one is asked again", async () => {
  const r = await onTerminal(["clean-up", "--module", w.hsm.module], [
    { prompt: /PIN of key ukey-holder \([0-9a-f]+\): $/, type: "999999" },
    { prompt: /Wrong PIN.*\n.*PIN of key ukey-holder \([0-9a-f]+\): $/s, type: w.hsm.pin },
  ]);
  assert.equal(r.status, 0, r.screen);
  assert.match(r.screen, /Invalid objects removed: 0\./);
  assert.doesNotMatch(r.screen, /999999/);
  assert.doesNotMatch(r.screen, new RegExp(w.hsm.pin));
});
