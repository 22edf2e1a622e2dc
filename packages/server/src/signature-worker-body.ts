import { parentPort } from "node:worker_threads";
import { UkeyError } from "@ukey/policy";
import { asBuffer, possessionSignatureValid, verifyCsrData } from "./signature-checks.js";
import type { SignatureJob, SignatureOutcome } from "./signature-verifier.js";

/** Runs the jobs of one message in order and answers with their outcomes in one message. */
function run(job: SignatureJob): SignatureOutcome {
  try {
    if (job.kind === "possession") {
      return { ok: true, value: possessionSignatureValid(asBuffer(job.certDer), asBuffer(job.message), asBuffer(job.signature)) };
    }
    return { ok: true, value: verifyCsrData(typeof job.csr === "string" ? job.csr : asBuffer(job.csr)) };
  } catch (e) {
    if (e instanceof UkeyError) return { ok: false, code: e.code, params: e.params, detail: e.detail };
    return { ok: false, code: "INTERNAL", params: {}, detail: String(e) };
  }
}

/**
 * How long finished outcomes may wait for the rest of their message's jobs.
 * Answering a long message only at its end made every check in it wait for
 * the slowest; answering each check alone costs a message per check.
 */
const ANSWER_EVERY_MS = 1;

parentPort!.on("message", (m: { id: number; jobs: SignatureJob[] }) => {
  let from = 0;
  let outcomes: SignatureOutcome[] = [];
  let since = performance.now();
  for (const job of m.jobs) {
    outcomes.push(run(job));
    const now = performance.now();
    if (now - since >= ANSWER_EVERY_MS || outcomes.length + from === m.jobs.length) {
      parentPort!.postMessage({ id: m.id, from, outcomes });
      from += outcomes.length;
      outcomes = [];
      since = now;
    }
  }
});
parentPort!.postMessage({ ready: true });
