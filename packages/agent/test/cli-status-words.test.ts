import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { createAgentWorld, type AgentWorld } from "./support/agent-world.js";

// Issue 16, problems 5 and 7: the CLI says a certificate's days as China's
// calendar days (docs/policies.md), as the portal does, never the UTC date
// of an ISO string (a certificate that ends at 20:00 UTC ends on the next
// day in China); and without the server a certificate near its end is not
// called valid.
let world: AgentWorld;
const notAfter = new Date(Date.UTC(2031, 1, 1, 20, 0, 0));

before(async () => {
  world = createAgentWorld("ukey-china-days-");
  await world.importOnToken("CD1", "long", "p256", new Date(Date.now() - 10 * 86_400_000), notAfter);
  await world.importOnToken("CD2", "long", "p256", new Date(Date.now() - 300 * 86_400_000), new Date(Date.now() + 30 * 86_400_000), world.addToken("soon"));
});
after(async () => {
  await world?.cleanup();
});

test("issue 16 (5): ukey status gives the day a certificate ends in China time, not the UTC date", () => {
  const r = world.ukey(["status"], { env: { LANG: "zh_CN.UTF-8" } });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /有效期至 2031-02-02/, r.stdout);
  assert.doesNotMatch(r.stdout, /2031-02-01/, r.stdout);
});

test("issue 16 (7): with no server to ask, a certificate 30 days from its end is 'expiring', never 'valid'", () => {
  const r = world.ukey(["status", "--json"], { env: { LANG: "zh_CN.UTF-8" } });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const { tokens } = r.json<{ tokens: { token: { label: string }; certificates: { state: string; daysLeft: number }[] }[] }>();
  const soon = tokens.find((t) => t.token.label === "soon")!.certificates[0]!;
  assert.ok(soon.daysLeft <= 31 && soon.daysLeft >= 29, JSON.stringify(soon));
  assert.equal(soon.state, "expiring");
  const far = tokens.find((t) => t.token.label !== "soon")!.certificates[0]!;
  assert.equal(far.state, "valid");
});
