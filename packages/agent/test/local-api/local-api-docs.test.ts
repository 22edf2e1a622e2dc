import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ChildProcess } from "node:child_process";
import { docExamples, runExample } from "../../../server/test/support/doc-examples.js";
import { nextEvent, spawnAgent } from "./support.js";

// The shell examples of docs/agent-local-api.md, run as written against
// `ukey agent start` in its own process (its port put in place of 24817).

let home: string;
let child: ChildProcess;
let url: string;
before(async () => {
  home = mkdtempSync(join(tmpdir(), "ukey-agent-docs-"));
  const agent = spawnAgent(home, ["start", "--port", "0", "--server", "http://127.0.0.1:9", "--origin", "https://portal.example.com", "--json"]);
  child = agent.child;
  const listening = await nextEvent(agent.events, agent.stderr);
  url = listening.url as string;
});
after(() => {
  child?.kill("SIGTERM");
  rmSync(home, { recursive: true, force: true });
});

test("docs/agent-local-api.md: hello, a refused origin and a preflight, as written", () => {
  const blocks = docExamples("agent-local-api.md", "agent-local-api");
  assert.equal(blocks.length, 3);
  const run = (b: string) => runExample(home, b.replaceAll("http://127.0.0.1:24817", url));

  assert.deepEqual(JSON.parse(run(blocks[0]!)), { agent: "ukey-agent", version: "0.1.0", protocol: 1, paired: false });

  const refused = run(blocks[1]!);
  assert.match(refused, /^HTTP\/1\.1 403 Forbidden/);
  assert.doesNotMatch(refused, /access-control-/i);
  assert.match(refused, /"code":"ORIGIN_NOT_PAIRED"/);

  const preflight = run(blocks[2]!);
  assert.match(preflight, /^HTTP\/1\.1 204/);
  assert.match(preflight, /access-control-allow-origin: https:\/\/portal\.example\.com/i);
  assert.match(preflight, /access-control-allow-private-network: true/i);
  assert.match(preflight, /access-control-allow-local-network: true/i);
});
