import { afterEach, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pairingMaxWrongPerDay } from "../../src/local-api/pairings.js";
import { otherSite, scriptedFlows, startTestAgent, type TestAgent } from "./support.js";

// The limits on pairing codes hold across restarts of the agent: the wrong
// codes of a pairing and of the day are kept beside pairings.json, so a
// hostile page gains nothing by getting the agent restarted, and it cannot
// guess five at a time for ever.
const flows = scriptedFlows(async () => undefined);
const origin = otherSite;
const T0 = new Date("2026-11-21T10:00:00Z").getTime();

const running = new Set<TestAgent>();
// An agent a failed assertion left running would keep the test process alive.
afterEach(async () => {
  for (const a of running) await a.api.close().catch(() => undefined);
  running.clear();
});

/** An agent on `home` whose clock reads `at`; stop it with api.close() to keep the home. */
async function agentOn(home: string, at: number): Promise<TestAgent> {
  const a = await startTestAgent(flows, { home });
  a.clock.now = new Date(at);
  running.add(a);
  return a;
}

async function wrongCodes(a: TestAgent, n: number): Promise<string[]> {
  const started = await a.call("/v1/pairings", { origin, method: "POST" });
  if (started.status !== 201) return [String(started.json.code)];
  const wrong = a.codes.at(-1)!.code === "000000" ? "000001" : "000000";
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(String((await a.call(`/v1/pairings/${started.json.id as string}/confirm`, { origin, body: { code: wrong } })).json.code));
  return out;
}

test("wrong pairing codes still count after the agent restarts", async () => {
  const home = mkdtempSync(join(tmpdir(), "ukey-agent-home-"));
  try {
    let a = await agentOn(home, T0);
    assert.deepEqual(await wrongCodes(a, 3), ["PAIRING_CODE_INVALID", "PAIRING_CODE_INVALID", "PAIRING_CODE_INVALID"]);
    await a.api.close();
    assert.equal(statSync(join(home, "pairing-attempts.json")).mode & 0o777, 0o600);
    a = await agentOn(home, T0 + 10_000);
    // The pairing in progress died with the old process; its two wrong codes left carry over to a new one.
    assert.deepEqual(await wrongCodes(a, 3), ["PAIRING_CODE_INVALID", "PAIRING_ENDED", "PAIRING_ENDED"]);
    await a.api.close();
    a = await agentOn(home, T0 + 20_000);
    const again = await a.call("/v1/pairings", { origin, method: "POST" });
    assert.deepEqual([again.status, again.json.code], [409, "PAIRING_ENDED"], "no fresh pairing after a restart");
    await a.api.close();
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
});

test(`an origin gets at most ${pairingMaxWrongPerDay} wrong pairing codes in a day, restarts or not`, async () => {
  const home = mkdtempSync(join(tmpdir(), "ukey-agent-home-"));
  try {
    let at = T0;
    const answers: string[] = [];
    // Five wrong codes per pairing, a pairing every two minutes and a bit, the agent restarted each time.
    for (let round = 0; round < pairingMaxWrongPerDay / 5 + 1; round++) {
      const a = await agentOn(home, at);
      answers.push(...await wrongCodes(a, 5));
      await a.api.close();
      at += 2 * 60_000 + 1;
    }
    assert.equal(answers.filter((c) => c === "PAIRING_CODE_INVALID").length, (pairingMaxWrongPerDay / 5) * 4);
    assert.deepEqual(answers.at(-1), "PAIRING_ATTEMPTS_EXHAUSTED");
    const a = await agentOn(home, at);
    try {
      const paused = await a.call("/v1/pairings", { origin, method: "POST" });
      assert.equal(paused.status, 429);
      assert.equal(paused.json.code, "PAIRING_ATTEMPTS_EXHAUSTED");
      const params = paused.json.params as Record<string, unknown>;
      assert.deepEqual([params.origin, params.until], [origin, new Date(T0 + 86_400_000).toISOString()]);
      assert.ok(Number(paused.headers.get("retry-after")) > 23 * 3600);
      // The right code works again the next day.
      a.clock.now = new Date(T0 + 86_400_000 + 1);
      const started = await a.call("/v1/pairings", { origin, method: "POST" });
      assert.equal(started.status, 201);
      const ok = await a.call(`/v1/pairings/${started.json.id as string}/confirm`, { origin, body: { code: a.codes.at(-1)!.code } });
      assert.equal(ok.status, 200, ok.text);
    } finally {
      await a.api.close();
    }
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
});

test("an attempts file that is not the agent's stops pairing instead of being overwritten", async () => {
  const home = mkdtempSync(join(tmpdir(), "ukey-agent-home-"));
  try {
    writeFileSync(join(home, "pairing-attempts.json"), "{ not json", { mode: 0o600 });
    const a = await agentOn(home, T0);
    const r = await a.call("/v1/pairings", { origin, method: "POST" });
    assert.equal(r.json.code, "CONFIG_INVALID");
    await a.api.close();
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
});
