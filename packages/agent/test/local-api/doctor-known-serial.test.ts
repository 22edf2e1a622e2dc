import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { UkeyError } from "@ukey/policy";
import type { Flows } from "../../src/flows/flow-types.js";
import type { OperationView } from "../../src/local-api/protocol.js";
import { otherSite, portal, startTestAgent, waitForOperation, type TestAgent } from "./support.js";

// The doctor operation's knownSerial (the holder's key as the server
// recorded it, for the no-key advice): only a paired origin may start a
// doctor with it, it must look like a serial, and it reaches the flow as
// given. The flow here is a stand-in that records what it was given (the
// real doctor's advice is tested in test/skf/doctor-advice.test.ts).

const given: (string | undefined)[] = [];
const notHere = () => { throw new UkeyError("INTERNAL", { detail: "not used by this test" }); };
const flows: Flows = {
  status: async () => [], renew: notHere, download: notHere, initialise: notHere, changePin: notHere, cleanUp: notHere, readCertificates: notHere,
  doctor: async (ctx) => { given.push(ctx.knownSerial); return []; },
};

let agent: TestAgent;
let token: string;
before(async () => {
  // The agent's server cannot be reached here: the doctor still runs, with the built-in table.
  agent = await startTestAgent(flows, { server: { url: "http://127.0.0.1:9" } });
  token = await agent.pair(portal);
});
after(async () => { await agent?.close(); });

test("a paired origin starts a doctor with the holder's known serial, and the flow gets it", async () => {
  const r = await agent.call("/v1/operations", { token, body: { kind: "doctor", knownSerial: "PF20FA000123" } });
  assert.equal(r.status, 202, r.text);
  const v = await waitForOperation(agent, token, (r.json as unknown as OperationView).id, (x) => x.state === "done" || x.state === "failed");
  assert.equal(v.state, "done", JSON.stringify(v.error));
  assert.deepEqual(given, ["PF20FA000123"]);
});

test("refused: an unpaired origin, no bearer token, and a knownSerial that is not a serial; nothing runs", async () => {
  const ran = given.length;
  const other = await agent.call("/v1/operations", { origin: otherSite, token, body: { kind: "doctor", knownSerial: "PF20FA000123" } });
  assert.equal(other.status, 403);
  assert.equal(other.json.code, "ORIGIN_NOT_PAIRED");
  const anonymous = await agent.call("/v1/operations", { body: { kind: "doctor", knownSerial: "PF20FA000123" } });
  assert.equal(anonymous.status, 403);
  for (const knownSerial of ["", "x".repeat(65), "PF20\n<script>", 42]) {
    const bad = await agent.call("/v1/operations", { token, body: { kind: "doctor", knownSerial } });
    assert.equal(bad.status, 400, JSON.stringify(knownSerial));
    assert.equal(bad.json.code, "REQUEST_INVALID");
  }
  assert.equal(given.length, ran);
});
