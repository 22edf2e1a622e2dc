import { parentPort } from "node:worker_threads";
import { runSignatureJob, type SignatureJob, type SignatureOutcome } from "./signature-checks.js";

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
    outcomes.push(runSignatureJob(job));
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
