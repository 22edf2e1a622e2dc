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

parentPort!.on("message", (m: { id: number; jobs: SignatureJob[] }) => {
  parentPort!.postMessage({ id: m.id, outcomes: m.jobs.map(run) });
});
parentPort!.postMessage({ ready: true });
